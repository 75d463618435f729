"""Test-session settings."""

import os

import torch

# The test models are tiny: one intra-op thread is as fast, and several processes (the suite, its subprocesses,
# anything else on a 2-core machine) then do not oversubscribe the cores, where OpenMP spin-waiting makes
# small tensor ops 10-20x slower.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")
