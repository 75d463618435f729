"""Test-session settings."""

import os

import huggingface_hub.constants  # the submodule itself: the package attribute is lazy
import pytest
import torch

# The test models are tiny: one intra-op thread is as fast, and several processes (the suite, its subprocesses,
# anything else on a 2-core machine) then do not oversubscribe the cores, where OpenMP spin-waiting makes
# small tensor ops 10-20x slower.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _hub_mode_from_the_test_not_the_environment(monkeypatch):
    """Tests that need offline mode set it themselves; an ambient HF_HUB_OFFLINE must not change other outcomes.

    Nothing reaches the Hub either way: uploads are mocked and models are built locally.
    """
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    # huggingface_hub reads the variable once, at import.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
