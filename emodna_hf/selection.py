"""Choosing a model without target labels: label-free validation criteria and the rules of model selection.

In unsupervised domain adaptation the target has no labels, so every choice (which checkpoint, which method, which
loss weight) must be made from what a user has: the labelled *source* corpus (a held-out part of it) and the
model's outputs on the unlabelled target. This module computes the criteria proposed for that in the UDA
literature; docs/benchmarks.md ("Model selection without target labels") measures how well each one tracks the
true target UAR on the cross-corpus benchmark (`benchmarks/model_selection.py`).

Criteria (the key a run logs is ``eval_<name>``; `metric_for_best_model` may name any of them):

* ``source_uar``, ``source_loss``: held-out source UAR and cross-entropy (computed by the Trainer's metrics on the
  ``source`` evaluation set, under the source's own normalisation statistics).
* ``target_im``: information maximisation on the target predictions (higher is better).
* ``target_snd``: soft neighbourhood density of the target class probabilities (higher is better).
* ``target_snd_embeddings``: the same density on the emotion embeddings.
* ``dev_loss``: deep embedded validation, an importance-weighted held-out source loss (lower is better).
* ``iwv_loss``: the same weighted loss self-normalised (Σ w ℓ / Σ w): bounded by the losses, where DEV's control
  variate can swing far (even below 0) when the corpora are easy to tell apart and a few weights dominate.

Names ending in ``loss`` are minimised, as `TrainingArguments.greater_is_better` assumes by default. Conventions:
probabilities are softmax outputs (N, C); logarithms are natural; samples beyond `max_samples` are subsampled
with a fixed seed so that a criterion costs the same on a corpus of any size.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

# name: (greater is better, one line for reports and the model card)
CRITERIA: dict[str, tuple[bool, str]] = {
    "source_uar": (True, "held-out source UAR"),
    "source_loss": (False, "held-out source cross-entropy"),
    "target_im": (True, "information maximisation on the target: H(mean prediction) − mean H(prediction)"),
    "target_snd": (True, "soft neighbourhood density of the target class probabilities (Saito et al. 2021)"),
    "target_snd_embeddings": (True, "soft neighbourhood density of the target emotion embeddings"),
    "dev_loss": (False, "deep embedded validation: importance-weighted held-out source loss (You et al. 2019)"),
    "iwv_loss": (False, "self-normalised importance-weighted held-out source loss (Sugiyama et al. 2007)"),
}
# Computed from the model's outputs here (the source ones come from the Trainer's metrics).
COMPUTED_HERE = ("target_im", "target_snd", "target_snd_embeddings", "dev_loss", "iwv_loss")


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def _entropy(probabilities: np.ndarray) -> np.ndarray:
    """Row entropies −Σ_c p_c log p_c, with 0 log 0 = 0."""
    p = np.asarray(probabilities, dtype=np.float64)
    return -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)


def information_maximization(probabilities: np.ndarray) -> float:
    """IM = H(p̄) − (1/N) Σ_i H(p_i), with p̄ = (1/N) Σ_i p_i the mean prediction.

    Large when every prediction is confident (small H(p_i)) *and* the classes are used evenly (large H(p̄)); at most
    log C. The objective of information-maximisation adaptation (Krause et al., NeurIPS 2010; SHOT, Liang et al.,
    ICML 2020), used as a validation score by Musgrave et al., "Benchmarking validation methods for unsupervised
    domain adaptation" (2022).

    Args:
        probabilities: (N, C) class probabilities of the target utterances.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    return float(_entropy(p.mean(0)) - _entropy(p).mean())


