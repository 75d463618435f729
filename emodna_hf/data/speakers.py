"""Per-speaker statistics of cached features, for models trained speaker-normalised (`--speaker_normalization`).

The classic SER remedy for speaker variability (pitch range, loudness, voice quality differ between people):
standardise each speaker's features with that speaker's statistics. It uses the `speaker` column, metadata most
corpora carry (not an emotion label), and needs the whole set of a speaker's utterances in the corpus
(transductive, like the target's adaptation). The statistics are defined once, in the model's own
`modeling/speakers_emodna.py`: training, `evaluate_model` and `model.speaker_statistics` compute the same numbers,
and the model applies them in `forward` (`speaker_mean`, `speaker_std`), so a saved model cannot silently skip them.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
from datasets import Dataset, List, Value

from ..modeling.speakers_emodna import frame_moments, merge_moments, statistics_from_moments
from .storage import SHARD_ROWS, _reopened, map_to_disk, resolve_cache_dir

STATISTICS_COLUMNS = ("speaker_mean", "speaker_std")


def _check_columns(dataset: Dataset, column: str) -> None:
    if column not in dataset.column_names or "speaker" not in dataset.column_names:
        raise ValueError(f"Speaker standardisation needs cached {column!r} and 'speaker' columns; the dataset has "
                         f"{dataset.column_names}.")


def speaker_statistics(dataset: Dataset, column: str = "input_features") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each speaker's `(mean, std)` float32 vectors over every valid frame of their cached features.

    Rows of unknown speakers (`"<corpus>:unknown"`) form one group per corpus. The corpus is never held: the
    speakers' moments (count, mean and sum of squared deviations in float64) are merged shard by shard.
    """
    _check_columns(dataset, column)
    moments: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
    for start in range(0, len(dataset), SHARD_ROWS):
        shard = _reopened(dataset.select(range(start, min(len(dataset), start + SHARD_ROWS))))
        rows = shard.with_format("numpy", columns=[column, "speaker"])[:]
        speakers = np.asarray(rows["speaker"])
        for speaker in np.unique(speakers):
            part = frame_moments([rows[column][i] for i in np.flatnonzero(speakers == speaker)])
            moments[speaker] = merge_moments(moments.get(speaker), part)
        del shard, rows
    return {speaker: statistics_from_moments(m) for speaker, m in moments.items()}


def add_speaker_statistics(dataset: Dataset, column: str = "input_features", *,
                           cache_dir: str | os.PathLike | None = None, num_proc: int | None = None) -> Dataset:
    """Add `speaker_mean` and `speaker_std` (each row's speaker statistics, `speaker_statistics`) as columns,
    which the collator batches and the model's `forward` applies to the cached features.

    Written to `cache_dir` shard by shard when one is given (`storage.map_to_disk`).
    """
    _check_columns(dataset, column)
    if not len(dataset):
        return dataset
    statistics = speaker_statistics(dataset, column)

    def rows(speakers: list[str]) -> dict[str, list]:
        return {"speaker_mean": [statistics[s][0] for s in speakers], "speaker_std": [statistics[s][1] for s in speakers]}

    features = dataset.features.copy()
    for name in STATISTICS_COLUMNS:
        features[name] = List(Value("float32"))
    folder = resolve_cache_dir(cache_dir) if cache_dir is not None else None
    key = hashlib.sha1(f"{dataset._fingerprint}-speaker-statistics-{column}".encode()).hexdigest()[:16]
    return map_to_disk(
        dataset, rows, cache_dir=folder, name="speaker-statistics", key=key, desc="Speaker statistics",
        num_proc=num_proc, batched=True, batch_size=256, features=features, input_columns=["speaker"],
    ).with_format(None)


def standardize_per_speaker(dataset: Dataset, column: str = "input_features", *,
                            cache_dir: str | os.PathLike | None = None, num_proc: int | None = None) -> Dataset:
    """The cached features standardised with their speaker's statistics (what a speaker-normalised model's
    `forward` computes from `add_speaker_statistics`' columns), for analyses outside the model."""
    _check_columns(dataset, column)
    if not len(dataset):
        return dataset
    statistics = speaker_statistics(dataset, column)

    def standardise(batch: dict[str, list]) -> dict[str, list]:
        return {column: [((np.asarray(f, dtype=np.float32) - statistics[s][0]) / statistics[s][1]).astype(np.float32)
                         for f, s in zip(batch[column], batch["speaker"], strict=True)]}

    folder = resolve_cache_dir(cache_dir) if cache_dir is not None else None
    key = hashlib.sha1(f"{dataset._fingerprint}-per-speaker-{column}".encode()).hexdigest()[:16]
    return map_to_disk(
        dataset.with_format("numpy", columns=[column], output_all_columns=True), standardise, cache_dir=folder,
        name="per-speaker", key=key, desc="Standardising per speaker", num_proc=num_proc, batched=True,
        batch_size=64, features=dataset.features,
    ).with_format(None)
