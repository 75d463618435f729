"""Speaker-normalised models: the statistics are the training ones by every path, and input without them is refused."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from factories import tiny_config, tone

from emodna_hf import EmoDnaForAudioClassification, create_feature_extractor
from emodna_hf.data import UDADataCollator, standardize_per_speaker
from emodna_hf.preparation import prepare_dataset
from emodna_hf.speakers import predict_by_speaker


def _corpus() -> Dataset:
    """Two speakers with different voices (pitch and level), four utterances each, of different lengths."""
    rows = {"input_values": [], "speaker": [], "corpus_id": []}
    for s, (pitch, gain) in enumerate([(120.0, 1.0), (240.0, 0.3)]):
        for i in range(4):
            rows["input_values"].append(gain * tone(0.4 + 0.07 * i, frequency=pitch + 15 * i, seed=10 * s + i))
            rows["speaker"].append(f"c:spk{s}")
            rows["corpus_id"].append(1)
    return Dataset.from_dict(rows)


def _model(backbone_type: str, speaker_normalization: bool = True) -> EmoDnaForAudioClassification:
    torch.manual_seed(0)
    config = tiny_config(backbone_type, speaker_normalization=speaker_normalization)
    return EmoDnaForAudioClassification(config).eval()


def test_a_speaker_normalised_model_refuses_input_without_statistics():
    model = _model("tcn")
    assert model.config.speaker_normalization and model.config.to_dict()["speaker_normalization"] is True
    waves = torch.from_numpy(np.stack([tone(0.5, seed=i) for i in range(2)]))
    with pytest.raises(ValueError, match=r"speaker_normalization=True.*speaker_statistics"):
        model(waves)
    features, mask = model.compute_cacheable_features(waves)
    with pytest.raises(ValueError, match="speaker_mean and speaker_std"):
        model(input_features=features, feature_mask=mask)
    mean, std = model.speaker_statistics(waves)
    with pytest.raises(ValueError, match="speaker_mean and speaker_std"):
        model(waves, speaker_mean=mean)
    with pytest.raises(ValueError, match=r"shape \(batch, 39\)"):
        model(waves, speaker_mean=mean[:5], speaker_std=std[:5])
    assert model(waves, speaker_mean=mean, speaker_std=std).logits.shape == (2, 4)
    # A speaker-free model never silently ignores statistics it would not use.
    with pytest.raises(ValueError, match="trained speaker-free"):
        _model("tcn", speaker_normalization=False)(waves, speaker_mean=mean, speaker_std=std)


@pytest.mark.parametrize("backbone_type", ["tcn", "opensmile"])
def test_every_path_applies_the_training_statistics(backbone_type):
    """Training's rows (cached features + their speaker's statistics, collated), `speaker_statistics` on a
    speaker's waveforms, and `predict_by_speaker` give the logits of the speaker-free network on features
    standardised per speaker (what `--speaker_normalization` trained on before the model applied it)."""
    model = _model(backbone_type)
    extractor = create_feature_extractor(model.config)
    corpus = _corpus()
    rows, _ = prepare_dataset(corpus, model, extractor, "c")  # as training and evaluate_model prepare a set
    cached = rows.remove_columns(["speaker_mean", "speaker_std"])
    batch = UDADataCollator()([rows[i] for i in range(len(rows))])
    assert batch["speaker_mean"].shape == (len(rows), np.shape(cached[0]["input_features"])[-1])
    with torch.no_grad():
        training = model(input_features=batch["input_features"], feature_mask=batch["feature_mask"],
                         speaker_mean=batch["speaker_mean"], speaker_std=batch["speaker_std"]).logits
        # The same weights, speaker-free, on features standardised per speaker beforehand.
        free = _model(backbone_type, speaker_normalization=False)
        free.load_state_dict(model.state_dict())
        standardised = UDADataCollator()(list(standardize_per_speaker(cached)))
        reference = free(input_features=standardised["input_features"],
                         feature_mask=standardised["feature_mask"]).logits
    torch.testing.assert_close(training, reference, atol=1e-5, rtol=1e-5)

    speakers = np.asarray(corpus["speaker"])
    for speaker in np.unique(speakers):
        index = np.flatnonzero(speakers == speaker)
        waves = [np.asarray(corpus[int(i)]["input_values"], np.float32) for i in index]
        mean, std = model.speaker_statistics(extractor(waves, sampling_rate=16000)["input_values"])
        np.testing.assert_allclose(mean.numpy(), rows[int(index[0])]["speaker_mean"], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(std.numpy(), rows[int(index[0])]["speaker_std"], rtol=1e-5, atol=1e-5)
    logits = predict_by_speaker(model, extractor, [np.asarray(w, np.float32) for w in corpus["input_values"]],
                                list(speakers), batch_size=3)
    np.testing.assert_allclose(logits, training.numpy(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="no speaker id"):
        predict_by_speaker(model, extractor, [tone(0.5)], [None])


def test_the_pipeline_and_export_refuse_a_speaker_normalised_model(tmp_path):
    from transformers import pipeline

    from emodna_hf.export import exportable

    model = _model("tcn")
    model.save_pretrained(tmp_path)
    extractor = create_feature_extractor(model.config)
    extractor.save_pretrained(tmp_path)
    classifier = pipeline("audio-classification", model=str(tmp_path), trust_remote_code=True)
    with pytest.raises(ValueError, match="speaker_statistics"):
        classifier(tone(0.5))
    # The statistics given with the audio: the model's own probabilities.
    waves = [tone(0.5, frequency=150 + 20 * i, seed=i) for i in range(3)]
    mean, std = model.speaker_statistics(extractor(waves, sampling_rate=16000)["input_values"])
    scores = classifier({"raw": waves[0], "sampling_rate": 16000, "speaker_mean": mean, "speaker_std": std},
                        top_k=None)
    with torch.no_grad():
        expected = model(**extractor(waves[0], sampling_rate=16000, return_tensors="pt"), speaker_mean=mean,
                         speaker_std=std).logits.softmax(-1)[0]
    for score in scores:
        assert score["score"] == pytest.approx(float(expected[model.config.label2id[score["label"]]]), rel=1e-5)
    with pytest.raises(ValueError, match="Export is not supported"):
        exportable(model)


def test_preparation_refuses_a_corpus_without_speaker_ids(tmp_path):
    model = _model("tcn")
    extractor = create_feature_extractor(model.config)
    unknown = _corpus().map(lambda row: {"speaker": "c:unknown"})
    with pytest.raises(ValueError, match="no speaker ids.*--corpus_speaker_column"):
        prepare_dataset(unknown, model, extractor, "c")
    prepared, cached = prepare_dataset(_corpus(), model, extractor, "c")
    assert cached and {"input_features", "speaker_mean", "speaker_std"} <= set(prepared.column_names)
    with pytest.raises(ValueError, match="cached features"):
        prepare_dataset(_corpus(), model, extractor, "c", cache_features=False)
