"""How `EmoDnaTrainer` trains the parts an adaptation method owns (`trainer.objective`: discriminators, Emo-DNA's
corpus branch, pseudo-label state) with the model: in the optimizer, their gradients averaged across processes,
clipped and cleared with the model's, and their whole state in every checkpoint. They are never saved with the
model (`save_pretrained` writes the inference path only). See docs/method.md §6.2b.
"""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

# The method's training state in a checkpoint: its parameters and buffers (pseudo-label thresholds); the optimizer
# state of its parameters is in optimizer.pt with the model's.
OBJECTIVE_STATE = "objective.safetensors"
# What checkpoints written before the methods owned their parts held instead (pseudo-label buffers only).
LEGACY_PSEUDO_LABELER_STATE = "pseudo_labeler.safetensors"


class ZeroObjectiveGradients(TrainerCallback):
    """Clears the objective's gradients after every optimizer step, as `Trainer` clears the model's."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        self.trainer.objective.zero_grad(set_to_none=True)


class ObjectivePartsMixin:
    """Mixed into `EmoDnaTrainer` (before `Trainer`); reads `self.objective`."""

    # --- the method's own parameters: optimised, synchronised and clipped with the model's ------------------------

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """`Trainer.create_optimizer`, plus the objective's trainable parameters in two more groups (weight decay
        as the model's: none on biases and normalisation weights)."""
        given = self.optimizer is not None
        optimizer = super().create_optimizer(model)
        params = [(n, p) for n, p in self.objective.named_parameters() if p.requires_grad]
        optimised = {id(q) for group in optimizer.param_groups for q in group["params"]}
        if given:
            if any(id(p) not in optimised for _, p in params):
                raise ValueError(f"The optimizer passed to EmoDnaTrainer lacks the parameters of the "
                                 f"{self.objective.name!r} method's own parts (trainer.objective); leave the "
                                 "optimizer to the trainer, or include them.")
            return optimizer
        decay = set(self.get_decay_parameter_names(self.objective))
        for in_decay, weight_decay in ((True, self.args.weight_decay), (False, 0.0)):
            group = [p for n, p in params if (n in decay) == in_decay]
            if group:
                optimizer.add_param_group({"params": group, "weight_decay": weight_decay})
        return optimizer

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> torch.Tensor:
        """`Trainer.training_step`, then, at each optimisation step of a multi-process run, the objective's
        gradients averaged across processes as DDP averages the model's (its parts are outside the DDP-wrapped
        model, so DDP does not see them; without gradient accumulation, one all-reduce per step)."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.num_processes > 1 and self.accelerator.sync_gradients:
            grads = [p.grad for p in self.objective.parameters() if p.grad is not None]
            if grads:
                flat = torch.cat([g.reshape(-1) for g in grads])
                torch.distributed.all_reduce(flat)
                flat /= self.accelerator.num_processes
                for grad, synced in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
                    grad.copy_(synced.view_as(grad))
        return loss

    def _with_objective(self, model: nn.Module) -> SimpleNamespace:
        """`model` and the objective as one set of parameters, for the gradient norm and its clipping."""
        return SimpleNamespace(parameters=lambda: [*model.parameters(), *self.objective.parameters()])

    def _clip_grad_norm(self, model):
        return super()._clip_grad_norm(self._with_objective(model))

    def _get_grad_norm(self, model, grad_norm=None):
        return super()._get_grad_norm(self._with_objective(model), grad_norm=grad_norm)

    # --- checkpoints: the method's parts and pseudo-label thresholds are training state -----------------------------

    def _save_checkpoint(self, model: nn.Module, trial=None) -> None:
        super()._save_checkpoint(model, trial)
        state = self.objective.state_dict()
        if self.args.should_save and state:
            checkpoint = os.path.join(
                self._get_output_dir(trial=trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            )
            save_file({k: v.detach().cpu().contiguous() for k, v in state.items()},
                      os.path.join(checkpoint, OBJECTIVE_STATE))

    def _load_objective_state(self, checkpoint: str) -> None:
        if not self.objective.state_dict():
            return
        path = os.path.join(checkpoint, OBJECTIVE_STATE)
        if not os.path.isfile(path):
            legacy = os.path.isfile(os.path.join(checkpoint, LEGACY_PSEUDO_LABELER_STATE))
            raise FileNotFoundError(
                f"{path} is missing: " + (
                    "the checkpoint was written before the adaptation methods owned their parts (they were in "
                    "the model then), so its optimizer state does not fit this trainer; start the run again."
                    if legacy else "the checkpoint was not written by EmoDnaTrainer, so the method's parts and "
                    "pseudo-label thresholds cannot be restored."))
        self.objective.load_state_dict(load_file(path, device=str(self.args.device)))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_objective_state(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        """`load_best_model_at_end`: the method's parts of the best checkpoint too (the reports' corpus
        embeddings)."""
        super()._load_best_model()
        if self.state.best_model_checkpoint and os.path.isdir(self.state.best_model_checkpoint):
            self._load_objective_state(self.state.best_model_checkpoint)
