"""DAN-style multi-kernel MMD (Long et al., 2015) between source and target emotion embeddings."""

from __future__ import annotations

from ..losses import MultiKernelMMDLoss
from .base import AdaptationObjective, ObjectiveBatch


class MultiKernelMMDObjective(AdaptationObjective):
    """Source cross-entropy + `corpus_alignment_weight` × MMD²(h_source, h_target) with
    `config.mmd_kernel_multipliers` (no trainable part)."""

    name = "mmd"
    title = "MMD alignment (multi-kernel maximum mean discrepancy; baseline)"
    description = "The MMD between source and target emotion embeddings is minimised."

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.mmd_loss = MultiKernelMMDLoss(config.mmd_kernel_multipliers)

    def corpus_alignment(self, batch: ObjectiveBatch):
        embeddings = batch.outputs.emotion_embeddings
        return self.mmd_loss(embeddings[~batch.is_target], embeddings[batch.is_target]), {}

    def loss_terms(self, batch: ObjectiveBatch):
        loss, stats = self.corpus_alignment(batch)
        return {**self.classification(batch), "corpus_alignment": (loss, self.config.corpus_alignment_weight)}, stats

    def card_settings(self):
        return {**super().card_settings(), "corpus_alignment_weight": self.config.corpus_alignment_weight}
