"""MCC, minimum class confusion (Jin et al., ECCV 2020): a label-free regulariser on the target predictions."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import AdaptationObjective, ObjectiveBatch
from .cdan import prediction_entropy


def minimum_class_confusion(logits: Tensor, temperature: float = 2.5) -> Tensor:
    r"""The class confusion of a batch of (target) predictions.

    With :math:`\hat Y = \mathrm{softmax}(Z / T)` (`B × C`), entropy weights
    :math:`W_i = \frac{B\,(1 + e^{-H(\hat y_i)})}{\sum_j (1 + e^{-H(\hat y_j)})}` (constants: no gradient), the
    class correlation :math:`C = \hat Y^\top \mathrm{diag}(W)\,\hat Y` and its category normalisation
    :math:`\tilde C_{jj'} = C_{jj'} / \sum_{j''} C_{j''j'}`,

    .. math::
        \mathcal{L}_{MCC} = \frac{1}{C} \sum_{j=1}^{C} \sum_{j' \neq j} \left|\tilde C_{jj'}\right| ,

    the share of each class's (weighted) probability mass that the batch also gives other classes. Minimising it
    makes the target predictions less ambiguous between classes without any label. 0 for confident, one-class-
    per-row predictions; a graph-connected zero for an empty batch.
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    probabilities = (logits.float() / temperature).softmax(-1)
    weights = 1 + torch.exp(-prediction_entropy(probabilities).detach())
    weights = logits.shape[0] * weights / weights.sum()
    confusion = (probabilities * weights[:, None]).T @ probabilities
    confusion = confusion / confusion.sum(0, keepdim=True).clamp(min=1e-12)
    return (confusion.sum() - confusion.trace()) / logits.shape[1]


class MinimumClassConfusionObjective(AdaptationObjective):
    """Source cross-entropy + `mcc_weight` × `minimum_class_confusion` of the target rows' logits at
    `mcc_temperature` (no trainable part; no alignment of features)."""

    name = "mcc"
    title = "MCC (minimum class confusion; baseline)"
    description = ("The confusion between emotion classes in the predictions on each unlabelled target batch "
                   "(entropy-weighted, category-normalised) is minimised: a label-free regulariser.")

    def loss_terms(self, batch: ObjectiveBatch):
        loss = minimum_class_confusion(batch.outputs.logits[batch.is_target], self.config.mcc_temperature)
        return {**self.classification(batch), "class_confusion": (loss, self.config.mcc_weight)}, {}

    def card_settings(self):
        return {**super().card_settings(), "mcc_weight": self.config.mcc_weight,
                "mcc_temperature": self.config.mcc_temperature}
