"""The feature extractor saved with every Emo-DNA model: `Wav2Vec2FeatureExtractor` that also resamples.

Given audio at another `sampling_rate`, it resamples it to the model's rate with soxr (a dependency of emodna_hf),
so Python callers need no torchaudio. Shipped as remote code next to saved checkpoints; soxr is imported only when
resampling is needed.
"""

from __future__ import annotations

import numpy as np
from transformers import Wav2Vec2FeatureExtractor


class EmoDnaFeatureExtractor(Wav2Vec2FeatureExtractor):
    """`Wav2Vec2FeatureExtractor` (padding, attention mask, optional per-utterance normalisation) that resamples
    input given at another `sampling_rate` to `self.sampling_rate` first."""

    def __call__(self, raw_speech, sampling_rate: int | None = None, **kwargs):
        if sampling_rate is not None and sampling_rate != self.sampling_rate:
            try:
                import soxr
            except ImportError as error:  # pragma: no cover - soxr is a dependency of emodna_hf
                raise ImportError(
                    f"Audio at {sampling_rate} Hz must be resampled to {self.sampling_rate} Hz: pip install soxr"
                ) from error
            single = isinstance(raw_speech, np.ndarray) and raw_speech.ndim == 1 or (
                isinstance(raw_speech, list) and raw_speech and not isinstance(raw_speech[0], (list, np.ndarray)))
            waves = [raw_speech] if single else list(raw_speech)
            waves = [soxr.resample(np.asarray(w, dtype=np.float32), sampling_rate, self.sampling_rate)
                     .astype(np.float32) for w in waves]
            raw_speech, sampling_rate = (waves[0] if single else waves), self.sampling_rate
        return super().__call__(raw_speech, sampling_rate=sampling_rate, **kwargs)


EmoDnaFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
