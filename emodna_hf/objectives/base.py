"""The interface every adaptation method implements (see `emodna_hf.objectives`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


@dataclass
class ObjectiveBatch:
    """What one training step gives an objective.

    Attributes:
        outputs: the model's `EmoDnaOutput` with `output_embeddings=True` for the whole batch: `logits` `(B, C)`,
            `emotion_embeddings` `(B, E)` (what the classifier's last layer reads) and `pooled_features` `(B, P)`
            (the pooled backbone features before corpus normalisation, which Emo-DNA's corpus branch reads).
        labels: `(B,)` emotion ids of the source rows, `-100` on the target rows (never their labels).
        corpus_ids: `(B,)` corpus of each row; the target is `num_corpora - 1`.
        is_target: `(B,)` bool, the target rows.
        progress: training progress in [0, 1] (global step / total steps).
        grl_coefficient: the gradient-reversal coefficient λ(progress) of this step (adversarial methods).
        total_updates: forward passes of the whole training (optimisation steps × gradient-accumulation steps),
            for state whose pace follows training progress.
        class_weights: `(C,)` inverse-frequency source class weights (`config.class_balanced_loss`), or `None`.
    """

    outputs: Any
    labels: Tensor
    corpus_ids: Tensor
    is_target: Tensor
    progress: float
    grl_coefficient: float
    total_updates: int = 1
    class_weights: Tensor | None = None


def _identity(tensor: Tensor) -> Tensor:
    return tensor


class AdaptationObjective(nn.Module):
    """One adaptation method: its loss terms (the source term included), statistics, and a card description.

    Subclasses set `name` (the `adaptation_method` value), `title` and `description` (model card), `batches`
    (`"source_and_target"`: mixed batches of labelled source and unlabelled target rows; `"target"`: target rows
    only, for source-free methods), and implement :meth:`loss_terms`.

    An objective owns the modules only training reads (discriminators, projectors, a corpus branch; tllib's
    `DomainAdversarialLoss` is the model): `EmoDnaTrainer` puts its parameters in the optimizer (with the model's
    weight-decay rules), averages their gradients across processes, clips them with the model's, and saves and
    restores its whole state (parameters and buffers, e.g. pseudo-label thresholds) in every checkpoint
    (`objective.safetensors`). Nothing of it reaches the saved inference model.

    Args:
        config: the model's `EmoDnaConfig` (method switches and loss weights).
        target_size: rows of the target training corpus, when known (sizes pseudo-label memories).
        gather: all-gathers a tensor across processes (`accelerator.gather`); identity in one process.
        pooled_size: the width `P` of the model's pooled features (`outputs.pooled_features`), for parts that
            read them; `None` when the objective is built only to describe itself.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    batches: ClassVar[str] = "source_and_target"

    def __init__(self, config, target_size: int | None = None, gather: Callable[[Tensor], Tensor] = _identity,
                 pooled_size: int | None = None):
        super().__init__()
        self.config = config
        self.gather = gather
        self.pooled_size = pooled_size
        self.pseudo_labeler: nn.Module | None = None

    def loss_terms(self, batch: ObjectiveBatch) -> tuple[dict[str, tuple[Tensor, float]], dict[str, Tensor]]:
        """`({term name: (loss, weight)}, {statistic name: value})` for one batch; losses are plain means. The
        trainer minimises `Σ weight × loss` and logs each term as `loss_<name>`."""
        raise NotImplementedError

    def forward(self, batch: ObjectiveBatch):
        return self.loss_terms(batch)

    def classification(self, batch: ObjectiveBatch) -> dict[str, tuple[Tensor, float]]:
        """The source term `{"classification": (loss, config.classification_weight)}`: cross-entropy of the source
        rows (`labels != -100`) with `config.label_smoothing`, weighted by `batch.class_weights` when given. A batch
        without a labelled row gives a graph-connected zero (DDP expects every used parameter to get a gradient)."""
        logits, labels = batch.outputs.logits, batch.labels.to(batch.outputs.logits.device)
        if (labels != -100).any():
            loss = nn.functional.cross_entropy(logits, labels, weight=batch.class_weights, ignore_index=-100,
                                               label_smoothing=self.config.label_smoothing)
        else:
            loss = logits.sum() * 0.0
        return {"classification": (loss, self.config.classification_weight)}

    def evaluation_outputs(self, outputs) -> dict[str, Tensor]:
        """Extra per-row outputs of the method's own parts for the evaluation reports (Emo-DNA: the corpus-specific
        embeddings); none by default."""
        return {}

    def card_settings(self) -> dict[str, Any]:
        """The config fields that define this method's run, for the model card."""
        return {"adaptation_method": self.name}

    @classmethod
    def describe(cls, config) -> dict[str, Any]:
        """`{"name", "description", "settings"}` for the model card."""
        return {"name": cls.title, "description": cls.description,
                "settings": cls(config).card_settings()}

    @staticmethod
    def scalar(value: float | Tensor) -> Tensor:
        return torch.as_tensor(value, dtype=torch.float32)
