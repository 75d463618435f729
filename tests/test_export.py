"""Deployment: ONNX export checked with onnxruntime, torch.export programs (every backbone, tiny configs)."""

import json

import numpy as np
import pytest
import torch
from factories import SSL_TYPES, tiny_config

from emodna_hf import EmoDnaForAudioClassification, create_feature_extractor
from emodna_hf.export import (
    OnnxAudioClassifier,
    check_onnx,
    export_onnx,
    export_program,
    onnx_inputs,
    padded_batch,
)

pytest.importorskip("onnxruntime")
ALL_BACKBONES = ["tcn", "opensmile", *SSL_TYPES]
# Lengths the graphs were not traced with: a padded batch, and one utterance alone (batch axis of size 1).
PADDED = [20800, 7000, 12345]
ALONE = [9001]


def _model(backbone_type):
    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config(backbone_type)).eval()
    if backbone_type == "opensmile":
        # Running statistics of real functionals: standardised inputs give logits of a trained model's scale
        # (with the initial zero mean and unit variance, raw functionals of ~100 give logits of ~100).
        functionals, _ = model.compute_cacheable_features(*padded_batch([16000, 12000, 9000, 14000], seed=5))
        model.corpus_normalization.running_mean[:] = functionals[:, 0].mean(0)
        model.corpus_normalization.running_var[:] = functionals[:, 0].var(0) + 1e-3
    return model


def _torch_logits(model, input_values, attention_mask):
    with torch.no_grad():
        return model(input_values=input_values, attention_mask=attention_mask).logits.float().numpy()


@pytest.mark.slow  # 2-15 s per backbone: the ONNX exporter
@pytest.mark.parametrize("backbone_type", ALL_BACKBONES)
def test_onnx_export_matches_pytorch_on_padded_batches(tmp_path, backbone_type):
    import onnxruntime

    model = _model(backbone_type)
    result = export_onnx(model, tmp_path / "model.onnx")
    assert result.max_abs_difference is not None and result.max_abs_difference < 1e-4
    session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    for lengths in (PADDED, ALONE):
        input_values, attention_mask = padded_batch(lengths, seed=7)
        onnx_logits = session.run(["logits"], onnx_inputs(model, input_values, attention_mask))[0]
        expected = _torch_logits(model, input_values, attention_mask)
        assert onnx_logits.shape == expected.shape
        np.testing.assert_allclose(onnx_logits, expected, rtol=1e-4, atol=1e-4)
    metadata = session.get_modelmeta().custom_metadata_map
    assert metadata["emodna.backbone_type"] == backbone_type
    assert json.loads(metadata["emodna.id2label"])["0"] == model.config.id2label[0]
    expected_inputs = ["input_features"] if backbone_type == "opensmile" else ["input_values", "attention_mask"]
    assert [i.name for i in session.get_inputs()] == expected_inputs == result.input_names
    # Dynamic axes: symbolic batch (and length) dimensions, not the traced sizes; 88 functionals are fixed.
    for graph_input in session.get_inputs():
        dynamic = graph_input.shape if graph_input.name != "input_features" else graph_input.shape[:1]
        assert all(isinstance(dim, str) for dim in dynamic), graph_input
    if backbone_type == "opensmile":
        assert session.get_inputs()[0].shape[1] == 88


@pytest.mark.parametrize("backbone_type", ALL_BACKBONES)
def test_torch_export_program_matches_eager(backbone_type):
    model = _model(backbone_type)
    program = export_program(model).module()
    # WavLM calls F.multi_head_attention_forward, whose trace keeps a runtime assertion batch != 1.
    cases = (PADDED,) if backbone_type == "wavlm" else (PADDED, ALONE)
    for lengths in cases:
        input_values, attention_mask = padded_batch(lengths, seed=3)
        inputs = {k: torch.from_numpy(v) for k, v in onnx_inputs(model, input_values, attention_mask).items()}
        with torch.no_grad():
            torch.testing.assert_close(program(**inputs).float().numpy(), _torch_logits(model, input_values, attention_mask))


def _load_recipe(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "recipes" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("backbone_type", ["tcn", "opensmile"])
def test_recipe_writes_model_onnx_next_to_the_checkpoint_and_it_is_uploaded(tmp_path, capsys, backbone_type):
    from transformers import pipeline

    from emodna_hf.hub import files_to_upload

    model = _model(backbone_type)
    folder = tmp_path / "run"
    model.save_pretrained(folder)
    create_feature_extractor(model.config).save_pretrained(folder)
    _load_recipe("export_onnx").main([str(folder)])
    assert "model.onnx" in capsys.readouterr().out and (folder / "model.onnx").is_file()
    assert "model.onnx" in files_to_upload(folder)

    # onnxruntime + the saved feature extractor on a padded batch give the pipeline's scores of each utterance.
    rng = np.random.default_rng(0)
    waves = [padded_batch([n], seed=i)[0][0].numpy() + 0.01 * rng.standard_normal(n).astype(np.float32)
             for i, n in enumerate([16000, 9000])]
    onnx_logits = OnnxAudioClassifier(folder)(waves, sampling_rate=16000)
    classifier = pipeline("audio-classification", model=str(folder))
    for wave, logits in zip(waves, onnx_logits, strict=True):
        scores = {s["label"]: s["score"] for s in classifier(wave, top_k=None)}
        expected = np.array([scores[model.config.id2label[i]] for i in range(len(scores))])
        np.testing.assert_allclose(np.exp(logits) / np.exp(logits).sum(), expected, atol=1e-4)


def test_check_onnx_sees_a_wrong_graph(tmp_path):
    """The onnxruntime comparison could fail: a graph exported from other weights is off by far more than 1e-4."""
    result = export_onnx(_model("opensmile"), tmp_path / "model.onnx")
    other = _model("opensmile")
    with torch.no_grad():
        other.classifier[-1].bias += 1.0
    assert result.max_abs_difference < 1e-4 and check_onnx(other, result.path) == pytest.approx(1.0, abs=1e-3)
