"""The generated development corpora (`synthetic:<preset>` sources): three families of generators, one front door.

- `source_filter.py`: numpy source-filter synthesis (`PRESETS`: synth-a, synth-b, synth-c);
- `espeak.py`: the espeak-ng formant synthesiser (`ESPEAK_PRESETS`: synth-en, synth-de, synth-es);
- `flite.py` + `flite_acoustics.py`: flite/festival readings re-synthesised with WORLD emotion styles
  (`FLITE_PRESETS`: synth-studio, synth-call, synth-it, synth-radio; the spent confirmation family);
- `festvox.py` + `festvox_render.py`: festival voices in four languages, an arousal/valence/dominance latent per
  utterance, sox effect chains (`FESTVOX_PRESETS`: synth-cs, synth-fi, synth-ca, synth-ru; the next confirmation
  family, sealed).

The first two share one recording chain (`acoustics.py`: room, noise, channel, level); every family shares what a
generated corpus is (`corpus.py`: classes, columns, the Arrow table). `make_synthetic_corpus` picks the family by
preset; nothing in the families imports this file, so they never import each other.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from .corpus import EMOTIONS
from .espeak import ESPEAK_PRESETS, EspeakPreset, make_espeak_corpus
from .festvox import FESTVOX_PRESETS, FestvoxPreset, make_festvox_corpus
from .flite import FLITE_PRESETS, FlitePreset, make_flite_corpus
from .source_filter import (
    EMOTION_PROFILES,
    PRESETS,
    EmotionProfile,
    SyntheticPreset,
    make_source_filter_corpus,
)

# Every family's presets, in one place: the preset check of the arguments and `make_synthetic_corpus` read this.
FAMILIES: dict[str, tuple[dict, object]] = {
    "source-filter": (PRESETS, make_source_filter_corpus),
    "espeak-ng": (ESPEAK_PRESETS, make_espeak_corpus),
    "flite/festival": (FLITE_PRESETS, make_flite_corpus),
    "festvox": (FESTVOX_PRESETS, make_festvox_corpus),
}


def preset_names() -> list[str]:
    """Every generated corpus's preset name (all families), sorted."""
    return sorted(name for presets, _ in FAMILIES.values() for name in presets)


__all__ = [
    "EMOTIONS",
    "FAMILIES",
    "EMOTION_PROFILES",
    "ESPEAK_PRESETS",
    "FESTVOX_PRESETS",
    "FLITE_PRESETS",
    "PRESETS",
    "EmotionProfile",
    "EspeakPreset",
    "FestvoxPreset",
    "FlitePreset",
    "SyntheticPreset",
    "make_espeak_corpus",
    "make_festvox_corpus",
    "make_flite_corpus",
    "make_source_filter_corpus",
    "make_synthetic_corpus",
    "preset_names",
]


def make_synthetic_corpus(
    preset: str | SyntheticPreset | EspeakPreset | FlitePreset | FestvoxPreset,
    seed: int = 0,
    n_per_class_per_speaker: int | None = None,
    n_speakers: int | None = None,
    cache_dir: Path | None = None,
) -> Dataset:
    """Generate the corpus of any family's preset (a name or a preset object) as a `datasets.Dataset`.

    Columns: `audio` ({"array": float32 mono, "sampling_rate": int}), `emotion` (the preset's raw label strings),
    `speaker` ("spk00", ...; `load_corpus` prefixes the corpus name) and `utt_id` (unique across presets). The
    same preset, seed and sizes always give identical arrays (and the same tool versions, for espeak-ng and
    flite/festival); every utterance has its own random stream, so changing the sizes keeps the utterances both
    sizes share. With a `cache_dir`, the corpus is saved there and read back next time
    (`storage.cached_generation`).
    """
    sizes = {"seed": seed, "n_per_class_per_speaker": n_per_class_per_speaker, "n_speakers": n_speakers,
             "cache_dir": cache_dir}
    if isinstance(preset, str):
        for presets, make in FAMILIES.values():
            if preset in presets:
                return make(presets[preset], **sizes)
        raise ValueError(
            f"Unknown synthetic preset {preset!r}; known presets: "
            + "; ".join(f"{sorted(presets)} ({family})" for family, (presets, _) in FAMILIES.items())
        )
    if isinstance(preset, EspeakPreset):
        return make_espeak_corpus(preset, **sizes)
    if isinstance(preset, FlitePreset):
        return make_flite_corpus(preset, **sizes)
    if isinstance(preset, FestvoxPreset):
        return make_festvox_corpus(preset, **sizes)
    return make_source_filter_corpus(preset, **sizes)
