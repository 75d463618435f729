"""Load one emotional-speech corpus from any source into the common layout the models and trainer read.

Output columns: `input_values` (float32 mono waveform at the requested rate, variable length), `labels`
(`ClassLabel` of the scheme), `speaker` (`"<corpus>:<id>"`, `"<corpus>:unknown"` when not known), `corpus`
(the corpus name) and `utt_id`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

from datasets import Audio, ClassLabel, Dataset, IterableDataset, Value

from .decoding import decode_batch, output_features
from .labels import SCHEMES, column_values, harmonize_labels
from .sources import _open_source
from .spec import LABEL_COLUMNS, NO_LABELS, SPEAKER_COLUMNS, UTT_ID_COLUMNS, CorpusSpec
from .storage import map_to_disk, resolve_cache_dir
from .streaming import load_streaming_corpus

__all__ = ["NO_LABELS", "CorpusSpec", "load_corpus", "output_features"]

logger = logging.getLogger(__name__)

def load_corpus(
    spec: CorpusSpec,
    *,
    scheme: str = "categorical4",
    sampling_rate: int = 16000,
    max_duration_s: float | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    require_labels: bool = True,
) -> tuple[Dataset, dict]:
    """Load, harmonise and decode one corpus.

    Decoding runs in `Dataset.map(batched=True)` (with a progress bar). With a `cache_dir` the decoded audio is
    written there in Arrow files, shard by shard (`storage.map_to_disk`: memory does not grow with the corpus),
    keyed by the source rows, the files' sizes and modification times and the decoding options, so that a
    second run reads them. Without one, Hub datasets cache it in the 🤗 datasets cache as usual and other
    sources are decoded in memory.

    Args:
        scheme: the label scheme (`emodna_hf.data.labels.SCHEMES`).
        sampling_rate: the output rate.
        max_duration_s: centre-crop longer utterances to this many seconds (None keeps them whole).
        cache_dir: the folder for the decoded audio (`"auto"`: `storage.default_cache_dir()`; `"none"`: in
            memory).
        num_proc: worker processes for decoding (`Dataset.map(num_proc=...)`).
        require_labels: `False` for a corpus that may come without labels (the target): with no label column
            found, or `label_column="none"`, every row's `labels` is None and the report says `unlabelled`.

    Returns:
        The dataset (columns `input_values`, `labels`, `speaker`, `corpus`, `utt_id`) and a report with the
        label harmonisation report (`labels`), skipped audio (`bad_audio`: `{utt_id: reason}`) and counts.
    """
    if spec.on_bad_audio not in ("raise", "skip"):
        raise ValueError(f"on_bad_audio must be 'raise' or 'skip', got {spec.on_bad_audio!r}")
    if spec.streaming or isinstance(spec.source, IterableDataset):
        return load_streaming_corpus(spec, scheme=scheme, sampling_rate=sampling_rate, max_duration_s=max_duration_s,
                                     require_labels=require_labels)
    folder = resolve_cache_dir(cache_dir) if cache_dir is not None else None
    raw, kind = _open_source(spec, folder)
    audio_column = _resolve_audio_column(raw, spec, kind)
    if isinstance(raw.features[audio_column], Audio):
        # datasets would decode with torchcodec, which this package does not need: read the bytes ourselves
        raw = raw.cast_column(audio_column, Audio(decode=False))
    label_column = spec.label_column
    if label_column is None and not require_labels:
        label_column = next((c for c in LABEL_COLUMNS if c in raw.column_names), NO_LABELS)
        if label_column != NO_LABELS and all(
            value is None or str(value).strip() == "" for value in column_values(raw, label_column)
        ):
            label_column = NO_LABELS  # a label column left empty: the corpus is unlabelled
    if label_column == NO_LABELS:
        if require_labels:
            raise ValueError(f"Corpus {spec.name!r} needs labels (a labelled source), but its label_column is "
                             f"{NO_LABELS!r}.")
        # An unlabelled corpus: every row's label is None (the collator turns it into -100).
        dataset = raw.add_column("labels", [None] * len(raw), feature=Value("int64"))
        label_report = {"unlabelled": True, "classes": {}, "dropped": {}, "mapping": {}}
    else:
        label_column = label_column or _first_present(raw, LABEL_COLUMNS, "label", spec.name)
        raw = _label_names(raw, label_column)
        dataset, label_report = harmonize_labels(
            raw,
            corpus=spec.label_map_name or spec.name,
            label_column=label_column,
            scheme=scheme,
            label_map=spec.label_map,
            drop_unmapped=spec.drop_unmapped,
        )
    if not len(dataset):
        raise ValueError(
            f"Corpus {spec.name!r}: no utterance is left after label mapping (dropped: {label_report['dropped']}). "
            "Check its label_map" + ("." if require_labels else ", or use it without labels (label_column='none').")
        )
    dataset = _standard_columns(dataset, spec, audio_column)
    dataset, duplicates = _drop_duplicates(dataset, spec, audio_column)

    fn_kwargs = {
        "audio_column": audio_column,
        "sampling_rate": sampling_rate,
        "max_duration_s": max_duration_s,
        "skip": spec.on_bad_audio == "skip",
        "corpus": spec.name,
    }
    features = output_features(scheme)
    features["audio_error"] = Value("string")
    # Hub and saved datasets already live in Arrow files: without a cache_dir, 🤗 datasets caches the decoded audio
    # next to them as before; local sources are decoded in memory unless a cache_dir is given.
    decoded = map_to_disk(
        dataset.with_format("numpy"),
        decode_batch,
        cache_dir=folder,
        name=f"{_safe(spec.name)}-decoded",
        key=_cache_key(dataset, audio_column, fn_kwargs) if folder is not None else "",
        desc=f"Decoding {spec.name}",
        num_proc=num_proc,
        batched=True,
        batch_size=32,
        remove_columns=dataset.column_names,
        features=features,
        fn_kwargs=fn_kwargs,
    )
    errors = column_values(decoded, "audio_error")
    utt_ids = column_values(decoded, "utt_id")
    bad = {utt: error for utt, error in zip(utt_ids, errors, strict=True) if error}
    if bad:
        decoded = decoded.select([i for i, error in enumerate(errors) if not error])
    decoded = decoded.remove_columns("audio_error").with_format(None)
    if (bad or duplicates) and not label_report.get("unlabelled"):
        # The class counts are those of the utterances actually used: skipped audio and duplicates are not.
        names = SCHEMES[scheme]
        labels = column_values(decoded, "labels")
        label_report = dict(label_report, classes={name: labels.count(i) for i, name in enumerate(names)})
    speakers = set(column_values(decoded, "speaker"))
    report = {
        "corpus": spec.name,
        "source_kind": kind,
        "n_raw": len(raw),
        "n": len(decoded),
        "labels": label_report,
        "bad_audio": bad,
        "duplicates": duplicates,
        "n_speakers": len(speakers - {f"{spec.name}:unknown"}),
        "sampling_rate": sampling_rate,
        "max_duration_s": max_duration_s,
    }
    return decoded, report


# --- columns ------------------------------------------------------------------------------------------------


def _resolve_audio_column(dataset: Dataset, spec: CorpusSpec, kind: str) -> str:
    if kind in ("csv", "jsonl", "audiofolder"):
        return "audio"  # _rows_to_dataset put the resolved paths there
    if spec.audio_column not in dataset.column_names:
        raise ValueError(
            f"Corpus {spec.name!r} has no audio column {spec.audio_column!r}: {dataset.column_names}"
        )
    return spec.audio_column


def _first_present(dataset: Dataset, names: tuple[str, ...], what: str, corpus: str) -> str:
    found = next((n for n in names if n in dataset.column_names), None)
    if found is None:
        raise ValueError(
            f"Corpus {corpus!r}: no {what} column among {dataset.column_names}; set CorpusSpec.{what}_column"
        )
    return found


def _label_names(dataset: Dataset, label_column: str) -> Dataset:
    """Hub corpora often store labels as a ClassLabel: map by the names, not by the ints."""
    feature = dataset.features[label_column]
    if not isinstance(feature, ClassLabel):
        return dataset
    names = feature.int2str(column_values(dataset, label_column))
    return dataset.remove_columns(label_column).add_column(label_column, names)


def _standard_columns(dataset: Dataset, spec: CorpusSpec, audio_column: str) -> Dataset:
    """Keep audio + labels and add the `speaker`, `corpus` and `utt_id` strings."""
    n = len(dataset)
    columns = dataset.column_names
    speaker_column = spec.speaker_column or next((c for c in SPEAKER_COLUMNS if c in columns), None)
    if speaker_column is not None and speaker_column not in columns:
        raise ValueError(f"Corpus {spec.name!r} has no speaker column {speaker_column!r}: {columns}")
    raw_speakers = column_values(dataset, speaker_column) if speaker_column else [None] * n
    speakers = [f"{spec.name}:{s}" if s not in (None, "") else f"{spec.name}:unknown" for s in raw_speakers]

    id_column = spec.utt_id_column or next((c for c in UTT_ID_COLUMNS if c in columns), None)
    if id_column is not None:
        utt_ids = [str(u) for u in column_values(dataset, id_column)]
    elif "_rel_path" in columns:
        utt_ids = [os.path.splitext(p)[0] for p in column_values(dataset, "_rel_path")]
    else:
        utt_ids = [f"{spec.name}-{i:06d}" for i in range(n)]

    dataset = dataset.select_columns([audio_column, "labels"])
    dataset = dataset.add_column("speaker", speakers).add_column("corpus", [spec.name] * n)
    return dataset.add_column("utt_id", utt_ids)


def _drop_duplicates(dataset: Dataset, spec: CorpusSpec, audio_column: str) -> tuple[Dataset, dict[str, int]]:
    """Rows naming an audio file that an earlier row already names are dropped (the first is kept), counted and
    warned about: an utterance listed twice would be trained on, and scored, twice. The same file with two
    different labels is an error naming it. Only file paths are compared (encoded bytes and arrays are not).

    Returns the dataset and `{utterance id of the kept row: extra rows dropped}`."""
    if dataset.features[audio_column] != Value("string"):
        return dataset, {}
    paths, labels = column_values(dataset, audio_column), column_values(dataset, "labels")
    utt_ids = column_values(dataset, "utt_id")
    feature = dataset.features["labels"]

    def label_name(label: Any) -> Any:
        return feature.int2str(label) if isinstance(feature, ClassLabel) and label is not None else label

    first: dict[str, int] = {}
    keep, duplicates = [], {}
    for i, path in enumerate(paths):
        if path not in first:
            first[path] = i
            keep.append(i)
            continue
        if labels[i] != labels[first[path]]:
            raise ValueError(
                f"Corpus {spec.name!r}: utterance {utt_ids[first[path]]!r} ({path}) is listed twice with different "
                f"labels ({label_name(labels[first[path]])!r} and {label_name(labels[i])!r}); keep one row for it."
            )
        kept = utt_ids[first[path]]
        duplicates[kept] = duplicates.get(kept, 0) + 1
    if not duplicates:
        return dataset, {}
    listed = ", ".join(list(duplicates)[:3]) + (" ..." if len(duplicates) > 3 else "")
    logger.warning("Corpus %r: %d row(s) name an audio file already listed (%s); each file is used once.",
                   spec.name, sum(duplicates.values()), listed)
    return dataset.select(keep), duplicates


def _cache_key(dataset: Dataset, audio_column: str, fn_kwargs: dict[str, Any]) -> str:
    """Rows + decoding options + the audio files' sizes and mtimes: editing a file invalidates the cache."""
    digest = hashlib.sha1(json.dumps(fn_kwargs, sort_keys=True).encode())
    digest.update(dataset._fingerprint.encode())
    if dataset.features[audio_column] == Value("string"):
        for path in column_values(dataset, audio_column):
            stat = os.stat(path) if os.path.exists(path) else None
            digest.update(f"{path}\0{stat and (stat.st_size, stat.st_mtime_ns)}\0".encode())
    return digest.hexdigest()[:16]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
