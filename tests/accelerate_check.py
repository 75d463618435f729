"""Train the tiny model on toy corpora and save the final weights; run under `accelerate launch` or plain python.

Usage: accelerate_check.py OUTPUT_DIR GRADIENT_ACCUMULATION_STEPS METHOD [stream]

With `stream`, the target is an `IterableDataset` of 2 shards (each process reads its own).
"""

import os
import sys

import torch
from factories import tiny_config, toy_corpus
from safetensors.torch import save_file

from emodna_hf import EmoDnaForAudioClassification
from emodna_hf.trainer import EmoDnaTrainer, EmoDnaTrainingArguments

output_dir, accumulation, method = sys.argv[1], int(sys.argv[2]), sys.argv[3]
streamed = sys.argv[4:] == ["stream"]
torch.manual_seed(0)
# No dropout: processes draw different dropout masks than one process would, which is noise, not a bug.
config = tiny_config(adaptation_method=method, encoder_dropout=0.0, tcn_dropout=0.0, pseudo_label_warmup=0.0,
                     adaptive_threshold=False, fixed_threshold=0.3)
model = EmoDnaForAudioClassification(config)
args = EmoDnaTrainingArguments(
    output_dir=output_dir, per_device_train_batch_size=4, gradient_accumulation_steps=accumulation, max_steps=4,
    learning_rate=3e-3, logging_steps=1, report_to="none", use_cpu=True, save_strategy="no", seed=0,
    disable_tqdm=True,
)
target = toy_corpus(1, 16, 35.0, seed=2, with_labels=False)
trainer = EmoDnaTrainer(model=model, args=args, train_dataset=toy_corpus(0, 24, 0.0, seed=1),
                        target_dataset=target.to_iterable_dataset(num_shards=2) if streamed else target)
trainer.train()
if trainer.accelerator.is_main_process:
    save_file({k: v.contiguous() for k, v in trainer.model.state_dict().items()}, f"{output_dir}/final.safetensors")
    # The method's own parts (discriminator, corpus branch), trained outside the DDP-wrapped model.
    save_file({k: v.contiguous() for k, v in trainer.objective.state_dict().items()},
              f"{output_dir}/objective.safetensors")
    print("WORLD_SIZE", trainer.accelerator.num_processes, "LOSSES",
          [round(r["loss"], 5) for r in trainer.state.log_history if "loss" in r])
# A clean process-group shutdown: leaving gloo's threads to the interpreter's exit sometimes aborted the process
# ("terminate called without an active exception") after the work was done.
trainer.accelerator.wait_for_everyone()
if torch.distributed.is_available() and torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
# Then leave without the interpreter's teardown: a thread of the streamed target's reader or of gloo that is still
# joinable when C++ destructors run aborts the process ("terminate called without an active exception", rank 1,
# about one run in five in CI) after everything above was written. The results are checked from the output.
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)
