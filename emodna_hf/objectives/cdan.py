"""CDAN(+E) (Long et al., NeurIPS 2018): a corpus discriminator conditioned on the classifier's predictions."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import AdaptationObjective, ObjectiveBatch
from .parts import CorpusDiscriminator

# Above this many dimensions the exact multilinear map is replaced by the randomized one (Long et al., §3.2).
MAX_MULTILINEAR_DIM = 4096


def prediction_entropy(probabilities: Tensor) -> Tensor:
    r""":math:`H(g) = -\sum_c g_c \log g_c` per row (0 log 0 = 0)."""
    return -(probabilities * probabilities.clamp(min=1e-12).log()).sum(-1)


class MultilinearMap(nn.Module):
    r"""The conditioning :math:`T(h, g)` of the discriminator's input on the predictions :math:`g`.

    * exact (`E·C <= 4096`): :math:`T_\otimes(h, g) = \mathrm{vec}(h\,g^\top)`, the `E·C` products
      :math:`h_e g_c` (row-major in `e`), which captures the multimodal structure a discriminator on `h` alone
      misses;
    * randomized (larger): :math:`T_\odot(h, g) = \frac{1}{\sqrt{d}} (R_h h) \odot (R_g g)` with fixed Gaussian
      :math:`R_h \in \mathbb{R}^{d\times E}`, :math:`R_g \in \mathbb{R}^{d\times C}` (buffers: saved in
      checkpoints, never trained), whose inner products approximate those of :math:`T_\otimes` in expectation.
    """

    def __init__(self, embedding_size: int, num_labels: int, randomized_dim: int):
        super().__init__()
        self.randomized = embedding_size * num_labels > MAX_MULTILINEAR_DIM
        self.output_size = randomized_dim if self.randomized else embedding_size * num_labels
        if self.randomized:
            self.register_buffer("random_embedding", torch.randn(embedding_size, randomized_dim))
            self.register_buffer("random_prediction", torch.randn(num_labels, randomized_dim))

    def forward(self, embeddings: Tensor, probabilities: Tensor) -> Tensor:
        if self.randomized:
            return ((embeddings @ self.random_embedding) * (probabilities @ self.random_prediction)
                    / math.sqrt(self.output_size))
        return torch.bmm(embeddings.unsqueeze(2), probabilities.unsqueeze(1)).flatten(1)


def conditional_adversarial_loss(domain_logits: Tensor, domain_labels: Tensor, weights: Tensor | None = None) -> Tensor:
    r"""The (entropy-weighted) corpus cross-entropy of CDAN, each corpus counting equally.

    With per-row losses :math:`\ell_i = \mathrm{CE}(D(T(h_i, g_i)), d_i)` and weights :math:`w_i` (CDAN+E:
    :math:`w_i = 1 + e^{-H(g_i)}`; CDAN: 1), normalised to mean 1 within each corpus
    (:math:`\tilde w_i = w_i / \frac{1}{n_k}\sum_{j: d_j = k} w_j` for :math:`d_i = k`),

    .. math::
        \mathcal{L}_{CDAN} = \frac{1}{|K|} \sum_{k \in K} \frac{1}{n_k} \sum_{i : d_i = k} \tilde w_i\,\ell_i .

    Without weights this is `DomainAdversarialLoss` (DANN) on the conditioned input. Weights are constants (no
    gradient), as in the original code.
    """
    domain_labels = domain_labels.long()
    per_row = F.cross_entropy(domain_logits.float(), domain_labels, reduction="none")
    one_hot = F.one_hot(domain_labels, domain_logits.shape[1]).float()
    counts = one_hot.sum(0)
    if weights is None:
        weights = torch.ones_like(per_row)
    weights = weights.detach().float()
    corpus_mean_weight = (one_hot * weights[:, None]).sum(0) / counts.clamp(min=1)
    normalised = weights / (one_hot @ corpus_mean_weight).clamp(min=1e-12)
    per_corpus = (one_hot * (normalised * per_row)[:, None]).sum(0) / counts.clamp(min=1)
    return per_corpus.sum() / (counts > 0).sum().clamp(min=1)


class ConditionalAdversarialObjective(AdaptationObjective):
    r"""Source cross-entropy + `corpus_alignment_weight` × :math:`\mathcal{L}_{CDAN}`
    (`conditional_adversarial_loss`) on :math:`D(\mathrm{GRL}_\lambda(T(h, g)))`, where :math:`h` is the emotion
    embedding and :math:`g = \mathrm{softmax}(\text{logits})` (detached: the classifier is conditioned on, not
    trained through, the discriminator; the reversed gradient reaches :math:`h`).

    The objective owns the map and the discriminator (`discriminator_hidden_size`, `encoder_dropout`);
    `cdan_entropy_conditioning` selects CDAN+E, `cdan_randomized_dim` the randomized map's size, and λ follows
    the DANN ramp (`grl_gamma`). Logged: the discriminator's accuracy and λ.
    """

    name = "cdan"
    title = "CDAN (conditional domain-adversarial training; baseline)"
    description = (
        "A corpus discriminator behind a gradient reversal layer reads the emotion embedding conditioned on the "
        "classifier's predictions (their multilinear map), so that the emotion classes, not only the marginal "
        "distributions, are aligned across corpora."
    )

    def __init__(self, config, **kwargs):
        super().__init__(config, **kwargs)
        self.multilinear_map = MultilinearMap(config.embedding_size, config.num_labels, config.cdan_randomized_dim)
        self.discriminator = CorpusDiscriminator(self.multilinear_map.output_size, config.discriminator_hidden_size,
                                                 config.num_corpora, config.encoder_dropout)

    def loss_terms(self, batch: ObjectiveBatch):
        outputs = batch.outputs
        probabilities = outputs.logits.detach().float().softmax(-1)
        conditioned = self.multilinear_map(outputs.emotion_embeddings.float(), probabilities)
        domain_logits = self.discriminator(conditioned, batch.grl_coefficient)
        weights = (1 + torch.exp(-prediction_entropy(probabilities))
                   if self.config.cdan_entropy_conditioning else None)
        loss = conditional_adversarial_loss(domain_logits, batch.corpus_ids, weights)
        stats = {"domain_accuracy": (domain_logits.argmax(-1) == batch.corpus_ids).float().mean().detach(),
                 "grl_coefficient": self.scalar(batch.grl_coefficient)}
        return {**self.classification(batch), "corpus_alignment": (loss, self.config.corpus_alignment_weight)}, stats

    def card_settings(self):
        config = self.config
        return {**super().card_settings(), "corpus_alignment_weight": config.corpus_alignment_weight,
                "cdan_entropy_conditioning": config.cdan_entropy_conditioning,
                "multilinear_map": "randomized" if self.multilinear_map.randomized else "exact",
                **({"cdan_randomized_dim": config.cdan_randomized_dim} if self.multilinear_map.randomized else {})}

    @classmethod
    def describe(cls, config):
        description = super().describe(config)
        if config.cdan_entropy_conditioning:
            description["name"] = "CDAN+E (conditional domain-adversarial training with entropy conditioning; baseline)"
            description["description"] += (" Confident predictions weigh more in the adversarial loss "
                                            "(entropy conditioning).")
        return description
