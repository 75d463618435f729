"""DANN (Ganin et al., 2016): a corpus discriminator behind gradient reversal on the emotion embedding."""

from __future__ import annotations

from ..losses import DomainAdversarialLoss
from .base import AdaptationObjective, ObjectiveBatch


class DomainAdversarialObjective(AdaptationObjective):
    r"""`corpus_alignment_weight` × CE(D(GRL_λ(h)), corpus id), averaged per corpus (`DomainAdversarialLoss`).

    The reversal and its schedule λ(p) = 2 / (1 + exp(−γ p)) − 1 happen in the model's forward pass; logged:
    the discriminator's accuracy (≈ 0.5 for two corpora = indistinguishable) and λ.
    """

    name = "dann"
    title = "DANN (domain-adversarial training; baseline)"
    description = "A corpus discriminator behind a gradient reversal layer makes the emotion embedding corpus-invariant."

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.adversarial_loss = DomainAdversarialLoss()

    def corpus_alignment(self, batch: ObjectiveBatch):
        loss = self.adversarial_loss(batch.outputs.domain_logits, batch.corpus_ids)
        stats = {"domain_accuracy": self.adversarial_loss.domain_discriminator_accuracy,
                 "grl_coefficient": self.scalar(batch.grl_coefficient)}
        return loss, stats

    def loss_terms(self, batch: ObjectiveBatch):
        loss, stats = self.corpus_alignment(batch)
        return {"corpus_alignment": (loss, self.config.corpus_alignment_weight)}, stats

    def card_settings(self):
        return {**super().card_settings(), "corpus_alignment_weight": self.config.corpus_alignment_weight}
