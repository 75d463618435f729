"""Resuming: `--resume_from_checkpoint true` (the latest checkpoint of output_dir), cut-short checkpoint files named
before training, and Ctrl-C ending the recipe with one line."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from emodna_hf.checkpoints import check_checkpoint, resolve_checkpoint

REPO = Path(__file__).resolve().parents[1]
TINY = ["--source_load_kwargs", '{"synth-a": {"n_per_class_per_speaker": 1, "n_speakers": 6}}',
        "--target_load_kwargs", "n_per_class_per_speaker=1,n_speakers=5", "--max_duration_s", "0.8",
        "--per_device_train_batch_size", "4", "--backbone_type", "tcn", "--corpus_statistics", "batch",
        "--config_overrides", "tcn_hidden_size=16,tcn_num_blocks=2", "--max_projection_samples", "20",
        "--disable_tqdm", "true"]


def _checkpoint(folder: Path) -> Path:
    folder.mkdir(parents=True)
    save_file({"w": torch.ones(64)}, folder / "model.safetensors")
    torch.save({"step": 1}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 1}))
    return folder


def _truncate(path: Path) -> None:
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def test_true_names_the_latest_checkpoint_and_false_none(tmp_path):
    _checkpoint(tmp_path / "checkpoint-2")
    _checkpoint(tmp_path / "checkpoint-10")
    for value in ("true", "True", True):
        assert resolve_checkpoint(value, tmp_path) == str(tmp_path / "checkpoint-10")
    assert resolve_checkpoint(str(tmp_path / "checkpoint-2"), tmp_path) == str(tmp_path / "checkpoint-2")
    for value in (None, "false", "none", ""):
        assert resolve_checkpoint(value, tmp_path) is None
    with pytest.raises(ValueError, match="holds no checkpoint-\\* folder"):
        resolve_checkpoint("true", tmp_path / "empty")
    with pytest.raises(ValueError, match="is not a checkpoint folder"):
        resolve_checkpoint(str(tmp_path / "checkpoint-3"), tmp_path)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "trainer_state.json"])
def test_a_cut_short_checkpoint_file_is_named(tmp_path, name):
    folder = _checkpoint(tmp_path / "checkpoint-5")
    check_checkpoint(folder)
    _truncate(folder / name)
    with pytest.raises(ValueError, match=f"Checkpoint .*checkpoint-5: {name} is unreadable"):
        resolve_checkpoint("true", tmp_path)


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), EMODNA_HF_CACHE=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1")
    return env


def _train(tmp_path, *args, timeout=600):
    return subprocess.run([sys.executable, str(REPO / "recipes" / "train.py"), *TINY, *args], cwd=tmp_path,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_the_recipe_resumes_from_the_latest_checkpoint_and_names_a_cut_short_one(tmp_path):
    output = tmp_path / "out"
    first = _train(tmp_path, "--output_dir", str(output), "--max_steps", "4", "--save_strategy", "steps",
                   "--save_steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = _train(tmp_path, "--output_dir", str(output), "--max_steps", "6", "--overwrite_output_dir", "true",
                     "--resume_from_checkpoint", "true", "--save_strategy", "no")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 6 and json.loads((output / "metrics.json").read_text())["train"]["steps"] == 6
    _truncate(output / "checkpoint-4" / "model.safetensors")
    broken = _train(tmp_path, "--output_dir", str(output), "--max_steps", "6", "--overwrite_output_dir", "true",
                    "--resume_from_checkpoint", "true")
    assert broken.returncode != 0 and "Traceback" not in broken.stderr
    assert "checkpoint-4: model.safetensors is unreadable" in broken.stderr


@pytest.mark.slow
def test_ctrl_c_ends_the_recipe_with_one_line(tmp_path):
    # Output to files, not pipes: waiting on the process itself (not on pipe EOF, which a short-lived helper
    # process holding the pipes can delay) and no pipe filling up while the test is not reading it.
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "recipes" / "train.py"), *TINY, "--output_dir", str(tmp_path / "out"),
             "--max_steps", "100000", "--logging_steps", "1"],
            cwd=tmp_path, env={**_env(tmp_path), "PYTHONUNBUFFERED": "1"}, stdout=stdout, stderr=stderr_file)
    try:
        deadline = time.monotonic() + 300
        while "'loss'" not in out.read_text() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # interrupt once training has started
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    stderr = err.read_text()
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr and "interrupted (Ctrl-C)" in stderr
    assert "--resume_from_checkpoint true" in stderr.strip().splitlines()[-1]
