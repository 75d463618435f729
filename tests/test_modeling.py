import os

import numpy as np
import pytest
import torch
from factories import LABELS, SSL_TYPES, tiny_config, tiny_ssl_backbone_config, tone
from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForAudioClassification,
    Wav2Vec2Model,
    pipeline,
)

from emodna_hf import EmoDnaConfig, EmoDnaForAudioClassification, create_feature_extractor

ALL_BACKBONES = ["tcn", "opensmile", *SSL_TYPES]


def _model(backbone_type="tcn", **overrides):
    torch.manual_seed(0)
    return EmoDnaForAudioClassification(tiny_config(backbone_type, **overrides)).eval()


@pytest.mark.parametrize("backbone_type", ALL_BACKBONES)
def test_output_shapes(backbone_type):
    model = _model(backbone_type)
    out = model(torch.randn(3, 8000), output_embeddings=True)
    assert out.logits.shape == (3, len(LABELS))
    assert out.emotion_embeddings.shape == (3, 16)
    assert out.pooled_features.shape == (3, model.pooling.output_size)
    assert out.corpus_embeddings is None  # the corpus branch belongs to the Emo-DNA objective
    plain = model(torch.randn(2, 8000))
    assert plain.emotion_embeddings is None and plain.loss is None


PADDING_EXACT_BACKBONES = [
    *[b for b in ALL_BACKBONES if b != "data2vec-audio"],
    pytest.param(
        "data2vec-audio",
        marks=pytest.mark.xfail(
            strict=True,
            reason="upstream: data2vec-audio's 5 stacked positional convs re-spread padding after it is zeroed once",
        ),
    ),
]


@pytest.mark.parametrize("backbone_type", PADDING_EXACT_BACKBONES)
@pytest.mark.parametrize("pooling", ["mean", "attentive_stats"])
def test_padded_utterance_gets_same_logits_as_alone(backbone_type, pooling):
    model = _model(backbone_type, pooling=pooling)
    long, short = torch.randn(12000), torch.randn(7000)
    batch = torch.zeros(2, 12000)
    batch[0], batch[1, :7000] = long, short
    mask = torch.zeros(2, 12000, dtype=torch.long)
    mask[0], mask[1, :7000] = 1, 1
    with torch.no_grad():
        batched = model(batch, attention_mask=mask).logits
        alone = model(short[None]).logits
    torch.testing.assert_close(batched[1:], alone, atol=1e-5, rtol=1e-4)
    # ...and the padding mattered: without the mask the padded utterance is scored differently.
    with torch.no_grad():
        unmasked = model(batch).logits
    assert not torch.allclose(unmasked[1:], alone, atol=1e-5)


@pytest.mark.parametrize("backbone_type", ["tcn", "wav2vec2"])
def test_gradients_reach_every_part_of_the_model_and_of_the_method(backbone_type):
    from emodna_hf.objectives import ObjectiveBatch, build_objective

    model = _model(backbone_type, freeze_feature_encoder=False).train()
    objective = build_objective(model.config, pooled_size=model.pooling.output_size).train()
    labels, corpus_ids = torch.tensor([0, 1, -100, -100]), torch.tensor([0, 0, 1, 1])
    out = model(torch.randn(4, 8000), corpus_ids=corpus_ids, output_embeddings=True)
    terms, _ = objective(ObjectiveBatch(out, labels, corpus_ids, corpus_ids == 1, progress=0.5, grl_coefficient=0.5))
    sum(weight * loss for loss, weight in terms.values()).backward()
    named = [*model.named_parameters(), *(("objective." + n, p) for n, p in objective.named_parameters())]
    missing = [n for n, p in named if p.requires_grad and (p.grad is None or not p.grad.any())]
    # The SSL quantizer/masking embedding is unused in fine-tuning (as in Wav2Vec2ForSequenceClassification); the
    # attention scorer's last bias shifts every frame's score alike, which the softmax cancels (its gradient is 0
    # up to rounding).
    assert [n for n in missing if "masked_spec_embed" not in n and n != "pooling.scorer.2.bias"] == []


