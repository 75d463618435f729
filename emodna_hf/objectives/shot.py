"""SHOT (Liang et al., 2020, "Do we really need to access the source data?"): source-free adaptation.

The source hypothesis (the classifier) is frozen; everything before it trains on the unlabelled target alone with

* **information maximisation** (IM): for a batch of softmax predictions `p_i = softmax(z_i)`,

      L_IM = (1/B) Σ_i H(p_i) − H(p̄),    p̄ = (1/B) Σ_i p_i,    H(p) = −Σ_k p_k log(p_k + ε),

  which makes each prediction confident (first term) and the predictions diverse across classes (second term),
  so the target features move to where the frozen classifier is sure, without collapsing onto one class;
* **self-supervised pseudo-labels**: `β · CE(z_i, ŷ_i)` with `ŷ` from weighted k-means in the classifier's input
  feature space (`shot_pseudo_labels`), `β = shot_pseudo_label_weight` (paper: 0.3).

The pseudo-labels are computed over the **whole** target (model in eval mode) by `SourceFreeTrainer`, before the
first step and then every `shot_pseudo_label_interval` optimisation steps (default: once per epoch, SHOT's
published setting refreshes a fixed number of times per run), and held fixed in between; each batch looks its rows
up by index. They are training state (a buffer), saved with checkpoints.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import AdaptationObjective, ObjectiveBatch

EPSILON = 1e-5  # SHOT's ε inside the logarithms


def entropy(probabilities: Tensor) -> Tensor:
    """`H(p) = −Σ_k p_k log(p_k + ε)` of each row `(…, C)` → `(…)`."""
    return -(probabilities * torch.log(probabilities + EPSILON)).sum(-1)


def information_maximization_loss(logits: Tensor) -> Tensor:
    """`(1/B) Σ_i H(p_i) − H(p̄)` of a batch of logits `(B, C)` (see the module docstring)."""
    probabilities = logits.float().softmax(-1)
    return entropy(probabilities).mean() - entropy(probabilities.mean(0))


@torch.no_grad()
def shot_pseudo_labels(features: Tensor, probabilities: Tensor, rounds: int = 1) -> Tensor:
    """SHOT's self-supervised pseudo-labels of every target row.

    1. `f̂_i = [f_i, 1] / ‖[f_i, 1]‖` (features augmented with a constant and L2-normalised: cosine geometry);
    2. weighted centroids `c_k = Σ_i p_ik f̂_i / Σ_i p_ik`, for the classes `k` that the classifier predicts
       (argmax) for at least one row; `ŷ_i = argmin_k (1 − cos(f̂_i, c_k))`;
    3. `rounds` times: hard centroids `c_k = mean of f̂_i with ŷ_i = k` (classes that keep members), reassign.

    Args:
        features: `(N, E)` the classifier's input features of the target rows.
        probabilities: `(N, C)` the model's softmax predictions of the same rows.
    Returns:
        `(N,)` long class ids.
    """
    features = features.double()
    features = torch.cat([features, torch.ones_like(features[:, :1])], dim=1)
    features = features / features.norm(dim=1, keepdim=True)
    weights = probabilities.double()
    classes = torch.unique(weights.argmax(1))
    labels = _nearest(features, weights, classes)
    for _ in range(rounds):
        one_hot = nn.functional.one_hot(labels, weights.shape[1]).double()
        labels = _nearest(features, one_hot, torch.unique(labels))
    return labels


def _nearest(features: Tensor, weights: Tensor, classes: Tensor) -> Tensor:
    """Rows' nearest centroid (cosine distance) among `classes`, centroids weighted by `weights` `(N, C)`."""
    centroids = weights.T @ features / (weights.sum(0)[:, None] + 1e-8)  # (C, E+1)
    centroids = centroids[classes]
    cosine = features @ centroids.T / (centroids.norm(dim=1)[None] + 1e-12)
    return classes[(1 - cosine).argmin(1)]


class ShotObjective(AdaptationObjective):
    """`information_maximization_weight · L_IM + shot_pseudo_label_weight · CE(z, ŷ)` on target-only batches.

    Args (beyond `AdaptationObjective`'s): the two weights (`SourceFreeTrainingArguments` sets them) and
    `target_size` (rows of the target, for the pseudo-label buffer; required to train).
    """

    name = "shot"
    title = "SHOT (source-free: frozen classifier, information maximisation + self-supervised pseudo-labels)"
    description = ("Source-free: the classifier of the source model is frozen and the rest is trained on the "
                   "unlabelled target only, making predictions confident and diverse (information maximisation) and "
                   "fitting pseudo-labels from class centroids in the classifier's input-feature space "
                   "(Liang et al., 2020).")
    batches = "target"

    def __init__(self, config, target_size: int | None = None, *, pseudo_label_weight: float = 0.3,
                 information_maximization_weight: float = 1.0, **kwargs):
        super().__init__(config, target_size=target_size, **kwargs)
        self.pseudo_label_weight = pseudo_label_weight
        self.information_maximization_weight = information_maximization_weight
        # -1 until the first refresh (`refresh_pseudo_labels`).
        self.register_buffer("pseudo_labels", torch.full((target_size or 0,), -1, dtype=torch.long))

    def configure_model(self, model: nn.Module, classifier: nn.Module) -> None:
        """Freeze the source hypothesis (the classifier); what else trains is what trained before."""
        classifier.requires_grad_(False)

    @torch.no_grad()
    def refresh_pseudo_labels(self, features: Tensor, probabilities: Tensor) -> dict[str, float]:
        """Recompute every target row's pseudo-label (`shot_pseudo_labels`); returns statistics to log."""
        if features.shape[0] != self.pseudo_labels.shape[0]:
            raise ValueError(f"SHOT: {features.shape[0]} target rows given, the pseudo-label buffer holds "
                             f"{self.pseudo_labels.shape[0]} (target_size).")
        labels = shot_pseudo_labels(features, probabilities).to(self.pseudo_labels.device)
        self.pseudo_labels.copy_(labels)
        agreement = (labels.cpu() == probabilities.argmax(1).cpu()).double().mean().item()
        return {"shot_pseudo_label_agreement": agreement,
                "shot_pseudo_label_classes": float(torch.unique(labels).numel())}

    def loss_terms(self, batch: ObjectiveBatch):
        logits = batch.outputs.logits
        indices = getattr(batch, "indices", None)
        if indices is None:
            raise ValueError("SHOT needs each target row's index (SourceFreeTrainer gives it): it looks up the "
                             "row's pseudo-label.")
        labels = self.pseudo_labels[indices.to(self.pseudo_labels.device)].to(logits.device)
        known = labels >= 0
        pseudo = (nn.functional.cross_entropy(logits[known].float(), labels[known]) if known.any()
                  else logits.sum() * 0.0)
        return ({"information_maximization": (information_maximization_loss(logits),
                                              self.information_maximization_weight),
                 "pseudo_label": (pseudo, self.pseudo_label_weight)},
                {"mean_entropy": entropy(logits.detach().float().softmax(-1)).mean()})

    def card_settings(self):
        return {**super().card_settings(), "shot_pseudo_label_weight": self.pseudo_label_weight,
                "shot_information_maximization_weight": self.information_maximization_weight}
