#!/usr/bin/env python
"""Train a cross-corpus speech emotion recognition model with unsupervised domain adaptation (Emo-DNA).

    python recipes/train.py                                   # the default scenario (recipes/configs/default.yaml)
    accelerate launch recipes/train.py --config recipes/configs/emodb_to_enterface.yaml
    python recipes/train.py --adaptation_method dann --num_train_epochs 2 --output_dir outputs/dann

Arguments are the fields of `emodna_hf.arguments.ModelArguments`, `DataArguments` and
`emodna_hf.trainer.EmoDnaTrainingArguments` (a transformers `TrainingArguments`): `--help` lists them. Values come
from the config file (default: recipes/configs/default.yaml) and the command line overrides them.

The run writes its output folder (model with remote code and feature extractor, README.md model card,
metrics.json, confusion_matrix.png, embeddings.png, TensorBoard logs under runs/ when tensorboard is installed)
and prints the target and source results. `--push_to_hub --hub_model_id you/name` uploads the whole folder.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


def main(argv: list[str] | None = None) -> dict:
    import datasets
    import transformers

    from emodna_hf.data import AudioDecodeError
    from emodna_hf.experiment import (
        check_output_dir,
        choose_torch_threads,
        command_line,
        format_summary,
        parse_args,
        run_experiment,
    )
    from emodna_hf.hub import HubPushError

    try:
        model_args, data_args, training_args, config_file = parse_args(argv, default_config=DEFAULT_CONFIG)
        check_output_dir(Path(training_args.output_dir), training_args.overwrite_output_dir)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")

    log_level = training_args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.WARNING, stream=sys.stdout)
    logging.getLogger("emodna_hf").setLevel(logging.INFO if training_args.should_log else log_level)
    transformers.utils.logging.set_verbosity(log_level)
    datasets.utils.logging.set_verbosity(max(log_level, logging.WARNING))

    choose_torch_threads(model_args)
    launcher = "accelerate launch" if "ACCELERATE_MIXED_PRECISION" in os.environ or "LOCAL_RANK" in os.environ \
        else "python"
    try:
        record = run_experiment(
            model_args, data_args, training_args,
            command=command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)], launcher=launcher),
            config_file=str(config_file) if config_file else None,
        )
    except HubPushError as error:
        sys.exit(f"error: {error}")
    except (ValueError, FileNotFoundError, AudioDecodeError) as error:
        # Data, labels and configuration errors name their culprit: one line, unless a traceback is asked for.
        if os.environ.get("EMODNA_TRACEBACK"):
            raise
        sys.exit(f"error: {error}\n(set EMODNA_TRACEBACK=1 to see where it was raised)")
    finally:
        _end_process_group()
    if training_args.should_log:
        print(format_summary(record), flush=True)
    return record


def _end_process_group() -> None:
    """Several processes: shut gloo/NCCL down cleanly (leaving its threads to the interpreter's exit can abort)."""
    import torch

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # One line, no traceback; 130 is the shell's code for a process ended by Ctrl-C (SIGINT).
        print("\ninterrupted (Ctrl-C). A run that saved checkpoints (--save_strategy steps or epoch) continues with "
              "--resume_from_checkpoint true.", file=sys.stderr, flush=True)
        sys.exit(130)
