"""Source-free adaptation inside 🤗 `Trainer`: target-only batches for the methods whose objective declares
`batches = "target"` (SHOT, TENT), on any audio classifier with a `classifier` head.

Two kinds of model go through the same code:

* our `EmoDnaForAudioClassification` (classifier = `model.classifier`, a ReLU → dropout → linear head);
* a plain transformers `Wav2Vec2ForSequenceClassification` / `HubertForSequenceClassification` (and the other
  `*ForSequenceClassification` audio models: projector → mean pooling → `model.classifier`, a linear layer).

The objective's `emotion_embeddings` are the features that the **final classifier layer** (the last `nn.Linear` of
`model.classifier`) reads. They are taken by a forward hook on that layer (`ClassifierInputs`), so that a plain
transformers model, whose forward returns only logits, needs no change and stays a transformers model; the same
hook serves our model. Settings live in `SourceFreeTrainingArguments`, not in the model config, so that they work
for a model whose config is a `Wav2Vec2Config`.
"""

from __future__ import annotations

import inspect
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .data.collator import UDADataCollator
from .objectives import ObjectiveBatch, objective_class
from .trainer import training_columns

OBJECTIVE_STATE = "source_free_objective.safetensors"
SOURCE_FREE_METHODS = ("shot", "tent", "adabn")
# Batch keys that are never model inputs here: the target's labels are -100 anyway, corpus ids mean nothing to a
# plain transformers model (our model standardises a batch without ids with target statistics).
_NOT_MODEL_INPUTS = ("labels", "corpus_ids", "row_index")


