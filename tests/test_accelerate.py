"""A 2-process CPU (gloo) `accelerate launch` run equals one process with the same global batch (GA = 2).

accelerate 1.x starts several CPU processes on one machine through torchrun (`--multi_gpu`, with the script's
`use_cpu=True` selecting gloo); `--cpu --num_processes 2` would start a single process (its simple launcher).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).with_name("accelerate_check.py")
LAUNCH_TWO = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]


def _moved(weights: dict[str, torch.Tensor], method: str) -> float:
    """The largest change of any weight from the untrained model that accelerate_check.py starts from."""
    from factories import tiny_config  # noqa: PLC0415

    from emodna_hf import EmoDnaForAudioClassification  # noqa: PLC0415

    torch.manual_seed(0)
    untrained = EmoDnaForAudioClassification(tiny_config(adaptation_method=method)).state_dict()
    return max(float((weights[k] - untrained[k]).abs().max()) for k in weights if k in untrained)


def _run(command: list[str], cwd: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(SCRIPT.parent), OMP_NUM_THREADS="1")
    completed = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    return completed.stdout


@pytest.mark.slow
@pytest.mark.parametrize("method", ["emodna", "dann"])
def test_two_processes_match_one_process_with_accumulation(tmp_path, method):
    two = _run([*LAUNCH_TWO, str(SCRIPT), str(tmp_path / "two"), "1", method], tmp_path)
    one = _run([sys.executable, str(SCRIPT), str(tmp_path / "one"), "2", method], tmp_path)
    assert "WORLD_SIZE 2" in two and "WORLD_SIZE 1" in one
    distributed, single = load_file(tmp_path / "two" / "final.safetensors"), load_file(tmp_path / "one" / "final.safetensors")
    for name, tensor in single.items():
        if name.startswith("corpus_normalization.running_"):
            # EMA buffers: one update per micro-batch with GA, one per step (rank 0's, broadcast) with DDP.
            assert torch.isfinite(distributed[name]).all()
            continue
        torch.testing.assert_close(distributed[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    assert _moved(single, method) > 1e-3  # training moved the weights (a run that did nothing would also "match")
    # The method's parts (outside the DDP-wrapped model: the trainer averages their gradients itself) match too.
    distributed = load_file(tmp_path / "two" / "objective.safetensors")
    single = load_file(tmp_path / "one" / "objective.safetensors")
    assert any(k.endswith("discriminator.net.0.weight") for k in single)
    for name, tensor in single.items():
        if name.startswith("pseudo_labeler."):
            # EMA state, updated once per forward pass (per micro-batch with GA), as the running statistics above.
            assert torch.isfinite(distributed[name]).all()
            continue
        torch.testing.assert_close(distributed[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_a_streamed_target_trains_in_two_processes(tmp_path):
    """Each process reads its own shard of the streamed target (`for_process`); accelerate does not dispatch."""
    output = _run([*LAUNCH_TWO, str(SCRIPT), str(tmp_path / "two"), "1", "emodna", "stream"], tmp_path)
    assert "WORLD_SIZE 2" in output
    losses = [float(x) for x in output.split("LOSSES")[1].strip().strip("[]").split(",")]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert _moved(load_file(tmp_path / "two" / "final.safetensors"), "emodna") > 1e-3


def _readme_launch_command() -> list[str]:
    """The multi-process command of the README's "Several processes" section, word for word."""
    readme = (SCRIPT.parents[1] / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("accelerate launch --multi_gpu"))
    words = line.split()
    return [str(Path(sys.executable).with_name("accelerate")), *words[1:]]


@pytest.mark.slow
def test_the_readme_multi_process_command_trains_once_in_parallel_on_a_cpu_machine(tmp_path):
    """Without use_cpu in the arguments (the recipe's case), two processes on a machine without GPUs must share one
    training (gloo DDP), not run it twice: one output folder, one summary, each process a half of every epoch."""
    import json  # noqa: PLC0415

    output = tmp_path / "out"
    tiny = ["--source_load_kwargs", '{"synth-a": {"n_per_class_per_speaker": 1, "n_speakers": 6}}',
            "--target_load_kwargs", "n_per_class_per_speaker=1,n_speakers=5", "--max_duration_s", "0.8",
            "--num_train_epochs", "2", "--per_device_train_batch_size", "4", "--max_projection_samples", "40",
            "--disable_tqdm", "true", "--output_dir", str(output)]
    command = _readme_launch_command()
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"),
               EMODNA_HF_CACHE=str(tmp_path / "cache"), CUDA_VISIBLE_DEVICES="")
    completed = subprocess.run([*command, *tiny], cwd=SCRIPT.parents[1], env=env, capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-4000:]
    assert completed.stdout.count("wall time") == 1, completed.stdout  # one summary, from the main process
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["train"]["processes"] == 2
    # Steps per epoch: the batches of the longer corpus (source train or target), split between two processes.
    rows = max(metrics["data"]["split"]["synth-a"]["n_train"], metrics["target"]["n"])
    batches = -(-rows // 4)
    assert metrics["train"]["steps"] == 2 * -(-batches // 2) < 2 * batches
    assert (output / "model.safetensors").is_file()
