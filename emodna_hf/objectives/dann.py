"""DANN (Ganin et al., 2016): a corpus discriminator behind gradient reversal on the emotion embedding."""

from __future__ import annotations

from ..losses import DomainAdversarialLoss
from .base import AdaptationObjective, ObjectiveBatch
from .parts import CorpusDiscriminator


class DomainAdversarialObjective(AdaptationObjective):
    r"""Source cross-entropy + `corpus_alignment_weight` × CE(D(GRL_λ(h)), corpus id), averaged per corpus
    (`DomainAdversarialLoss`).

    The objective owns the discriminator `D` (`discriminator_hidden_size` hidden units, `encoder_dropout`) and the
    reversal, whose coefficient follows λ(p) = 2 / (1 + exp(−γ p)) − 1 (`grl_gamma`). Logged: the discriminator's
    accuracy (≈ 0.5 for two corpora = indistinguishable) and λ.
    """

    name = "dann"
    title = "DANN (domain-adversarial training; baseline)"
    description = "A corpus discriminator behind a gradient reversal layer makes the emotion embedding corpus-invariant."

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.discriminator = CorpusDiscriminator(config.embedding_size, config.discriminator_hidden_size,
                                                 config.num_corpora, config.encoder_dropout)
        self.adversarial_loss = DomainAdversarialLoss()

    def corpus_alignment(self, batch: ObjectiveBatch):
        domain_logits = self.discriminator(batch.outputs.emotion_embeddings, batch.grl_coefficient)
        loss = self.adversarial_loss(domain_logits, batch.corpus_ids)
        stats = {"domain_accuracy": self.adversarial_loss.domain_discriminator_accuracy,
                 "grl_coefficient": self.scalar(batch.grl_coefficient)}
        return loss, stats

    def loss_terms(self, batch: ObjectiveBatch):
        loss, stats = self.corpus_alignment(batch)
        return {**self.classification(batch), "corpus_alignment": (loss, self.config.corpus_alignment_weight)}, stats

    def card_settings(self):
        return {**super().card_settings(), "corpus_alignment_weight": self.config.corpus_alignment_weight}
