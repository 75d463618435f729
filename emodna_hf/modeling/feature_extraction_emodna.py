"""The feature extractor saved with every Emo-DNA model: `Wav2Vec2FeatureExtractor` that also takes audio as it comes.

Given audio at another `sampling_rate`, it resamples it to the model's rate with soxr (a dependency of emodna_hf),
so Python callers need no torchaudio. Integer PCM (int16, int32, int8, uint8) is rescaled to [-1, 1] and one
multichannel utterance, (samples, channels), is mixed down to mono (`audio_emodna`): taken as they are, they would
be classified at the wrong scale, or as a batch of one-sample utterances. Shipped as remote code next to saved
checkpoints; soxr is imported only when resampling is needed.
"""

from __future__ import annotations

from transformers import Wav2Vec2FeatureExtractor

from .audio_emodna import as_waveforms, resample


class EmoDnaFeatureExtractor(Wav2Vec2FeatureExtractor):
    """`Wav2Vec2FeatureExtractor` (padding, attention mask, optional per-utterance normalisation) that first turns
    its input into float32 mono waveforms at `self.sampling_rate` (see `audio_emodna.as_waveforms`: a 2-D array is
    a batch of utterances unless its last axis holds at most 8 channels)."""

    def __call__(self, raw_speech, sampling_rate: int | None = None, **kwargs):
        waves, batched = as_waveforms(raw_speech)
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            waves = [resample(w, sampling_rate, self.sampling_rate) for w in waves]
            sampling_rate = self.sampling_rate
        return super().__call__(waves if batched else waves[0], sampling_rate=sampling_rate, **kwargs)


EmoDnaFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
