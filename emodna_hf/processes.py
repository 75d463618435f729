"""The processes of a run: how many, on which devices, with how many threads each.

`launched_without_accelerator` and `check_gpus_per_process` decide, in `EmoDnaTrainingArguments`, what several
launched processes (torchrun / `accelerate launch --multi_gpu`) do on a machine without GPUs (one data-parallel
training on the CPU) or with fewer GPUs than processes (a one-line refusal). `choose_torch_threads` gives the small
front ends one intra-op thread (what the recipes call).
"""

from __future__ import annotations

import logging
import os

import torch

from .arguments import _CONFIG_DEFAULTS, ModelArguments
from .modeling.backbones_emodna import BACKBONES

logger = logging.getLogger(__name__)


def launched_without_accelerator() -> bool:
    """Whether this process is one of several started by a launcher (WORLD_SIZE > 1) on a machine without a GPU
    or other torch accelerator."""
    try:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return False
    return world_size > 1 and not torch.accelerator.is_available()


def check_gpus_per_process(use_cpu: bool) -> None:
    """Several processes on one machine need a GPU each (NCCL refuses two processes on one GPU): a one-line refusal
    that says what to change, instead of an invalid-device error from inside the process group."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    if use_cpu or local <= 1 or not torch.cuda.is_available() or torch.cuda.device_count() >= local:
        return
    raise ValueError(
        f"{local} processes were launched on this machine but it has {torch.cuda.device_count()} GPU(s): launch "
        f"--num_processes {torch.cuda.device_count()}, or train on the CPU with --use_cpu true."
    )


# Front ends whose models are small enough that one intra-op thread is as fast as several on an idle machine and
# much faster on a busy one (docs/benchmarks.md, "Threads"): OpenMP workers spin-wait for cores that other
# processes hold, which costs far more than the parallelism gains on tensors this small.
SMALL_BACKBONES = tuple(name for name, declared in BACKBONES.items() if declared.small)


def choose_torch_threads(*model_args: ModelArguments) -> int | None:
    """Use one torch intra-op thread when every run's model is small (a `SMALL_BACKBONES` front end, no SSL
    checkpoint) and the user chose no thread count (`OMP_NUM_THREADS`); returns the count set, or None when the
    count was left as it was."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    backbones = {args.config_kwargs().get("backbone_type", _CONFIG_DEFAULTS["backbone_type"]) for args in model_args}
    if any(args.backbone_name_or_path for args in model_args) or not backbones <= set(SMALL_BACKBONES):
        return None
    torch.set_num_threads(1)
    logger.info("One torch thread for the small %s model (set OMP_NUM_THREADS to choose another count).",
                "/".join(sorted(backbones)))
    return 1
