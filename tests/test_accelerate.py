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


@pytest.mark.slow
def test_a_streamed_target_trains_in_two_processes(tmp_path):
    """Each process reads its own shard of the streamed target (`for_process`); accelerate does not dispatch."""
    output = _run([*LAUNCH_TWO, str(SCRIPT), str(tmp_path / "two"), "1", "emodna", "stream"], tmp_path)
    assert "WORLD_SIZE 2" in output
    losses = [float(x) for x in output.split("LOSSES")[1].strip().strip("[]").split(",")]
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    assert _moved(load_file(tmp_path / "two" / "final.safetensors"), "emodna") > 1e-3
