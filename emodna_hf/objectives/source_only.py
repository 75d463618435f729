"""Source-only training: the lower bound, no adaptation."""

from __future__ import annotations

from .base import AdaptationObjective, ObjectiveBatch


class SourceOnlyObjective(AdaptationObjective):
    """The source cross-entropy alone; the target rows only pass through the model (their statistics
    feed corpus normalisation when it is switched on: AdaBN alone)."""

    name = "source_only"
    title = "source-only training (no adaptation; baseline)"
    description = "Trained on the labelled source corpora only; the target corpus is not used in training."

    def loss_terms(self, batch: ObjectiveBatch):
        return self.classification(batch), {}
