"""Streamed corpora: a `datasets.IterableDataset` (a Hub dataset loaded with `streaming=True`) used without ever
being materialised: labels are harmonised, audio decoded and features computed row by row as training reads it.

What changes against a map-style corpus (docs/architecture.md, "Corpora of any size"):
- the corpus size is unknown: training needs `max_steps` (an epoch is defined by steps), and pseudo-label memories
  are sized by the config alone;
- shuffling is approximate: a buffer of `shuffle_buffer_size` rows (and the order of the stream's shards) is
  shuffled again at every pass over the stream;
- a streamed source is split into train/eval by a hash of the speaker (of the utterance id when the speaker is
  unknown): speaker-independent, about `eval_fraction` of the speakers, but not stratified by class;
- the label report cannot count classes or dropped rows (that would need a pass over the corpus): unknown raw
  labels raise when they are met;
- nothing is cached: every pass decodes again (stream what you cannot store; cache what you can).
"""

from __future__ import annotations

import os
import zlib
from typing import Any

from datasets import Audio, ClassLabel, IterableDataset, load_dataset

from .decoding import decode_batch, output_features
from .labels import GENERIC_LABEL_MAP, SCHEMES, _key, _to_class, get_label_map
from .sources import _open_source
from .spec import GENERATED_PREFIX, LABEL_COLUMNS, NO_LABELS, SPEAKER_COLUMNS, UTT_ID_COLUMNS, CorpusSpec


def is_streamed(dataset: Any) -> bool:
    """Whether `dataset` is a streamed corpus (an `IterableDataset`)."""
    return isinstance(dataset, IterableDataset)


# Rows of a local corpus are spread over this many shards (fewer for smaller corpora): each training process reads
# whole shards when their number divides (`stream_batches.for_process`), and shuffling reorders them.
LOCAL_STREAM_SHARDS = 16


def open_stream(spec: CorpusSpec) -> tuple[IterableDataset, str]:
    """The corpus as an `IterableDataset` and the name of its audio column.

    `spec.source` itself when it is one; a local corpus (a manifest, an audiofolder, a saved dataset) is listed as
    `sources._open_source` lists it (paths of files, read by soundfile as the stream is read: no torchcodec, and
    the same containment check of file names) and streamed from that listing; a `.parquet` file and Hub ids are
    read with `load_dataset(..., streaming=True)`."""
    if isinstance(spec.source, IterableDataset):
        return spec.source, spec.audio_column
    text = spec.source if isinstance(spec.source, str) else None
    if text is not None and os.path.isfile(os.path.expanduser(text)) and text.lower().endswith(".parquet"):
        stream = load_dataset("parquet", data_files={spec.split or "train": os.path.expanduser(text)},
                              split=spec.split or "train", streaming=True)
    elif text is None or text.startswith(GENERATED_PREFIX) or os.path.exists(os.path.expanduser(text)):
        listed, kind = _open_source(spec)
        audio_column = "audio" if kind in ("csv", "jsonl", "audiofolder") else spec.audio_column
        if "_rel_path" in listed.column_names:  # ids as the map-style path gives them: the relative path
            listed = listed.add_column("_utt_id", [os.path.splitext(p)[0] for p in listed["_rel_path"]])
            listed = listed.remove_columns("_rel_path")
        return listed.to_iterable_dataset(num_shards=max(1, min(LOCAL_STREAM_SHARDS, len(listed)))), audio_column
    else:
        stream = load_dataset(text, spec.config_name, split=spec.split, streaming=True, **spec.load_kwargs)
    if not isinstance(stream, IterableDataset):
        raise ValueError(f"Corpus {spec.name!r}: load_dataset({spec.source!r}, streaming=True) returned "
                         f"{type(stream).__name__}; set split")
    return stream, spec.audio_column


def label_function(spec: CorpusSpec, scheme: str):
    """raw label → class id, or None for a row to drop (see `harmonize_labels`, whose rules it follows per row)."""
    corpus = spec.label_map_name or spec.name
    try:
        mapping = {_key(k): v for k, v in get_label_map(corpus).items()}
    except KeyError:
        mapping = {_key(k): v for k, v in GENERIC_LABEL_MAP.items()}
    mapping.update({_key(k): v for k, v in (spec.label_map or {}).items()})
    declared = set() if isinstance(spec.drop_unmapped, bool) else {_key(v) for v in spec.drop_unmapped}
    class_id = {name: i for i, name in enumerate(SCHEMES[scheme])}

    def to_id(raw: Any) -> int | None:
        key = _key(raw)
        if key not in mapping:
            if key in declared:
                return None
            raise ValueError(f"Corpus {spec.name!r} (streamed): unknown raw label {raw!r}. Map it with a label_map, "
                             "or list it in drop_unmapped.")
        name = _to_class(mapping[key], scheme, spec.name)
        if name is None and spec.drop_unmapped is False and mapping[key] is not None:
            raise ValueError(f"Corpus {spec.name!r}: label {raw!r} has no class in scheme {scheme!r} and "
                             "drop_unmapped=False.")
        return None if name is None else class_id[name]

    return to_id


