"""The field's classical cross-corpus bar, on the same corpora and splits as the deep methods.

openSMILE eGeMAPS v02 functionals (computed by the same front end as the model's `"opensmile"` backbone) +
class-balanced logistic regression, with

* `egemaps_lr_source`: standardisation fitted on the source training corpus (applied to the target as is);
* `egemaps_lr_corpus`: per-corpus standardisation (each corpus with its own mean and std: the classical
  cross-corpus remedy, which uses the unlabelled target's statistics);
* `target_supervised`: the ceiling, trained on the *target's own labels* by speaker-independent 5-fold
  cross-validation (each fold standardised with its training part): what a labelled target would give. It is a
  reference only; no other method sees target labels.

Each is deterministic (the seed is recorded but changes nothing). Used by `cross_corpus.py`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold

from emodna_hf.data import UDAData, cache_features
from emodna_hf.data.labels import column_values
from emodna_hf.metrics import classification_metrics
from emodna_hf.modeling import EmoDnaConfig, EmoDnaForAudioClassification
from emodna_hf.modeling.opensmile_emodna import OPENSMILE_FEATURE_SETS

CLASSICAL_METHODS = ("egemaps_lr_source", "egemaps_lr_corpus", "target_supervised")
_FEATURES: dict[str, np.ndarray] = {}  # by dataset fingerprint: every method and seed of a direction shares them


def functionals(dataset, sampling_rate: int, feature_set: str = "eGeMAPSv02", cache_dir=None,
                num_proc: int | None = None) -> np.ndarray:
    """`(rows, n_features)` openSMILE functionals of a dataset's `input_values` (raw waveforms).

    Computed by the model's own `opensmile` front end through `cache_features`: with a `cache_dir`, from the
    same content-addressed feature store as the deep methods' runs (each utterance extracted once in all)."""
    key = f"{dataset._fingerprint}-{sampling_rate}-{feature_set}"
    if key not in _FEATURES:
        if not len(dataset):
            return np.zeros((0, OPENSMILE_FEATURE_SETS[feature_set]), np.float32)
        model = EmoDnaForAudioClassification(EmoDnaConfig(backbone_type="opensmile", sampling_rate=sampling_rate,
                                                          opensmile_feature_set=feature_set))
        cached = cache_features(dataset, model, cache_dir=cache_dir, num_proc=num_proc)
        _FEATURES[key] = np.stack([np.asarray(row, np.float32)[0] for row in column_values(cached, "input_features")])
    return _FEATURES[key]


def _standardize(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (features - reference.mean(0)) / (reference.std(0) + 1e-8)


def _classifier(seed: int) -> LogisticRegression:
    return LogisticRegression(max_iter=5000, class_weight="balanced", random_state=seed)


def _metrics(predictions: np.ndarray, labels: np.ndarray, label_names: list[str]) -> dict[str, Any]:
    return classification_metrics(predictions, labels, label_names)


def _per_speaker(features: np.ndarray, dataset) -> np.ndarray:
    """Each speaker's functionals standardised with that speaker's statistics (speaker normalisation)."""
    speakers = np.asarray(column_values(dataset, "speaker"))
    out = np.empty_like(features)
    for speaker in np.unique(speakers):
        rows = speakers == speaker
        out[rows] = _standardize(features[rows], features[rows])
    return out


def run_classical(method: str, data: UDAData, sampling_rate: int, seed: int = 0,
                  speaker_normalization: bool = False) -> dict[str, Any]:
    """Target (and held-out source) metrics of one classical method on one direction's splits.

    With `speaker_normalization`, every corpus's functionals are first standardised per speaker.
    """
    if method not in CLASSICAL_METHODS:
        raise ValueError(f"Unknown classical method {method!r}; expected one of {CLASSICAL_METHODS}.")
    label_names = list(data.label_names)
    def features(dataset):
        values = functionals(dataset, sampling_rate, cache_dir=data.cache_dir, num_proc=data.num_proc)
        return _per_speaker(values, dataset) if speaker_normalization else values

    target = features(data.target_eval)
    target_labels = np.asarray(column_values(data.target_eval, "labels"))
    if method == "target_supervised":
        speakers = np.asarray(column_values(data.target_eval, "speaker"))
        predictions = np.zeros_like(target_labels)
        n_speakers = len(set(speakers))
        # Speaker-independent folds where the corpus has speakers; stratified folds otherwise.
        folds = (GroupKFold(min(5, n_speakers)).split(target, target_labels, speakers) if n_speakers >= 2 else
                 StratifiedKFold(5, shuffle=True, random_state=seed).split(target, target_labels))
        for train, test in folds:
            classifier = _classifier(seed).fit(_standardize(target[train], target[train]), target_labels[train])
            predictions[test] = classifier.predict(_standardize(target[test], target[train]))
        return {"target": _metrics(predictions, target_labels, label_names)}
    source = features(data.source_train)
    source_labels = np.asarray(column_values(data.source_train, "labels"))
    classifier = _classifier(seed).fit(_standardize(source, source), source_labels)
    target_reference = source if method == "egemaps_lr_source" else target
    record = {"target": _metrics(classifier.predict(_standardize(target, target_reference)), target_labels,
                                 label_names)}
    if len(data.source_eval):
        held_out = features(data.source_eval)
        held_out_labels = np.asarray(column_values(data.source_eval, "labels"))
        record["source"] = _metrics(classifier.predict(_standardize(held_out, source)), held_out_labels,
                                    label_names)
    return record