def test_gradient_reversal_flips_discriminator_gradient():
    from emodna_hf.objectives.parts import CorpusDiscriminator

    model = _model().train()
    model.config.encoder_dropout = 0.0
    discriminator = CorpusDiscriminator(16, 16, 2, dropout=0.0)
    x = torch.randn(2, 8000)
    grads = []
    for coefficient in (1.0, -1.0):
        model.zero_grad()
        torch.manual_seed(0)
        embeddings = model(x, output_embeddings=True).emotion_embeddings
        discriminator(embeddings, coefficient).sum().backward()
        grads.append(model.emotion_encoder[-1].weight.grad.clone())
    torch.testing.assert_close(grads[0], -grads[1])
    assert grads[0].abs().sum() > 0


def test_loss_ignores_unlabelled_rows_and_stays_connected():
    model = _model()
    x = torch.randn(3, 8000)
    out = model(x, labels=torch.tensor([2, -100, -100]))
    expected = torch.nn.functional.cross_entropy(out.logits[:1], torch.tensor([2]))
    torch.testing.assert_close(out.loss, expected)
    none = model(x, labels=torch.full((3,), -100))
    assert none.loss.item() == 0.0 and none.loss.requires_grad


@pytest.mark.parametrize("backbone_type", ["tcn", "opensmile", "wavlm"])
def test_save_load_round_trip_is_exact(tmp_path, backbone_type):
    model = _model(backbone_type)
    model.save_pretrained(tmp_path)
    files = set(os.listdir(tmp_path))
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)
    assert {"configuration_emodna.py", "modeling_emodna.py", "tcn_emodna.py"} <= files
    x = torch.randn(2, 9000)
    for cls in (EmoDnaForAudioClassification, AutoModelForAudioClassification, AutoModel):
        loaded = cls.from_pretrained(tmp_path).eval()
        assert type(loaded) is EmoDnaForAudioClassification
        with torch.no_grad():
            torch.testing.assert_close(loaded(x).logits, model(x).logits, rtol=0, atol=0)
    config = AutoConfig.from_pretrained(tmp_path)
    assert config.id2label == model.config.id2label and config.label2id == model.config.label2id
    assert set(config.auto_map) == {"AutoConfig", "AutoModel", "AutoModelForAudioClassification"}


def test_cached_features_give_same_logits():
    for backbone_type, overrides in [("tcn", {}), ("opensmile", {}), ("wav2vec2", {"freeze_backbone": True})]:
        model = _model(backbone_type, **overrides)
        x = torch.randn(2, 9000)
        mask = torch.ones(2, 9000, dtype=torch.long)
        mask[1, 6000:] = 0
        with torch.no_grad():
            features, feature_mask = model.compute_cacheable_features(x, mask)
            torch.testing.assert_close(
                model(input_features=features, feature_mask=feature_mask).logits,
                model(x, attention_mask=mask).logits,
            )
        assert features.dim() == (4 if backbone_type == "wav2vec2" else 3)
    with pytest.raises(ValueError, match="freeze_backbone"):
        _model("wav2vec2").compute_cacheable_features(torch.randn(1, 8000))


def test_freezing_options():
    frozen = _model("wav2vec2", freeze_backbone=True)
    assert not any(p.requires_grad for p in frozen.backbone.parameters())
    frozen.train()
    assert not frozen.backbone.training and frozen.emotion_encoder.training
    cnn_only = _model("wav2vec2")
    assert not any(p.requires_grad for p in cnn_only.backbone.feature_extractor.parameters())
    assert all(p.requires_grad for p in cnn_only.backbone.encoder.parameters())


def test_from_backbone_pretrained_loads_local_checkpoint(tmp_path):
    backbone_config = AutoConfig.for_model(**tiny_ssl_backbone_config("wav2vec2"))
    torch.manual_seed(1)
    Wav2Vec2Model(backbone_config).save_pretrained(tmp_path / "ssl")
    model = EmoDnaForAudioClassification.from_backbone_pretrained(
        str(tmp_path / "ssl"), id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    reference = Wav2Vec2Model.from_pretrained(tmp_path / "ssl")
    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], tensor, rtol=0, atol=0)
    assert model.config.backbone_type == "wav2vec2" and model.config.num_labels == 4