def soft_neighborhood_density(vectors: np.ndarray, temperature: float = 0.05) -> float:
    """SND (Saito et al., "Tune it the right way: unsupervised validation of domain adaptation via soft
    neighborhood density", ICCV 2021): the mean entropy of each sample's soft-neighbour distribution.

        v̂_i = v_i / ‖v_i‖,   s_ij = v̂_i·v̂_j / τ   (j ≠ i),   P_ij = exp(s_ij) / Σ_{k≠i} exp(s_ik),
        SND = −(1/N) Σ_i Σ_{j≠i} P_ij log P_ij.

    High when every sample has many close neighbours (dense, well-clustered outputs); collapsed or scattered
    outputs score lower. The paper computes it on the classifier's softmax outputs with τ = 0.05.

    Args:
        vectors: (N, D) target class probabilities or embeddings, N ≥ 2.
        temperature: τ.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if len(v) < 2:
        raise ValueError(f"soft_neighborhood_density needs at least 2 samples, got {len(v)}")
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    # 256 rows at a time: the N x N float64 temporaries (~160 MB at N = 2000) would otherwise set the peak memory
    # of every evaluation; each row's distribution is computed exactly as with the whole matrix.
    entropies = []
    for start in range(0, len(v), 256):
        scores = v[start:start + 256] @ v.T / temperature
        rows = np.arange(len(scores))
        scores[rows, start + rows] = -np.inf  # a sample is not its own neighbour
        scores -= scores.max(1, keepdims=True)
        neighbours = np.exp(scores)
        neighbours /= neighbours.sum(1, keepdims=True)
        entropies.append(_entropy(neighbours))
    return float(np.concatenate(entropies).mean())


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """The control-variate estimate of deep embedded validation (You et al., "Towards accurate model selection
    in deep unsupervised domain adaptation", ICML 2019, Algorithm 1):

        L_i = w_i ℓ_i,   η = −Cov(L, w) / Var(w),   DEV = mean(L) + η mean(w) − η.

    `mean(L)` is an unbiased estimate of the target risk when w_i is the density ratio p_target(x_i) /
    p_source(x_i); since E[w] = 1, the control variate η (mean(w) − 1) lowers its variance. With constant
    weights (no shift) it is the mean source loss.

    Args:
        losses: (N,) per-utterance losses ℓ_i on held-out source utterances.
        weights: (N,) importance weights w_i of the same utterances.
    """
    losses, weights = np.asarray(losses, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    weighted = weights * losses
    variance = weights.var(ddof=1) if len(weights) > 1 else 0.0
    eta = 0.0 if variance <= 1e-12 else -np.cov(weighted, weights, ddof=1)[0, 1] / variance
    return float(weighted.mean() + eta * weights.mean() - eta)


def importance_weighted_loss(losses: np.ndarray, weights: np.ndarray) -> float:
    """Self-normalised importance-weighted validation (Sugiyama, Krauledat & Müller, JMLR 2007):
    IWV = Σ_i w_i ℓ_i / Σ_i w_i, a weighted mean of the held-out source losses ℓ_i.

    Args:
        losses: (N,) per-utterance losses on held-out source utterances.
        weights: (N,) their importance weights (≥ 0, not all 0).
    """
    losses, weights = np.asarray(losses, dtype=np.float64), np.asarray(weights, dtype=np.float64)
    return float((weights * losses).sum() / weights.sum())


def importance_weights(source_features: np.ndarray, target_features: np.ndarray, folds: int = 5,
                       seed: int = 0) -> np.ndarray:
    """Density-ratio weights w(x) = (N_s / N_t) · d(x) / (1 − d(x)) of the source rows, d(x) = P(target | x) from
    a logistic-regression corpus discriminator on standardised features (DEV's discriminator).

    Cross-fitted: the weight of a source row comes from a discriminator trained on the *other* folds of the source
    rows and on all target rows, so that a row's own fit does not shrink its weight.

    Args:
        source_features: (N_s, D) held-out source embeddings.
        target_features: (N_t, D) target embeddings.
    Returns:
        (N_s,) weights.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source, target = np.asarray(source_features, np.float64), np.asarray(target_features, np.float64)
    weights = np.empty(len(source))
    splits = KFold(n_splits=min(folds, len(source)), shuffle=True, random_state=seed).split(source)
    for train_rows, held_rows in splits:
        features = np.concatenate([source[train_rows], target])
        domains = np.r_[np.zeros(len(train_rows)), np.ones(len(target))]
        discriminator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        discriminator.fit(features, domains)
        p_target = np.clip(discriminator.predict_proba(source[held_rows])[:, 1], 1e-6, 1 - 1e-6)
        weights[held_rows] = len(train_rows) / len(target) * p_target / (1 - p_target)
    return weights


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) per-row cross-entropy −log softmax(logits)[label]."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return -log_probabilities[np.arange(len(labels)), np.asarray(labels)]


def _subsample(count: int, max_samples: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(count) if count <= max_samples else np.sort(rng.choice(count, max_samples, replace=False))


def label_free_criteria(
    target_logits: np.ndarray,
    target_embeddings: np.ndarray,
    source_logits: np.ndarray | None = None,
    source_labels: np.ndarray | None = None,
    source_embeddings: np.ndarray | None = None,
    *,
    max_samples: int = 2000,
    seed: int = 0,
) -> dict[str, float]:
    """The criteria of `COMPUTED_HERE` from one evaluation's outputs; target labels are not an argument.

    Args:
        target_logits: (N_t, C) logits of the target utterances.
        target_embeddings: (N_t, D) their emotion embeddings.
        source_logits, source_labels, source_embeddings: (N_s, C), (N_s,), (N_s, D) of the held-out source
            utterances; without them (no held-out source) `dev_loss` and `iwv_loss` are left out.
        max_samples: at most this many rows per corpus enter SND (O(N²)) and DEV's discriminator.
    """
    rng = np.random.default_rng(seed)
    probabilities = softmax(target_logits)
    rows = _subsample(len(probabilities), max_samples, rng)
    criteria = {"target_im": information_maximization(probabilities)}
    if len(rows) >= 2:
        criteria["target_snd"] = soft_neighborhood_density(probabilities[rows])
        criteria["target_snd_embeddings"] = soft_neighborhood_density(np.asarray(target_embeddings)[rows])
    if source_logits is not None and source_labels is not None and source_embeddings is not None:
        labels = np.asarray(source_labels).reshape(-1)
        labelled = np.flatnonzero(labels >= 0)
        source_rows = labelled[_subsample(len(labelled), max_samples, rng)]
        if len(source_rows) >= 2 and len(rows) >= 2:
            weights = importance_weights(np.asarray(source_embeddings)[source_rows],
                                         np.asarray(target_embeddings)[rows], seed=seed)
            losses = cross_entropy(np.asarray(source_logits)[source_rows], labels[source_rows])
            criteria["dev_loss"] = dev_risk(losses, weights)
            criteria["iwv_loss"] = importance_weighted_loss(losses, weights)
    return criteria


# --- the rules of model selection -----------------------------------------------------------------------------------


def selection_metric_name(metric: str) -> str:
    """`metric` without the Trainer's `eval_` prefix."""
    return metric.removeprefix("eval_")


def is_label_free(metric: str) -> bool:
    """True for a held-out source metric or a label-free criterion; False for anything that may read target
    labels (e.g. `target_uar`, `target_loss`) or is unknown."""
    name = selection_metric_name(metric)
    return bool(re.match(r"^source_", name)) or name in CRITERIA


def check_model_selection(metric_for_best_model: str | None, load_best_model_at_end: bool) -> None:
    """Refuse target-label model selection: in UDA the target labels are unknown at training time."""
    if not (load_best_model_at_end or metric_for_best_model):
        return
    if metric_for_best_model and is_label_free(metric_for_best_model):
        return
    allowed = ", ".join(sorted(CRITERIA))
    raise ValueError(
        f"metric_for_best_model={metric_for_best_model!r}"
        + (" with load_best_model_at_end" if load_best_model_at_end else "")
        + ": model selection and early stopping may only use held-out SOURCE metrics or label-free criteria "
        f"({allowed}); target labels are unknown in unsupervised domain adaptation and using them would inflate "
        "the target results. docs/benchmarks.md measures how well each criterion picks models."
    )


def best_by(points: list[Mapping[str, Any]], criterion: str) -> Mapping[str, Any] | None:
    """The point (a dict holding `criterion`) with the best value of `criterion`; points without it are skipped.
    Ties go to the earliest point."""
    greater_is_better = CRITERIA[selection_metric_name(criterion)][0]
    scored = [p for p in points if p.get(criterion) is not None and np.isfinite(p[criterion])]
    if not scored:
        return None
    return max(scored, key=lambda p: p[criterion] if greater_is_better else -p[criterion])
