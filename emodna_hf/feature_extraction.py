"""The feature extractor saved next to every model, so that `pipeline("audio-classification")` works."""

from __future__ import annotations

from .modeling import EmoDnaConfig
from .modeling.backbones_emodna import front_end
from .modeling.feature_extraction_emodna import EmoDnaFeatureExtractor


def create_feature_extractor(config: EmoDnaConfig) -> EmoDnaFeatureExtractor:
    """An `EmoDnaFeatureExtractor` (a `Wav2Vec2FeatureExtractor` that resamples other rates with soxr) at the
    model's rate that always returns an attention mask.

    The mask matters: the model pools over valid frames only, so a padded utterance gets the logits it gets alone.
    Waveforms are normalised to zero mean and unit variance per utterance (the wav2vec2 convention), which also
    removes recording-gain differences between corpora; except where the front end declares otherwise
    (`FrontEnd.normalize_waveform`: the `"opensmile"` loudness functionals carry emotion, angry speech is loud, and
    its gain differences between corpora are removed by the standardisation of the functionals instead).
    """
    return EmoDnaFeatureExtractor(
        feature_size=1,
        sampling_rate=config.sampling_rate,
        padding_value=0.0,
        do_normalize=front_end(config.backbone_type).normalize_waveform,
        return_attention_mask=True,
    )