def test_pipeline_returns_labelled_scores(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path)
    create_feature_extractor(model.config).save_pretrained(tmp_path)
    classifier = pipeline("audio-classification", model=str(tmp_path), trust_remote_code=True)
    scores = classifier(tone(1.2), top_k=None)
    assert sorted(s["label"] for s in scores) == sorted(LABELS)
    assert abs(sum(s["score"] for s in scores) - 1.0) < 1e-5
    features = create_feature_extractor(model.config)(tone(1.2), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        probs = model(**features).logits.softmax(-1)[0]
    best = max(scores, key=lambda s: s["score"])
    assert best["label"] == LABELS[int(probs.argmax())]
    assert np.isclose(best["score"], float(probs.max()), atol=1e-5)


def test_integer_pcm_is_rescaled_and_stereo_mixed_down(tmp_path):
    """int16/int32/uint8 arrays are PCM (rescaled to [-1, 1]); one stereo utterance is mixed down to mono, through
    the feature extractor and through the pipeline that ships with the model."""
    torch.manual_seed(0)
    # No per-utterance normalisation and no cepstral mean removal: the input's scale reaches the logits.
    model = _model("tcn", cepstral_mean_normalization=False)
    extractor = create_feature_extractor(model.config)
    extractor.do_normalize = False
    wave = tone(0.5)
    values = lambda audio, **kw: extractor(audio, sampling_rate=16000, **kw)["input_values"]  # noqa: E731
    pcm16 = np.round(wave * 32767).astype(np.int16)
    np.testing.assert_allclose(values(pcm16)[0], pcm16 / 32768, atol=1e-7)
    np.testing.assert_allclose(values(pcm16.astype(np.int32) * 65536)[0], pcm16 / 32768, atol=1e-7)
    np.testing.assert_allclose(values(np.array([0, 128, 255], dtype=np.uint8))[0], [-1, 0, 127 / 128])
    with pytest.raises(TypeError, match="dtype int64:.*no standard scale"):
        extractor(pcm16.astype(np.int64), sampling_rate=16000)

    stereo = np.stack([wave, 0.5 * wave], axis=1)  # (samples, channels), as soundfile reads it
    mono = 0.75 * wave
    assert np.asarray(values(stereo)).shape == (1, len(wave))
    np.testing.assert_allclose(values(stereo)[0], mono, atol=1e-7)
    np.testing.assert_allclose(values([stereo.T, stereo], padding=True), [mono, mono], atol=1e-7)  # list items
    assert np.asarray(values(np.stack([wave, wave]))).shape == (2, len(wave))  # a 2-D array stays a batch
    with pytest.raises(ValueError, match=r"shape \(3, 5\): expected one utterance"):
        extractor([np.zeros((3, 5), dtype=np.float32)], sampling_rate=16000)
    with torch.no_grad():
        expected = model(**extractor(mono, sampling_rate=16000, return_tensors="pt")).logits
        torch.testing.assert_close(model(**extractor(stereo, sampling_rate=16000, return_tensors="pt")).logits,
                                   expected)
        # The model on a raw (samples, channels) tensor says what is wrong, not only "2 samples is too short".
        with pytest.raises(ValueError, match=r"too short.*shape \(8000, 2\).*mix it down to mono"):
            model(torch.from_numpy(stereo))

    model.save_pretrained(tmp_path)
    extractor.save_pretrained(tmp_path)
    classifier = pipeline("audio-classification", model=str(tmp_path), trust_remote_code=True)
    scores = lambda audio: {s["label"]: s["score"] for s in classifier(audio, top_k=None)}  # noqa: E731
    reference = scores(mono)
    for audio in (stereo, stereo.T, {"raw": stereo.T, "sampling_rate": 16000}):
        assert scores(audio) == pytest.approx(reference, rel=1e-5)
    assert scores({"array": pcm16, "sampling_rate": 16000}) == pytest.approx(scores(pcm16 / 32768), rel=1e-5)
    unscaled = scores(pcm16.astype(np.float32))
    assert max(abs(unscaled[k] - reference[k]) for k in reference) > 1e-3  # the scale matters to this model


def test_bad_config_and_inputs_fail_clearly():
    with pytest.raises(ValueError, match="Unknown backbone_type 'bert'"):
        EmoDnaConfig(backbone_type="bert")
    with pytest.raises(ValueError, match="disagree"):
        EmoDnaConfig(id2label={0: "sad", 1: "happy"}, label2id={"sad": 1, "happy": 0})
    with pytest.raises(ValueError, match="model_type 'hubert'"):
        EmoDnaConfig(backbone_type="wavlm", backbone_config={"model_type": "hubert"})
    with pytest.raises(ValueError, match="Unknown pooling"):
        tiny_config(pooling="max")
    model = _model()
    with pytest.raises(ValueError, match="mono waveforms.*\\(2, 2, 8000\\)"):
        model(torch.randn(2, 2, 8000))
    with pytest.raises(ValueError, match="attention_mask shape"):
        model(torch.randn(2, 8000), attention_mask=torch.ones(2, 7000))
    with pytest.raises(ValueError, match="exactly one"):
        model()


def test_id2label_alone_derives_label2id():
    config = EmoDnaConfig(id2label={0: "low", 1: "high"})
    assert config.label2id == {"low": 0, "high": 1}


def test_corpus_normalization_standardises_each_corpus_and_tracks_the_target():
    from emodna_hf.modeling.modeling_emodna import CorpusNormalization

    norm = CorpusNormalization(3, target_corpus_id=1, momentum=1.0).train()
    source = torch.randn(6, 3) * 5 + 10
    target = torch.randn(4, 3) * 0.1 - 2
    out = norm(torch.cat([source, target]), torch.tensor([0] * 6 + [1] * 4))
    for rows, raw in ((out[:6], source), (out[6:], target)):
        torch.testing.assert_close(rows.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
        variance = raw.var(0, unbiased=False)
        torch.testing.assert_close(rows.pow(2).mean(0), variance / (variance + 1e-5))
    # Each corpus's running statistics (momentum 1: exactly this batch's moments, unbiased variance).
    torch.testing.assert_close(norm.running_mean, torch.stack([source.mean(0), target.mean(0)]))
    torch.testing.assert_close(norm.running_var, torch.stack([source.var(0), target.var(0)]))
    norm.eval()
    # Inference (no corpus ids) uses the target's statistics; with ids, each row its own corpus's.
    torch.testing.assert_close(norm(target), (target - target.mean(0)) / torch.sqrt(target.var(0) + 1e-5))
    torch.testing.assert_close(norm(source, torch.zeros(6, dtype=torch.long)),
                               (source - source.mean(0)) / torch.sqrt(source.var(0) + 1e-5))


def test_corpus_normalization_defaults_follow_the_method():
    assert tiny_config(adaptation_method="emodna").uses_corpus_normalization
    assert not tiny_config(adaptation_method="dann").uses_corpus_normalization
    assert tiny_config(adaptation_method="source_only", corpus_normalization=True).uses_corpus_normalization
    assert _model(adaptation_method="mmd").corpus_normalization is None
    model = _model(adaptation_method="emodna").train()
    model(torch.randn(4, 8000), corpus_ids=torch.tensor([0, 0, 1, 1]))
    assert not torch.equal(model.corpus_normalization.running_mean, torch.zeros_like(model.corpus_normalization.running_mean))


def test_source_standardisation_uses_the_source_rows_for_every_row():
    from emodna_hf.modeling.modeling_emodna import CorpusNormalization

    norm = CorpusNormalization(3, target_corpus_id=1, momentum=1.0, per_corpus=False).train()
    source = torch.randn(6, 3) * 5 + 10
    target = torch.randn(4, 3) * 0.1 - 2
    out = norm(torch.cat([source, target]), torch.tensor([0] * 6 + [1] * 4))
    scale = torch.sqrt(source.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(out, (torch.cat([source, target]) - source.mean(0)) / scale)
    torch.testing.assert_close(norm.running_mean[0], source.mean(0))  # tracked from the source rows
    torch.testing.assert_close(norm.running_var[0], source.var(0))
    norm.eval()  # source statistics for every row, with or without corpus ids
    torch.testing.assert_close(norm(target, torch.ones(4, dtype=torch.long)), norm(target))
    torch.testing.assert_close(norm(target), (target - source.mean(0)) / torch.sqrt(source.var(0) + 1e-5))
    # opensmile baselines standardise with the source; Emo-DNA per corpus; tcn baselines not at all
    assert tiny_config("opensmile", adaptation_method="dann").feature_standardization == "source"
    assert tiny_config("opensmile").feature_standardization == "corpus"
    assert tiny_config("tcn", adaptation_method="dann").feature_standardization is None
    assert not _model("opensmile", adaptation_method="source_only").corpus_normalization.per_corpus


def test_corpus_normalization_runs_under_bf16_autocast():
    from emodna_hf.modeling.modeling_emodna import CorpusNormalization

    norm = CorpusNormalization(4, target_corpus_id=1).train()
    features = torch.randn(6, 4, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = norm(features, torch.tensor([0, 0, 0, 1, 1, 1]))
    assert out.dtype == torch.bfloat16 and norm.running_mean.dtype == torch.float32
    assert not torch.equal(norm.running_mean, torch.zeros(2, 4))


def test_opensmile_front_end_zero_fills_too_short_input_with_a_warning(caplog):
    model = _model("opensmile")
    with caplog.at_level("WARNING"):
        features, _ = model.backbone.front_end(torch.randn(2, 4000) * 0.05, torch.tensor([[1] * 4000, [1] * 800 + [0] * 3200]))
    assert torch.isfinite(features).all() and features[1].abs().sum() == 0 and features[0].abs().sum() > 0
    assert "1 of 2 utterances are too short" in caplog.text


@pytest.mark.parametrize("backbone_type", ["tcn", "opensmile"])
def test_inference_refuses_what_it_cannot_classify(tmp_path, backbone_type):
    model = _model(backbone_type)
    ok = torch.randn(2, 4000)
    bad_inputs = {
        "NaN or infinite": ok.clone().index_put_((torch.tensor([1]), torch.tensor([7])), torch.tensor(float("nan"))),
        "too short to classify": torch.randn(1, 1000),
        "digital silence": torch.cat([ok[:1], torch.zeros(1, 4000)]),
    }
    for message, values in bad_inputs.items():
        with pytest.raises(ValueError, match=message):
            model(values)
    mask = torch.ones(2, 4000, dtype=torch.long)
    mask[1, 1000:] = 0  # a valid row of 1000 samples in a padded batch is still too short
    with pytest.raises(ValueError, match="too short"):
        model(ok, attention_mask=mask)
    model(ok)  # fine
    model.train()(bad_inputs["digital silence"], corpus_ids=torch.tensor([0, 1]))  # training is not checked
    # ...and through pipeline(): the error reaches the caller instead of a confident label
    model.eval().save_pretrained(tmp_path)
    create_feature_extractor(model.config).save_pretrained(tmp_path)
    classifier = pipeline("audio-classification", model=str(tmp_path), trust_remote_code=True)
    with pytest.raises(ValueError, match="digital silence"):
        classifier(np.zeros(16000, dtype=np.float32))
    with pytest.raises(ValueError, match="NaN"):
        classifier(np.full(16000, np.nan, dtype=np.float32))


def test_layerdrop_is_off_under_the_weighted_layer_sum():
    """wav2vec2's default LayerDrop (0.1) returns fewer hidden states in training: the layer sum would crash."""
    model = _model("wav2vec2", backbone_config=dict(tiny_ssl_backbone_config("wav2vec2"), layerdrop=0.9)).train()
    assert model.config.backbone_config.layerdrop == 0.0
    for _ in range(3):
        model(torch.randn(2, 8000), corpus_ids=torch.tensor([0, 1]))


def test_feature_extractor_resamples_other_rates_with_soxr(tmp_path):
    import soxr

    extractor = create_feature_extractor(tiny_config("opensmile"))
    wave = tone(1.0, sampling_rate=8000)
    resampled = extractor(wave, sampling_rate=8000, return_tensors="np")["input_values"][0]
    np.testing.assert_allclose(resampled, soxr.resample(wave, 8000, 16000), atol=1e-6)
    batch = extractor([wave, wave[:4000]], sampling_rate=8000, padding=True, return_tensors="np")
    assert batch["input_values"].shape == (2, 16000) and batch["attention_mask"][1].sum() == 8000
    extractor.save_pretrained(tmp_path)  # travels as remote code, with auto_map
    assert (tmp_path / "feature_extraction_emodna.py").is_file()
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "EmoDnaFeatureExtractor" and loaded.do_normalize is False
