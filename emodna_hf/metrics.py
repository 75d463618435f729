"""Speech emotion recognition metrics: UAR, WAR, macro-F1, per-class recall and the confusion matrix.

Everything is computed locally from the confusion matrix (numpy only), so nothing needs the Hub:
``evaluate.load("accuracy")`` fails offline. Three surfaces share one implementation:

* :func:`classification_metrics` on arrays of class ids;
* :func:`make_compute_metrics` for ``transformers.Trainer(compute_metrics=...)``;
* :class:`EmotionRecognitionMetrics`, an ``evaluate.Metric`` to instantiate directly (``add_batch``/``compute``).

Class-set conventions (why they differ per metric):

* **UAR** (unweighted average recall, the headline metric of SER; = balanced accuracy) averages the recall of
  the classes *present in the references*. The recall of a class with no reference sample is 0/0, undefined;
  counting it as 0 (sklearn's ``recall_score(average="macro", labels=range(C), zero_division=0)``) would cap
  UAR below 1 for a perfect classifier on a subset that lacks a class, and averaging it as 1 would inflate it.
  Its ``recall_<label>`` entry is NaN so that the absence is visible rather than silent.
* **WAR** (weighted average recall) is plain accuracy.
* **macro-F1** averages over the classes present in the references *or* the predictions (sklearn's default
  class set): F1 is well defined (0) for a class that is predicted but absent, and that is a real error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import datasets
import evaluate
import numpy as np
from numpy.typing import ArrayLike
from transformers import EvalPrediction

IGNORE_INDEX = -100


def _as_ids(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of class ids, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {array.dtype}")
    return array.astype(np.int64)  # also types an empty list, which numpy makes float64


def confusion_matrix(predictions: ArrayLike, references: ArrayLike, num_classes: int) -> np.ndarray:
    """(C, C) counts; rows are reference classes, columns predicted classes (sklearn's layout)."""
    predictions = _as_ids(predictions, "predictions")
    references = _as_ids(references, "references")
    if predictions.shape != references.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {references.shape[0]} references")
    for name, ids in (("predictions", predictions), ("references", references)):
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise ValueError(f"{name} must be class ids in [0, {num_classes}), got {ids.min()}..{ids.max()}")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (references, predictions), 1)
    return matrix


def classification_metrics(
    predictions: ArrayLike, references: ArrayLike, label_names: Sequence[str] | None = None
) -> dict[str, float]:
    """UAR, WAR, macro-F1 and per-class recall of predicted class ids against reference class ids.

    Args:
        predictions: (N,) predicted class ids.
        references: (N,) reference class ids (N >= 1).
        label_names: names of the C classes, used for the ``recall_<label>`` keys and to fix C. Without it,
            C = 1 + the largest id seen and the keys are ``recall_0``, ``recall_1``, ...

    Returns:
        ``{"uar", "war", "macro_f1", "recall_<label>" for every class}``, all Python floats. See the module
        docstring for the class set of each average; ``recall_<label>`` is NaN for a class absent from the
        references.
    """
    predictions = _as_ids(predictions, "predictions")
    references = _as_ids(references, "references")
    if references.size == 0:
        raise ValueError("cannot compute metrics on zero samples")
    if label_names is None:
        num_classes = int(max(predictions.max(), references.max())) + 1
        label_names = [str(c) for c in range(num_classes)]
    matrix = confusion_matrix(predictions, references, len(label_names)).astype(np.float64)

    true_positives = np.diag(matrix)
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    in_references = support > 0
    recall = np.full(len(label_names), np.nan)
    recall[in_references] = true_positives[in_references] / support[in_references]

    in_either = in_references | (predicted > 0)
    f1_denominator = support + predicted  # 2 TP + FP + FN
    f1 = 2 * true_positives[in_either] / f1_denominator[in_either]

    metrics = {
        "uar": float(recall[in_references].mean()),
        "war": float(true_positives.sum() / matrix.sum()),
        "macro_f1": float(f1.mean()),
    }
    metrics.update({f"recall_{name}": float(value) for name, value in zip(label_names, recall, strict=True)})
    return metrics


def make_compute_metrics(
    label_names: Sequence[str] | None = None,
) -> Callable[[EvalPrediction], dict[str, float]]:
    """Build a ``compute_metrics`` function for ``transformers.Trainer``.

    The returned function takes an ``EvalPrediction`` whose ``predictions`` are the logits (N, C), or a tuple
    whose first element is (extra model outputs follow it when the model returns several tensors), or class
    ids (N,) when ``preprocess_logits_for_metrics`` already took the argmax. ``label_ids`` may likewise be a
    tuple (when ``label_names`` has several entries); the first element is the emotion labels. Rows whose
    reference is ``-100`` (padding, unlabelled rows) are dropped; with no labelled row at all (an unlabelled
    corpus) it returns an empty dict. It returns floats only, as the Trainer's logging expects.
    """

    def compute_metrics(eval_prediction: EvalPrediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        predictions = np.asarray(predictions)
        if predictions.ndim == 2:
            predictions = predictions.argmax(axis=-1)
        references = eval_prediction.label_ids
        if isinstance(references, (tuple, list)):
            references = references[0]
        references = np.asarray(references).reshape(-1)
        keep = references != IGNORE_INDEX
        if not keep.any():  # an unlabelled corpus (e.g. the target in real use): nothing to score
            return {}
        return classification_metrics(predictions[keep], references[keep], label_names)

    return compute_metrics


_DESCRIPTION = """UAR (macro recall over the classes present in the references), WAR (accuracy), macro-F1 and
per-class recall for speech emotion recognition, computed locally (no Hub access)."""

_INPUTS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted class ids.
    references (`list` of `int`): reference class ids.
    label_names (`list` of `str`, *optional*): class names; fixes the number of classes and names the
        `recall_<label>` keys.
Returns:
    `uar`, `war`, `macro_f1` and `recall_<label>` for every class (NaN for a class absent from the references).
Examples:
    >>> metric = EmotionRecognitionMetrics()
    >>> metric.compute(predictions=[0, 0, 1], references=[0, 1, 1], label_names=["low", "high"])["uar"]
    0.75
"""

_CITATION = """@inproceedings{schuller2009interspeech,
  title={The {INTERSPEECH} 2009 Emotion Challenge},
  author={Schuller, Bj{\\"o}rn and Steidl, Stefan and Batliner, Anton},
  booktitle={Proc. Interspeech},
  year={2009}
}"""


class EmotionRecognitionMetrics(evaluate.Metric):
    """``evaluate`` surface of :func:`classification_metrics`.

    Instantiate it directly (``EmotionRecognitionMetrics()``): it is not a Hub module and needs no
    ``evaluate.load``. Accumulate with ``add_batch(predictions=..., references=...)`` and finish with
    ``compute(label_names=...)``.
    """

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_INPUTS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(
        self, predictions: Sequence[int], references: Sequence[int], label_names: Sequence[str] | None = None
    ) -> dict[str, float]:
        return classification_metrics(predictions, references, label_names)
