"""UDADataCollator: padding, masks, labels of unlabelled rows, corpus ids, cached features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Dataset

from emodna_hf.data import UDADataCollator


def test_waveforms_are_zero_padded_with_a_long_attention_mask():
    examples = [
        {"input_values": [0.5, -0.5, 0.25], "labels": 2, "corpus_id": 0, "speaker": "a:s1"},
        {"input_values": np.ones(5, np.float32), "corpus_id": 1},  # an unlabelled target row
        {"input_values": np.full(1, 0.1), "labels": None, "corpus_id": 1},
    ]
    batch = UDADataCollator()(examples)
    assert set(batch) == {"input_values", "attention_mask", "labels", "corpus_ids"}
    assert batch["input_values"].dtype == torch.float32 and batch["input_values"].shape == (3, 5)
    assert batch["attention_mask"].dtype == torch.long
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5, [1, 0, 0, 0, 0]]
    assert batch["input_values"][0].tolist() == [0.5, -0.5, 0.25, 0.0, 0.0]
    assert batch["input_values"][2, 0].item() == pytest.approx(0.1)
    assert batch["labels"].tolist() == [2, -100, -100] and batch["labels"].dtype == torch.long
    assert batch["corpus_ids"].tolist() == [0, 1, 1] and batch["corpus_ids"].dtype == torch.long


def test_pad_to_multiple_of():
    batch = UDADataCollator(pad_to_multiple_of=4)([{"input_values": [1.0] * 5}, {"input_values": [1.0] * 2}])
    assert batch["input_values"].shape == (2, 8) and batch["attention_mask"].sum(1).tolist() == [5, 2]
    assert "corpus_ids" not in batch and batch["labels"].tolist() == [-100, -100]


def test_rows_of_a_dataset_collate():
    dataset = Dataset.from_dict(
        {"input_values": [[0.1] * 4, [0.2] * 6], "labels": [1, 3], "corpus_id": [0, 0]}
    )
    batch = UDADataCollator()([dataset[0], dataset[1]])
    assert batch["input_values"].shape == (2, 6) and batch["labels"].tolist() == [1, 3]


@pytest.mark.parametrize("layout", ["frames_features", "layers_frames_hidden"])
def test_cached_features_are_padded_along_time(layout):
    rng = np.random.default_rng(0)
    shapes = [(7, 3), (4, 3)] if layout == "frames_features" else [(2, 7, 3), (2, 4, 3)]
    features = [rng.normal(size=s).astype(np.float32) for s in shapes]
    batch = UDADataCollator(pad_to_multiple_of=8)(
        [
            {"input_features": features[0], "labels": 0, "corpus_id": 0},
            {"input_features": features[1], "corpus_id": 2},
        ]
    )
    assert set(batch) == {"input_features", "feature_mask", "labels", "corpus_ids"}
    time_axis = len(shapes[0]) - 2
    expected = list(shapes[0])
    expected[time_axis] = 8
    assert list(batch["input_features"].shape) == [2, *expected]
    assert batch["feature_mask"].shape == (2, 8) and batch["feature_mask"].sum(1).tolist() == [7, 4]
    second = batch["input_features"][1]
    np.testing.assert_array_equal(second.narrow(time_axis, 0, 4).numpy(), features[1])
    assert not second.narrow(time_axis, 4, 4).any()
    assert batch["labels"].tolist() == [0, -100]


def test_malformed_batches_raise():
    collate = UDADataCollator()
    with pytest.raises(ValueError, match="empty"):
        collate([])
    with pytest.raises(ValueError, match="input_values' or 'input_features"):
        collate([{"labels": 1}])
    with pytest.raises(ValueError, match="1-D"):
        collate([{"input_values": np.zeros((2, 3))}])
    with pytest.raises(ValueError, match="Only 1 of 2 examples have a 'corpus_id'"):
        collate([{"input_values": [0.0], "corpus_id": 0}, {"input_values": [0.0]}])
