"""Source and target splits for unsupervised domain adaptation (what `EmoDnaTrainer` consumes)."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from datasets import Dataset, IterableDataset, Value, concatenate_datasets, interleave_datasets
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from .labels import SCHEMES, column_values
from .loading import CorpusSpec, load_corpus
from .storage import resolve_cache_dir
from .streaming import is_streamed, split_stream

logger = logging.getLogger(__name__)

# A source class with fewer utterances than this is learnt from a handful of examples: warned about.
FEW_SOURCE_UTTERANCES = 10


@dataclass
class UDAData:
    """The four splits of a cross-corpus UDA experiment; every split has an int `corpus_id` column.

    Attributes:
        source_train: labelled source utterances for training (all source corpora, `corpus_id` 0..k-1).
        source_eval: held-out source utterances: no speaker is on both sides when speakers are known.
        target: the whole target corpus (`corpus_id` k), trained on (adaptation) and evaluated on (transductive
            protocol). Its `labels` are for scoring only (None everywhere for an unlabelled target:
            `target_labelled` is False): `EmoDnaTrainer` drops them before training (`trainer.training_columns`,
            the one gate). `target_train` and `target_eval` name the same dataset by role.
        label_names: the scheme's class names (label ids follow this order).
        corpus_names: source corpus names then the target's, indexed by `corpus_id`.
        reports: the per-corpus loading reports of `load_corpus`, plus the split report under `"split"`.
        cache_dir: the folder of the Arrow cache files (None: in memory); later passes (`prepare_inputs`) use it.
        num_proc: worker processes for those passes.
    """

    source_train: Dataset
    source_eval: Dataset
    target: Dataset
    label_names: list[str]
    corpus_names: list[str]
    reports: dict[str, dict] = field(default_factory=dict)
    cache_dir: Path | None = None
    num_proc: int | None = None

    @property
    def target_train(self) -> Dataset:
        """The target as adaptation reads it: `target` (the trainer drops its labels)."""
        return self.target

    @property
    def target_eval(self) -> Dataset:
        """The target as evaluation reads it: `target`, with its labels where it has them."""
        return self.target

    @property
    def target_labelled(self) -> bool:
        """Whether the target corpus came with labels (for scoring only; training never reads them)."""
        if is_streamed(self.target):  # a stream is not read for this: its label column says it
            return not self.reports[self.corpus_names[-1]]["labels"]["unlabelled"]
        return any(label is not None for label in self.target["labels"])


def build_uda_data(
    sources: list[CorpusSpec],
    target: CorpusSpec,
    *,
    scheme: str = "categorical4",
    sampling_rate: int = 16000,
    max_duration_s: float | None = None,
    source_eval_fraction: float = 0.2,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    allow_missing_source_classes: bool = False,
) -> UDAData:
    """Load every corpus with `load_corpus`, split each source corpus into train/eval, and prepare the target.

    Each source corpus is split on its own, so every source corpus is represented in both source splits.
    Rows of known speakers are split by speaker (`StratifiedGroupKFold`: no speaker on both sides, class
    balance kept as far as whole speakers allow); rows of unknown speakers get a stratified random split. The
    eval share is approximately `source_eval_fraction` (one fold of `round(1 / fraction)` speaker folds).

    `cache_dir`: where decoded audio (and, later, `prepare_inputs`'s waveforms and features) are written as Arrow
    files (`"auto"`: `storage.default_cache_dir()`); None keeps local corpora in memory.

    `allow_missing_source_classes`: train even when the sources together have no utterance of some class of the
    scheme (see `check_source_classes`).
    """
    if not 0.0 <= source_eval_fraction < 1.0:
        raise ValueError(f"source_eval_fraction must be in [0, 1), got {source_eval_fraction}")
    if not sources:
        raise ValueError("build_uda_data needs at least one source corpus")
    corpus_names = [spec.name for spec in [*sources, target]]
    if len(set(corpus_names)) != len(corpus_names):
        raise ValueError(f"Corpus names must be unique, got {corpus_names}")
    load = dict(
        scheme=scheme,
        sampling_rate=sampling_rate,
        max_duration_s=max_duration_s,
        cache_dir=cache_dir,
        num_proc=num_proc,
    )
    reports: dict[str, dict] = {"split": {}}
    train_parts, eval_parts = [], []
    for corpus_id, spec in enumerate(sources):
        dataset, reports[spec.name] = load_corpus(spec, **load)
        dataset = _with_corpus_id(dataset, corpus_id)
        if is_streamed(dataset):
            train, held_out, reports["split"][spec.name] = split_stream(dataset, source_eval_fraction, seed)
            train_parts.append(train)
            eval_parts.append(held_out)
            continue
        train_idx, eval_idx, reports["split"][spec.name] = split_source(dataset, source_eval_fraction, seed)
        train_parts.append(dataset.select(train_idx))
        eval_parts.append(dataset.select(eval_idx))
    reports["source_classes"] = check_source_classes(
        [reports[spec.name] for spec in sources], scheme, allow_missing=allow_missing_source_classes)
    # The target may come without labels (the normal case of UDA): its labels are only ever used for scoring.
    target_dataset, reports[target.name] = load_corpus(target, require_labels=False, **load)
    return UDAData(
        source_train=_combine(train_parts),
        source_eval=_combine(eval_parts),
        target=_with_corpus_id(target_dataset, len(sources)),
        label_names=list(SCHEMES[scheme]),
        corpus_names=corpus_names,
        reports=reports,
        cache_dir=resolve_cache_dir(cache_dir) if cache_dir is not None else None,
        num_proc=num_proc,
    )


def check_source_classes(reports: list[dict], scheme: str, allow_missing: bool = False) -> dict:
    """The source corpora's utterances per class, summed; a ValueError naming the classes that none of them has.

    A model trained without a class still has an output for it, which it never predicts: the model card and the
    scheme would claim a class the model cannot recognise. With `allow_missing` such a run goes on (with a
    warning). A class with fewer than `FEW_SOURCE_UTTERANCES` utterances is warned about. Streamed sources are not
    counted (that would need a pass over them): with any, nothing is checked.

    Returns `{"classes": {class: n}, "missing": [...], "few": {class: n}}` (empty for streamed sources).
    """
    if any(report.get("streamed") for report in reports):
        return {}
    names = list(SCHEMES[scheme])
    counts = {name: sum(report["labels"]["classes"].get(name, 0) for report in reports) for name in names}
    missing = [name for name, n in counts.items() if n == 0]
    few = {name: n for name, n in counts.items() if 0 < n < FEW_SOURCE_UTTERANCES}
    corpora = " + ".join(report["corpus"] for report in reports)
    if missing and not allow_missing:
        raise ValueError(
            f"The source corpora ({corpora}) have no utterance of class(es) {', '.join(map(repr, missing))} of the "
            f"scheme {scheme!r} (counts: {counts}): the model could never predict them. Add a source corpus that "
            "has them, map its labels to them (label_map), choose a scheme without them, or pass "
            "--allow_missing_source_classes true to train anyway."
        )
    if missing:
        logger.warning("The source corpora (%s) have no utterance of %s: the model will never predict them "
                       "(--allow_missing_source_classes).", corpora, ", ".join(missing))
    if few:
        logger.warning("Source classes with only a handful of utterances (fewer than %d) in %s: %s; the model learns "
                       "them from very few examples.", FEW_SOURCE_UTTERANCES, corpora,
                       ", ".join(f"{name} ({n})" for name, n in few.items()))
    return {"classes": counts, "missing": missing, "few": few}


def _with_corpus_id(dataset: Dataset | IterableDataset, corpus_id: int) -> Dataset | IterableDataset:
    if is_streamed(dataset):
        features = dataset.features.copy()
        features["corpus_id"] = Value("int64")
        return dataset.map(lambda batch: {"corpus_id": [corpus_id] * len(batch["utt_id"])}, batched=True,
                           features=features)
    return dataset.add_column("corpus_id", [corpus_id] * len(dataset), feature=Value("int64"))


def _combine(parts: list) -> Dataset | IterableDataset:
    """The source corpora as one dataset; with any streamed, one stream that takes each row once, alternating."""
    if len(parts) == 1 or not any(is_streamed(p) for p in parts):
        return parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    streams = [p if is_streamed(p) else p.to_iterable_dataset() for p in parts]
    return interleave_datasets(streams, stopping_strategy="all_exhausted_without_replacement")


def split_source(dataset: Dataset, eval_fraction: float, seed: int = 0) -> tuple[list[int], list[int], dict]:
    """Train/eval row indices of one corpus (see `build_uda_data`), and a report of how it was split."""
    n = len(dataset)
    labels = np.asarray(column_values(dataset, "labels"))
    speakers = np.asarray(column_values(dataset, "speaker"))
    corpus = dataset[0]["corpus"] if n else ""
    unknown = speakers == f"{corpus}:unknown"
    if eval_fraction == 0.0 or n == 0:
        return list(range(n)), [], {"method": "none", "n_train": n, "n_eval": 0}
    known_idx, unknown_idx = np.flatnonzero(~unknown), np.flatnonzero(unknown)
    eval_idx: list[int] = []
    method = []
    if len(known_idx):
        groups = speakers[known_idx]
        n_speakers = len(set(groups))
        if n_speakers < 2:
            raise ValueError(
                f"Corpus {corpus!r} has a single known speaker: no speaker-independent source split exists"
            )
        folds = min(n_speakers, max(2, round(1 / eval_fraction)))
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        _, held_out = next(splitter.split(known_idx, labels[known_idx], groups))
        eval_idx += known_idx[held_out].tolist()
        method.append(f"speaker-independent ({folds} folds over {n_speakers} speakers)")
    if len(unknown_idx) >= 2:
        sub_labels = labels[unknown_idx]
        stratify = sub_labels if _stratifiable(sub_labels, eval_fraction) else None
        _, held_out = train_test_split(
            unknown_idx, test_size=eval_fraction, random_state=seed, stratify=stratify
        )
        eval_idx += held_out.tolist()
        method.append(
            "stratified random (unknown speakers)" if stratify is not None else "random (unknown speakers)"
        )
    held = set(eval_idx)
    train_idx = [i for i in range(n) if i not in held]
    eval_idx = sorted(held)
    return (
        train_idx,
        eval_idx,
        {"method": " + ".join(method), "n_train": len(train_idx), "n_eval": len(eval_idx)},
    )


def _stratifiable(labels: np.ndarray, eval_fraction: float) -> bool:
    """train_test_split stratifies only with two rows per class and room for every class on both sides."""
    counts = np.bincount(labels)
    n_classes = int(np.sum(counts > 0))
    n_eval = math.ceil(eval_fraction * len(labels))
    return bool(np.all(counts[counts > 0] >= 2)) and min(n_eval, len(labels) - n_eval) >= n_classes
