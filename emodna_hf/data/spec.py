"""What a corpus is to the data layer before anything is read: the `CorpusSpec`, and the names of the columns that
loading looks for and writes.

A leaf: it imports nothing from the rest of `emodna_hf.data`, so every module there (sources, loading, streaming)
and the argument parsing can share it without importing each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from datasets import Dataset, IterableDataset

# `label_column="none"`: the corpus is used without labels (an unlabelled target), even if it has a label column.
NO_LABELS = "none"
# Tried in order when a CorpusSpec leaves the column unnamed.
LABEL_COLUMNS = ("emotion", "label", "labels", "emotion_label", "category")
SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk", "spk_id", "client_id")
UTT_ID_COLUMNS = ("utt_id", "id", "utterance_id", "file_id")
# The file column of a manifest or metadata file, when `audio_column` is not one of its columns.
FILE_COLUMNS = ("file_name", "path", "audio", "file", "filename", "wav")
# The columns of every corpus `load_corpus` returns (`decoding.output_features` gives their features).
OUTPUT_COLUMNS = ("input_values", "labels", "speaker", "corpus", "utt_id")
# A `source` naming a generated corpus: `"synthetic:<preset>"` (`emodna_hf.data.synthetic`).
GENERATED_PREFIX = "synthetic:"


@dataclass
class CorpusSpec:
    """Where a corpus is and how to read it.

    Attributes:
        name: the corpus name: the `corpus` column, the speaker prefix, and (unless `label_map_name` is set)
            the built-in label map it uses (see `emodna_hf.data.labels.get_label_map`).
        source: one of
            - a `datasets.Dataset` (in memory);
            - `"synthetic:<preset>"` (a preset of `emodna_hf.data.synthetic`; `load_kwargs` go to
              `make_synthetic_corpus`, e.g. `{"seed": 1}`);
            - a CSV (`.csv`, `.tsv`) or JSON-lines (`.jsonl`, `.json`) manifest with a file column
              (`audio_column`, or `file_name`/`path`/...) whose relative paths are relative to the
              manifest's folder;
            - a folder in the 🤗 audiofolder layout: audio files with the label as the parent folder's name,
              or `metadata.csv`/`metadata.jsonl` files with a `file_name` column; a `<split>/` subfolder is
              used when it exists;
            - a folder written by `Dataset.save_to_disk`, or a `.parquet` file;
            - otherwise a Hub dataset id, read with `datasets.load_dataset(source, config_name, split=split,
              **load_kwargs)`.
        split: the split of a Hub dataset, `DatasetDict` folder or audiofolder.
        audio_column: the column with audio (path string, `{"path","bytes"}` or `{"array","sampling_rate"}`).
        label_column / speaker_column / utt_id_column: None picks the first present of the usual names
            (`emotion`, `label`, ... / `speaker`, `speaker_id`, ... / `utt_id`, `id`, ...). Without a speaker
            column every speaker is unknown; without an id column the id is the file's path (relative to the
            manifest or folder) without extension, or `<name>-<row>`.
        label_map: raw label -> canonical emotion entries that extend or override the built-in map.
        label_map_name: which built-in map to use when `name` is not a known corpus name (e.g. "iemocap").
        drop_unmapped: see `harmonize_labels`.
        on_bad_audio: "raise" (default): an unreadable, empty or truncated file, or one shorter than the model's
            minimum input (`MIN_INPUT_SECONDS`, 0.1 s), stops loading with an error naming it; "skip": such rows
            are dropped and listed in the report's `bad_audio`.
        load_kwargs: extra keyword arguments for `load_dataset` (Hub) or `make_synthetic_corpus` (synthetic).
        streaming: read the corpus as a stream (`load_dataset(..., streaming=True)`; a `source` that is an
            `IterableDataset` always streams): nothing is materialised (see `emodna_hf.data.streaming`).
        allow_paths_outside_corpus: let a manifest's or metadata file's file names lead outside its folder
            (`../x.wav`, absolute paths). Off by default: a downloaded corpus's metadata must not read arbitrary
            local files.
    """

    name: str
    source: str | os.PathLike | Dataset | IterableDataset
    split: str | None = "train"
    config_name: str | None = None
    audio_column: str = "audio"
    label_column: str | None = None
    speaker_column: str | None = None
    utt_id_column: str | None = None
    label_map: Mapping[str, str | None] | None = None
    label_map_name: str | None = None
    drop_unmapped: bool | Iterable[str | None] = True
    on_bad_audio: Literal["raise", "skip"] = "raise"
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    streaming: bool = False
    allow_paths_outside_corpus: bool = False