@dataclass
class SourceFreeTrainingArguments(TrainingArguments):
    """`TrainingArguments` of `recipes/adapt.py`: the method and its settings, and the usual training flags
    (`max_steps`, `learning_rate`, `per_device_train_batch_size`, `seed`, ...). Every batch holds target rows only.
    """

    adaptation_method: str = field(
        default="shot",
        metadata={"help": "Source-free method: 'shot' (frozen classifier, information maximisation + "
                  "pseudo-labels), 'tent' (entropy minimisation of normalisation scales/shifts) or 'adabn' "
                  "(re-estimated normalisation statistics; no training steps)."},
    )
    shot_pseudo_label_weight: float = field(
        default=0.3, metadata={"help": "SHOT: weight β of the pseudo-label cross-entropy (paper: 0.3)."})
    shot_information_maximization_weight: float = field(
        default=1.0, metadata={"help": "SHOT: weight of the information-maximisation loss (paper: 1.0)."})
    shot_pseudo_label_interval: int = field(
        default=0,
        metadata={"help": "SHOT: recompute the pseudo-labels (k-means-style centroids over the whole target) every "
                  "this many optimisation steps; 0: once per epoch (they are also computed before the first step)."},
    )
    freeze_feature_encoder: bool = field(
        default=True,
        metadata={"help": "A transformers wav2vec 2.0-style model: keep its convolutional feature encoder frozen "
                  "(`model.freeze_feature_encoder()`, as transformers' audio-classification example fine-tunes; "
                  "ours follow their config's freeze_feature_encoder). TENT still adapts its normalisation layers."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Adapt into an output folder that already holds a model (replaced)."})
    remove_unused_columns: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.adaptation_method not in SOURCE_FREE_METHODS:
            raise ValueError(f"adaptation_method must be one of {', '.join(map(repr, SOURCE_FREE_METHODS))} for "
                             f"source-free adaptation, got {self.adaptation_method!r} (methods that need the source "
                             "corpus train with recipes/train.py).")
        if self.shot_pseudo_label_interval < 0:
            raise ValueError(f"shot_pseudo_label_interval must be >= 0, got {self.shot_pseudo_label_interval}")

    def objective_settings(self) -> dict[str, Any]:
        """The keyword arguments of the method's objective."""
        if self.adaptation_method == "shot":
            return {"pseudo_label_weight": self.shot_pseudo_label_weight,
                    "information_maximization_weight": self.shot_information_maximization_weight}
        return {}


@dataclass
class TargetBatch(ObjectiveBatch):
    """An `ObjectiveBatch` of target rows only, with each row's index in the target (`indices`, `(B,)`), which
    SHOT uses to look up the row's pseudo-label."""

    indices: Tensor | None = None


def classifier_head(model: nn.Module) -> nn.Module:
    """`model.classifier`: the source hypothesis that SHOT freezes (a clear error if the model has none)."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Module):
        raise ValueError(f"{type(model).__name__} has no `classifier` module: source-free adaptation needs the "
                         "classifier head of an audio-classification model (e.g. Wav2Vec2ForSequenceClassification).")
    return head


def final_linear(head: nn.Module) -> nn.Linear:
    """The last `nn.Linear` of a classifier head (the head itself when it is one)."""
    layers = [head] if isinstance(head, nn.Linear) else [m for m in head.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise ValueError(f"The classifier head {type(head).__name__} has no linear layer whose input features "
                         "could be read.")
    return layers[-1]


class ClassifierInputs:
    """A forward hook on the final classifier layer that keeps its input (`(B, E)`) of the last forward pass:
    the features SHOT clusters, for any model, without changing its forward."""

    def __init__(self, model: nn.Module):
        self.features: Tensor | None = None
        self.handle = final_linear(classifier_head(model)).register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        self.features = inputs[0]

    def remove(self) -> None:
        self.handle.remove()


def model_inputs(model: nn.Module, batch: dict[str, Any], method: str = "forward") -> dict[str, Any]:
    """The batch's tensors that `model.<method>` takes (by its signature), never labels or corpus ids."""
    accepted = inspect.signature(getattr(model, method)).parameters
    return {k: v for k, v in batch.items() if k in accepted and k not in _NOT_MODEL_INPUTS}


def target_rows(dataset: Dataset) -> Dataset:
    """The columns the model reads of a target set; its labels, if any, are dropped (`training_columns`)."""
    return training_columns(None, dataset)[1]


@torch.no_grad()
def target_outputs(model: nn.Module, dataset: Dataset, collator=None, batch_size: int = 16,
                   device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """`(logits (N, C), classifier-input features (N, E))` of every row of `dataset`, in order, model in eval mode
    (labels are never read). Used to score a model and for SHOT's pseudo-labels."""
    collator = collator or UDADataCollator()
    rows = target_rows(dataset)
    device = device or next(model.parameters()).device
    hook, was_training = ClassifierInputs(model), model.training
    model.eval()
    logits, features = [], []
    try:
        for start in range(0, len(rows), batch_size):
            batch = collator([rows[i] for i in range(start, min(len(rows), start + batch_size))])
            batch = {k: v.to(device) for k, v in model_inputs(model, batch).items()}
            logits.append(model(**batch).logits.float().cpu())
            features.append(hook.features.float().cpu())
    finally:
        hook.remove()
        model.train(was_training)
    return torch.cat(logits), torch.cat(features)


class TargetRows(torch.utils.data.Dataset):
    """The target's model columns (labels dropped by `training_columns`), each row with its index."""

    def __init__(self, target: Dataset):
        self.rows = target_rows(target)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.rows[int(index)], "row_index": int(index)}


class WithRowIndex:
    """Collator wrapper: the rows' indices as `row_index` `(B,)`."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Tensor]:
        batch = self.collator([{k: v for k, v in e.items() if k != "row_index"} for e in examples])
        batch["row_index"] = torch.tensor([e["row_index"] for e in examples], dtype=torch.long)
        return batch


class WithoutAttentionMask:
    """Collator wrapper for a transformers model whose feature extractor gives no attention mask
    (`return_attention_mask=False`: wav2vec 2.0 base-style group-norm models, which were trained on zero-padded
    batches without one): the model is fed as its own feature extractor would feed it."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Tensor]:
        batch = self.collator(examples)
        batch.pop("attention_mask", None)
        return batch


def collator_for(model: nn.Module, feature_extractor) -> UDADataCollator | WithoutAttentionMask:
    """The collator that feeds `model` as its feature extractor does (see `WithoutAttentionMask`)."""
    if getattr(model.config, "model_type", None) != "emodna" \
            and getattr(feature_extractor, "return_attention_mask", True) is False:
        return WithoutAttentionMask(UDADataCollator())
    return UDADataCollator()


class SourceFreeTrainer(Trainer):
    """`Trainer` whose batches are target rows only, for objectives with `batches = "target"` (SHOT, TENT).

    The objective says which parameters train (`configure_model`: SHOT freezes the classifier, TENT leaves only
    normalisation scales and shifts); the loss is the sum of its weighted terms. SHOT's pseudo-labels are recomputed
    over the whole target before the first step and every `shot_pseudo_label_interval` steps (each process computes
    them over the whole target, so processes agree), and saved with checkpoints so that a resume is exact.

    Args:
        model: an audio classifier with a `classifier` head (ours or a transformers `*ForSequenceClassification`).
        args: `SourceFreeTrainingArguments`.
        target_dataset: the target `Dataset` as the model reads it (`input_values` or `input_features`,
            `corpus_id`); a `labels` column, if any, is dropped before training (`training_columns`).
    """

    # Our losses are plain means: Trainer must divide them by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, model: nn.Module, args: SourceFreeTrainingArguments, target_dataset: Dataset,
                 data_collator=None, **kwargs):
        method = objective_class(args.adaptation_method)
        if method.batches != "target":
            raise ValueError(f"{args.adaptation_method!r} trains on source and target batches: use recipes/train.py.")
        rows = TargetRows(target_dataset)
        self.collator = data_collator or UDADataCollator()
        super().__init__(model=model, args=args, train_dataset=rows, data_collator=WithRowIndex(self.collator),
                         **kwargs)
        self.classifier_inputs = ClassifierInputs(model)
        if args.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
            model.freeze_feature_encoder()
        self.objective = method(model.config, target_size=len(rows), gather=self.accelerator.gather,
                                **args.objective_settings()).to(self.args.device)
        self.objective.configure_model(model, classifier_head(model))
        self._refreshed_at: int | None = None
        self._metrics: defaultdict[str, list[Tensor]] = defaultdict(list)

    @property
    def pseudo_label_interval(self) -> int:
        """Optimisation steps between SHOT's pseudo-label refreshes (an epoch's steps when not set)."""
        if self.args.shot_pseudo_label_interval:
            return self.args.shot_pseudo_label_interval
        batches = math.ceil(len(self.train_dataset) / (self._train_batch_size * self.args.world_size))
        return max(1, batches // self.args.gradient_accumulation_steps)

    def refresh_pseudo_labels(self) -> None:
        """SHOT: every target row's pseudo-label from the current model (eval mode, no gradient)."""
        logits, features = target_outputs(self.model, self.train_dataset.rows, self.collator,
                                          self.args.per_device_eval_batch_size, self.args.device)
        stats = self.objective.refresh_pseudo_labels(features, logits.softmax(-1))
        self._record({f"{name}": torch.tensor(value) for name, value in stats.items()})

    def training_step(self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch=None) -> Tensor:
        step = self.state.global_step
        if hasattr(self.objective, "refresh_pseudo_labels") and self._refreshed_at != step \
                and step % self.pseudo_label_interval == 0:
            self.refresh_pseudo_labels()
            self._refreshed_at = step
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model: nn.Module, inputs: dict[str, Tensor], return_outputs: bool = False,
                     num_items_in_batch: Tensor | None = None):
        indices = inputs.pop("row_index")
        outputs = model(**model_inputs(self.accelerator.unwrap_model(model), inputs))
        logits = outputs.logits
        rows = logits.shape[0]
        view = SimpleNamespace(logits=logits, emotion_embeddings=self.classifier_inputs.features)
        progress = min(1.0, self.state.global_step / self.state.max_steps) if self.state.max_steps else 0.0
        batch = TargetBatch(
            view, labels=torch.full((rows,), -100, device=logits.device),
            corpus_ids=torch.zeros(rows, dtype=torch.long, device=logits.device),
            is_target=torch.ones(rows, dtype=torch.bool, device=logits.device), progress=progress,
            grl_coefficient=0.0, total_updates=max(1, self.state.max_steps) * self.args.gradient_accumulation_steps,
            indices=indices)
        terms, stats = self.objective(batch)
        loss = sum(weight * value for value, weight in terms.values())
        self._record({**stats, **{f"loss_{name}": value.detach() for name, (value, _) in terms.items()}})
        return (loss, outputs) if return_outputs else loss

    def _record(self, values: dict[str, Tensor]) -> None:
        for name, value in values.items():
            self._metrics[name].append(torch.as_tensor(value, dtype=torch.float32, device=self.args.device)
                                       .detach().reshape(()))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        names = [name for name, values in self._metrics.items() if values]
        if names:  # one gather for all statistics (as EmoDnaTrainer)
            means = torch.stack([torch.stack(self._metrics[name]).mean() for name in names])
            logs.update(zip(names, self.accelerator.gather(means[None]).mean(0).tolist(), strict=True))
        super().log(logs, start_time)
        self._metrics.clear()

    # --- checkpoints: SHOT's pseudo-labels are training state -----------------------------------------------------

    def _save_checkpoint(self, model: nn.Module, trial=None) -> None:
        super()._save_checkpoint(model, trial)
        state = {k: v.detach().cpu().contiguous() for k, v in self.objective.state_dict().items()}
        if self.args.should_save and state:
            checkpoint = os.path.join(self._get_output_dir(trial=trial),
                                      f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            save_file(state, os.path.join(checkpoint, OBJECTIVE_STATE))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if not self.objective.state_dict():
            return
        path = os.path.join(resume_from_checkpoint, OBJECTIVE_STATE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} is missing: the checkpoint was not written by SourceFreeTrainer, so "
                                    f"the {self.args.adaptation_method} state cannot be restored.")
        self.objective.load_state_dict(load_file(path, device=str(self.args.device)))
