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
    classifier = pipeline("audio-classification", model=str(folder), trust_remote_code=True)
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


@pytest.mark.slow
def test_the_issue_table_rerun_in_a_process_without_emodna_hf(tmp_path):
    """Remote code only: dtype=bfloat16/float16 at load, torch.onnx.export and torch.export.export of the model
    as a user loads it (issue 14's table), for the light backbones and one SSL encoder."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    waveforms = padded_batch([12000, 12000], seed=4)[0].numpy()
    np.save(tmp_path / "input.npy", waveforms)
    folders = []
    for backbone_type in ("tcn", "opensmile", "wav2vec2"):
        folder = tmp_path / backbone_type
        _model(backbone_type).save_pretrained(folder)
        folders.append(str(folder))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("deploy_check.py")), str(tmp_path / "input.npy"), *folders],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    reports = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 3
    for report in reports:
        assert report["module"].startswith("transformers_modules"), report["module"]
        reference = np.array(report["float32"])
        scale = max(1.0, np.abs(reference).max())
        assert np.abs(np.array(report["bfloat16"]) - reference).max() <= 1e-2 * scale
        assert np.abs(np.array(report["float16"]) - reference).max() <= 2e-3 * scale
        np.testing.assert_allclose(report["torch_export"], reference, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(report["onnx"], reference, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_inference_benchmark_smoke(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import inference

    record = inference.main(["--quick", "--backbones", "opensmile", "--output", str(tmp_path), "--name", "x"])
    variants = record["results"]["opensmile"]["variants"]
    assert {"torch_fp32", "onnxruntime"} <= set(variants) and variants["torch_fp32"]["throughput_ratio"] == 1.0
    assert all(v["throughput_ratio"] > 0 for v in variants.values())
    assert json.loads((tmp_path / "x.json").read_text())["results"]["opensmile"]["facts"]["batch"] == 2
    assert "| opensmile | onnxruntime |" in (tmp_path / "x.md").read_text()
