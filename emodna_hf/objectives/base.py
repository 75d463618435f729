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
        outputs: the model's `EmoDnaOutput` with `output_embeddings=True` (logits, embeddings, projections,
            domain and corpus logits) for the whole mixed batch.
        labels: `(B,)` emotion ids of the source rows, `-100` on the target rows (never their labels).
        corpus_ids: `(B,)` corpus of each row; the target is `num_corpora - 1`.
        is_target: `(B,)` bool, the target rows.
        progress: training progress in [0, 1] (global step / total steps).
        grl_coefficient: the gradient-reversal coefficient used in this forward pass.
        total_updates: forward passes of the whole training (optimisation steps × gradient-accumulation steps),
            for state whose pace follows training progress.
    """

    outputs: Any
    labels: Tensor
    corpus_ids: Tensor
    is_target: Tensor
    progress: float
    grl_coefficient: float
    total_updates: int = 1


def _identity(tensor: Tensor) -> Tensor:
    return tensor


class AdaptationObjective(nn.Module):
    """One adaptation method: loss terms on top of the source cross-entropy, statistics, and a card description.

    Subclasses set `name` (the `adaptation_method` value), `title` and `description` (model card), and implement
    :meth:`loss_terms`. Objectives hold no trainable parameters (those live in the model); state that must
    survive a resume lives in buffers of `pseudo_labeler`, which `EmoDnaTrainer` checkpoints.

    Args:
        config: the model's `EmoDnaConfig` (method switches and loss weights).
        target_size: rows of the target training corpus, when known (sizes pseudo-label memories).
        gather: all-gathers a tensor across processes (`accelerator.gather`); identity in one process.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    batches: ClassVar[str] = "source_and_target"

    def __init__(self, config, target_size: int | None = None, gather: Callable[[Tensor], Tensor] = _identity):
        super().__init__()
        self.config = config
        self.gather = gather
        self.pseudo_labeler: nn.Module | None = None

    def loss_terms(self, batch: ObjectiveBatch) -> tuple[dict[str, tuple[Tensor, float]], dict[str, Tensor]]:
        """`({term name: (loss, weight)}, {statistic name: value})` for one batch; losses are plain means."""
        raise NotImplementedError

    def forward(self, batch: ObjectiveBatch):
        return self.loss_terms(batch)

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
