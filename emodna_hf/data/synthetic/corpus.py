"""What every generated corpus is, whichever family made it: its classes, its columns and its Arrow table.

Shared by the three generator families (source-filter, espeak-ng, flite/festival). Nothing acoustic lives here:
the flite family's independence from the other two (`flite_acoustics.py`) is about how speech sounds, not about
how a list of arrays becomes a `Dataset`.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
from datasets import Dataset, Features, List, Value

# The order of every preset's `labels` (its own raw label strings), `priors` and `styles`.
EMOTIONS = ("angry", "happy", "neutral", "sad")

FEATURES = Features(
    {
        "audio": {"array": List(Value("float32")), "sampling_rate": Value("int32")},
        "emotion": Value("string"),
        "speaker": Value("string"),
        "utt_id": Value("string"),
    }
)


Preset = TypeVar("Preset")


def sized_preset(preset: str | Preset, presets: Mapping[str, Preset], family: str,
                 n_per_class_per_speaker: int | None, n_speakers: int | None) -> Preset:
    """A family's preset (by name or as given) with the sizes asked for (None keeps the preset's)."""
    if isinstance(preset, str):
        if preset not in presets:
            raise ValueError(f"Unknown {family} preset {preset!r}; known presets: {sorted(presets)}")
        preset = presets[preset]
    if n_per_class_per_speaker is not None or n_speakers is not None:
        preset = dataclasses.replace(
            preset,
            n_per_class_per_speaker=n_per_class_per_speaker or preset.n_per_class_per_speaker,
            n_speakers=n_speakers or preset.n_speakers,
        )
    return preset


def source_crc(*files: str) -> int:
    """A checksum of the generator's source files (module `__file__`s): part of every corpus fingerprint, so that a
    cached corpus is regenerated when the code that made it changes."""
    crc = 0
    for file in (__file__, *files):
        crc ^= zlib.crc32(Path(file).read_bytes())
    return crc


def corpus_dataset(arrays: list[np.ndarray], emotions: list[str], speakers: list[str], utt_ids: list[str],
                   sampling_rate: int, name: str, fingerprint: str) -> Dataset:
    """A generated corpus as a `Dataset` (columns `audio`, `emotion`, `speaker`, `utt_id`) with `fingerprint`.

    The Arrow table is built directly: much faster than `Dataset.from_dict` on long float lists.
    """
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])])
    if offsets[-1] >= 2**31:  # List offsets are int32
        raise ValueError(f"{name}: {offsets[-1]} samples in total is too many for one corpus")
    audio = pa.StructArray.from_arrays(
        [
            pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(np.concatenate(arrays))),
            pa.array(np.full(len(arrays), sampling_rate, dtype=np.int32)),
        ],
        names=["array", "sampling_rate"],
    )
    table = pa.table({"audio": audio, "emotion": emotions, "speaker": speakers, "utt_id": utt_ids})
    return Dataset(table.cast(FEATURES.arrow_schema), fingerprint=fingerprint)


def class_counts(priors: tuple[float, ...], total: int) -> list[int]:
    """Split `total` utterances by `priors`: largest remainder (an exact total), ties to the earlier class."""
    share = np.asarray(priors, dtype=float) / sum(priors) * total
    counts = np.floor(share).astype(int)
    counts[np.argsort(counts - share, kind="stable")[: total - counts.sum()]] += 1
    return counts.tolist()
