"""Data layer: label harmonisation, audio decoding, corpus loading, synthetic corpora (source-filter,
espeak-ng and flite/festival), UDA splits, batches."""

from .assembly import UDAData, build_uda_data, split_source
from .audio import AudioDecodeError, load_audio
from .collator import UDADataCollator
from .espeak import ESPEAK_PRESETS, EspeakPreset, make_espeak_corpus
from .features import cache_features
from .flite_corpora import FLITE_PRESETS, FlitePreset, make_flite_corpus
from .labels import (
    CANONICAL_EMOTIONS,
    CORPUS_LABEL_MAPS,
    SCHEME_MAPS,
    SCHEMES,
    get_label_map,
    harmonize_labels,
    iemocap_label_map,
)
from .loading import CorpusSpec, load_corpus, output_features
from .speakers import add_speaker_statistics, speaker_statistics, standardize_per_speaker
from .synthetic import (
    EMOTION_PROFILES,
    EMOTIONS,
    PRESETS,
    EmotionProfile,
    SyntheticPreset,
    make_synthetic_corpus,
)

__all__ = [
    "CANONICAL_EMOTIONS",
    "CORPUS_LABEL_MAPS",
    "EMOTIONS",
    "EMOTION_PROFILES",
    "ESPEAK_PRESETS",
    "FLITE_PRESETS",
    "PRESETS",
    "SCHEMES",
    "SCHEME_MAPS",
    "AudioDecodeError",
    "CorpusSpec",
    "EmotionProfile",
    "EspeakPreset",
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
    "make_flite_corpus",
    "make_synthetic_corpus",
    "output_features",
    "split_source",
    "standardize_per_speaker",
    "add_speaker_statistics",
    "speaker_statistics",
]