def load_streaming_corpus(
    spec: CorpusSpec,
    *,
    scheme: str,
    sampling_rate: int,
    max_duration_s: float | None,
    require_labels: bool,
) -> tuple[IterableDataset, dict]:
    """The streamed counterpart of `load_corpus`: the same columns, computed lazily; and a report without counts."""
    stream, audio_column = open_stream(spec)
    columns = list(stream.column_names or [])
    if not columns:
        raise ValueError(f"Corpus {spec.name!r} (streamed): the stream declares no features; cast it to known "
                         "features first.")
    if audio_column not in columns:
        raise ValueError(f"Corpus {spec.name!r} has no audio column {audio_column!r}: {columns}")
    if isinstance(stream.features[audio_column], Audio):
        stream = stream.cast_column(audio_column, Audio(decode=False))  # decoded by soundfile, not torchcodec
    label_column = spec.label_column or next((c for c in LABEL_COLUMNS if c in columns), None)
    if label_column in (None, NO_LABELS):
        if require_labels:
            raise ValueError(f"Corpus {spec.name!r} (streamed) needs a label column; has {columns}.")
        label_column = None
    raw_feature = stream.features[label_column] if label_column else None
    to_id = label_function(spec, scheme) if label_column else None
    speaker_column = spec.speaker_column or next((c for c in SPEAKER_COLUMNS if c in columns), None)
    id_column = spec.utt_id_column or next((c for c in (*UTT_ID_COLUMNS, "_utt_id") if c in columns), None)

    def standard(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        raws = batch[label_column] if label_column else [None] * len(indices)
        if isinstance(raw_feature, ClassLabel):
            raws = [None if r is None else raw_feature.int2str(r) for r in raws]
        speakers = batch[speaker_column] if speaker_column else [None] * len(indices)
        ids = batch[id_column] if id_column else [f"{spec.name}-{i:06d}" for i in indices]
        # A target row without a label stays (unlabelled); a row whose label has no class is dropped below.
        labels = [None if to_id is None or (r is None and not require_labels) else to_id(r) for r in raws]
        return {
            "audio": batch[audio_column],
            "labels": labels,
            "_drop": [label is None and raw is not None for label, raw in zip(labels, raws, strict=True)],
            "speaker": [f"{spec.name}:{s}" if s not in (None, "") else f"{spec.name}:unknown" for s in speakers],
            "corpus": [spec.name] * len(indices),
            "utt_id": [str(u) for u in ids],
        }

    stream = stream.map(standard, batched=True, with_indices=True, remove_columns=columns)
    if label_column:  # rows whose label has no class in the scheme are dropped, as harmonize_labels does
        stream = stream.filter(lambda row: not row["_drop"])
    features = output_features(scheme)
    fn_kwargs = {"audio_column": "audio", "sampling_rate": sampling_rate, "max_duration_s": max_duration_s,
                 "skip": False, "corpus": spec.name}
    stream = stream.map(
        lambda batch: {k: v for k, v in decode_batch(batch, **fn_kwargs).items() if k != "audio_error"},
        batched=True, batch_size=32, remove_columns=["audio", "_drop"], features=features,
    )
    report = {
        "corpus": spec.name, "source_kind": "stream", "n_raw": None, "n": None, "streamed": True,
        "labels": {"unlabelled": label_column is None, "classes": {}, "dropped": {}, "mapping": {},
                   "label_column": label_column},
        "bad_audio": {}, "n_speakers": None, "sampling_rate": sampling_rate, "max_duration_s": max_duration_s,
    }
    return stream, report


def split_stream(stream: IterableDataset, eval_fraction: float, seed: int = 0) -> tuple[IterableDataset,
                                                                                        IterableDataset, dict]:
    """Train/eval parts of a streamed source: a speaker is held out when a hash of (speaker, seed) says so."""
    if eval_fraction == 0.0:
        return stream, stream.take(0), {"method": "none (streamed)", "n_train": None, "n_eval": None}

    def held_out(row: dict) -> bool:
        # Unknown speakers: hash the utterance id instead (a random, not speaker-independent, split for them).
        unit = row["utt_id"] if row["speaker"].endswith(":unknown") else row["speaker"]
        return zlib.crc32(f"{seed}\0{unit}".encode()) % 10_000 < eval_fraction * 10_000

    train = stream.filter(lambda row: not held_out(row))
    evaluation = stream.filter(held_out)
    return train, evaluation, {"method": "speaker hash (streamed)", "n_train": None, "n_eval": None}
