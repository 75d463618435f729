"""cache_features: cached backbone features give the model the same logits as the waveforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Array2D, Dataset
from factories import tiny_config, tone

from emodna_hf import EmoDnaForAudioClassification
from emodna_hf.data import UDADataCollator, cache_features


@pytest.mark.parametrize("backbone", ["tcn", "opensmile", "wav2vec2"])
def test_cached_features_reproduce_the_waveform_logits(backbone):
    torch.manual_seed(0)
    overrides = {"freeze_backbone": True} if backbone == "wav2vec2" else {}
    model = EmoDnaForAudioClassification(tiny_config(backbone, **overrides)).eval()
    waves = [tone(seconds, 180.0 + 40 * i, seed=i) for i, seconds in enumerate([0.5, 0.8, 0.3])]
    dataset = Dataset.from_dict({"input_values": waves, "labels": [0, 1, 2], "corpus_id": [0, 0, 1]})
    model.train()  # cache_features must switch to eval itself and restore the mode
    cached = cache_features(dataset, model, batch_size=2)
    assert model.training
    model.eval()
    assert "input_values" not in cached.column_names and cached["labels"][:] == [0, 1, 2]
    if backbone != "wav2vec2":
        assert isinstance(cached.features["input_features"], Array2D)
    collate = UDADataCollator()
    rows = [cached[i] for i in range(3)]
    frames = [np.asarray(r["input_features"]).shape[-2] for r in rows]
    if backbone == "opensmile":
        assert frames == [1, 1, 1]  # one vector of functionals per utterance
    else:
        assert frames[1] > frames[0] > frames[2]  # valid frames only, no padding stored
    with torch.no_grad():
        from_features = model(**{k: v for k, v in collate(rows).items() if k != "corpus_ids"}).logits
        waveform_batch = collate([dataset[i] for i in range(3)])
        from_waves = model(
            input_values=waveform_batch["input_values"], attention_mask=waveform_batch["attention_mask"]
        ).logits
    torch.testing.assert_close(from_features, from_waves, atol=1e-5, rtol=1e-4)
    kept = cache_features(dataset, model, keep_input_values=True)
    assert {"input_values", "input_features"} <= set(kept.column_names)


def test_standardize_per_speaker_uses_each_speakers_statistics():
    from emodna_hf.data import standardize_per_speaker

    rng = np.random.default_rng(0)
    rows = [rng.normal(loc, scale, size=(1, 3)).astype(np.float32)
            for loc, scale in [(5, 1), (5, 1), (5, 1), (-3, 0.1), (-3, 0.1)]]
    dataset = Dataset.from_dict({"input_features": rows, "speaker": ["a:1"] * 3 + ["a:2"] * 2, "labels": [0] * 5})
    dataset = dataset.cast_column("input_features", Array2D(shape=(None, 3), dtype="float32"))
    out = np.concatenate([np.asarray(r) for r in standardize_per_speaker(dataset)["input_features"]])
    raw = np.concatenate(rows)
    for speaker_rows in (slice(0, 3), slice(3, 5)):
        expected = (raw[speaker_rows] - raw[speaker_rows].mean(0)) / (raw[speaker_rows].std(0) + 1e-5)
        np.testing.assert_allclose(out[speaker_rows], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="'speaker'"):
        standardize_per_speaker(dataset.remove_columns("speaker"))
