import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import LABELS, tiny_config

from emodna_hf import EmoDnaForAudioClassification, create_feature_extractor

CHECK_SCRIPT = Path(__file__).with_name("remote_code_check.py")


def run_remote_code_check(model_dir: Path, waveforms: np.ndarray, workdir: Path) -> dict:
    """Load `model_dir` by remote code in a fresh process that cannot import emodna_hf; return its JSON report."""
    np.save(workdir / "input.npy", waveforms)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(workdir / "hf_home"))
    completed = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), str(model_dir), str(workdir / "input.npy")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("backbone_type", ["tcn", "opensmile", "hubert"])
def test_remote_code_load_without_emodna_hf(tmp_path, backbone_type):
    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config(backbone_type)).eval()
    # Move the folder after saving: nothing may point back at the repository.
    model.save_pretrained(tmp_path / "saved")
    create_feature_extractor(model.config).save_pretrained(tmp_path / "saved")
    (tmp_path / "saved").rename(tmp_path / "elsewhere")
    waveforms = np.random.default_rng(0).standard_normal((2, 9000)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(waveforms)).logits.numpy()

    report = run_remote_code_check(tmp_path / "elsewhere", waveforms, tmp_path)

    for key in ("audio_classification", "auto_model"):
        assert report[key]["class"] == "EmoDnaForAudioClassification"
        assert report[key]["module"].startswith("transformers_modules"), report[key]["module"]
        np.testing.assert_allclose(np.array(report[key]["logits"]), expected, rtol=1e-5, atol=1e-6)
    assert sorted(s["label"] for s in report["pipeline"]) == sorted(LABELS)
