import math
import socket

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sklearn_confusion_matrix
from sklearn.metrics import f1_score, recall_score
from transformers import EvalPrediction

from emodna_hf.metrics import (
    EmotionRecognitionMetrics,
    classification_metrics,
    confusion_matrix,
    make_compute_metrics,
)


def test_imbalanced_majority_guess_separates_uar_from_war():
    references = [0] * 8 + [1] * 2
    predictions = [0] * 10
    metrics = classification_metrics(predictions, references, ["low", "high"])
    assert metrics["war"] == pytest.approx(0.8)
    assert metrics["uar"] == pytest.approx(0.5)
    assert metrics["recall_low"] == 1.0 and metrics["recall_high"] == 0.0
    # F1: low = 2*8 / (2*8 + 2) = 8/9, high = 0
    assert metrics["macro_f1"] == pytest.approx((8 / 9 + 0) / 2)


def test_class_absent_from_references_does_not_count_in_uar():
    references = [0, 0, 0, 1, 1, 1]
    predictions = [0, 0, 2, 1, 1, 0]
    metrics = classification_metrics(predictions, references, ["neu", "ang", "hap"])
    matrix = confusion_matrix(predictions, references, 3)
    np.testing.assert_array_equal(matrix, [[2, 0, 1], [1, 2, 0], [0, 0, 0]])
    assert metrics["uar"] == pytest.approx(2 / 3)
    assert metrics["uar"] == pytest.approx(
        recall_score(references, predictions, labels=[0, 1], average="macro")
    )
    # the convention not taken (absent class counted as recall 0) would give 4/9
    assert metrics["uar"] != pytest.approx(
        recall_score(references, predictions, labels=[0, 1, 2], average="macro", zero_division=0)
    )
    assert math.isnan(metrics["recall_hap"])
    assert metrics["war"] == pytest.approx(4 / 6)
    # macro-F1 over classes in references or predictions: (4/6 + 4/5 + 0) / 3, which is sklearn's default
    assert metrics["macro_f1"] == pytest.approx((4 / 6 + 4 / 5 + 0) / 3)
    assert metrics["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"))


def test_confusion_matrix_matches_sklearn_and_validates_ids():
    rng = np.random.default_rng(0)
    references, predictions = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    np.testing.assert_array_equal(
        confusion_matrix(predictions, references, 4),
        sklearn_confusion_matrix(references, predictions, labels=range(4)),
    )
    with pytest.raises(ValueError):
        confusion_matrix([0, 4], [0, 1], 4)
    with pytest.raises(ValueError):
        confusion_matrix([0, 1], [0], 4)
    with pytest.raises(ValueError):
        classification_metrics([], [])
    with pytest.raises(ValueError):
        classification_metrics([[0.1, 0.9]], [1])


def test_default_label_names_are_ids():
    metrics = classification_metrics([1, 0, 1], [1, 0, 0])
    assert set(metrics) == {"uar", "war", "macro_f1", "recall_0", "recall_1"}
    assert metrics["uar"] == pytest.approx(0.75)


def test_compute_metrics_takes_tuple_predictions_and_drops_ignored_labels():
    logits = np.array([[2.0, 0.1], [0.3, 1.0], [1.5, 0.2], [0.0, 3.0], [5.0, 0.0]])
    hidden = np.zeros((5, 8))  # a second model output the Trainer passes along
    labels = np.array([0, 1, 1, 1, -100])
    compute_metrics = make_compute_metrics(["low", "high"])
    metrics = compute_metrics(EvalPrediction(predictions=(logits, hidden), label_ids=labels))
    # kept rows: predictions 0, 1, 0, 1 vs references 0, 1, 1, 1
    assert metrics["uar"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert metrics["war"] == pytest.approx(3 / 4)
    assert all(type(value) is float for value in metrics.values())
    # argmax already taken by preprocess_logits_for_metrics, label_ids as a tuple
    ids = compute_metrics(EvalPrediction(predictions=logits.argmax(-1), label_ids=(labels, np.zeros(5))))
    assert ids == metrics


def test_evaluate_metric_works_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def no_network(*args, **kwargs):
        raise AssertionError("the metric tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    metric = EmotionRecognitionMetrics(cache_dir=str(tmp_path))
    metric.add_batch(predictions=[0, 0, 1], references=[0, 1, 1])
    metric.add_batch(predictions=[1, 0], references=[1, 0])
    result = metric.compute(label_names=["low", "high"])
    assert result == classification_metrics([0, 0, 1, 1, 0], [0, 1, 1, 1, 0], ["low", "high"])
    assert result["uar"] == pytest.approx((1.0 + 2 / 3) / 2)
