"""Data layer: the corpus spec (`spec`, a leaf), label harmonisation, audio decoding, corpus loading, generated
corpora (`synthetic`: source-filter, espeak-ng, flite/festival and festvox), UDA splits, batches."""

from .assembly import UDAData, build_uda_data, split_source
from .audio import AudioDecodeError, load_audio
from .collator import UDADataCollator
from .decoding import output_features
from .features import cache_features
from .labels import (
    CANONICAL_EMOTIONS,
    CORPUS_LABEL_MAPS,
    SCHEME_MAPS,
    SCHEMES,
    get_label_map,
    harmonize_labels,
    iemocap_label_map,
)
from .loading import load_corpus
from .speakers import add_speaker_statistics, speaker_statistics, standardize_per_speaker
from .spec import NO_LABELS, CorpusSpec
from .synthetic import (
    EMOTION_PROFILES,
    EMOTIONS,
    ESPEAK_PRESETS,
    FESTVOX_PRESETS,
    FLITE_PRESETS,
    PRESETS,
    EmotionProfile,
    EspeakPreset,
    FestvoxPreset,
    FlitePreset,
    SyntheticPreset,
    make_espeak_corpus,
    make_festvox_corpus,
    make_flite_corpus,
    make_synthetic_corpus,
)

__all__ = [
    "CANONICAL_EMOTIONS",
    "CORPUS_LABEL_MAPS",
    "EMOTIONS",
    "EMOTION_PROFILES",
    "ESPEAK_PRESETS",
    "FESTVOX_PRESETS",
    "FLITE_PRESETS",
    "NO_LABELS",
    "PRESETS",
    "SCHEMES",
    "SCHEME_MAPS",
    "AudioDecodeError",
    "CorpusSpec",
    "EmotionProfile",
    "EspeakPreset",
    "FestvoxPreset",
    "FlitePreset",
    "SyntheticPreset",
    "UDAData",
    "UDADataCollator",
    "build_uda_data",
    "cache_features",
    "get_label_map",
    "harmonize_labels",
    "iemocap_label_map",
    "load_audio",
    "load_corpus",
    "make_espeak_corpus",
    "make_festvox_corpus",
    "make_flite_corpus",
    "make_synthetic_corpus",
    "output_features",
    "split_source",
    "standardize_per_speaker",
    "add_speaker_statistics",
    "speaker_statistics",
]
