"""Adaptive-threshold pseudo-labelling of unlabelled target samples (reconstruction; see ``docs/method.md`` §3.4).

Emo-DNA selects "confident" target samples with an *adaptive threshold* before class-level alignment; the rule
itself is not published. Two rules are here: :class:`CurriculumPseudoLabeler` (the default: class-wise thresholds
that select a share of the target growing with training progress) and :class:`AdaptiveThresholdPseudoLabeler`
(FreeMatch's self-adaptive thresholding, Wang et al., ICLR 2023, with a fixed-threshold mode for the "fixed
instead of adaptive" ablation).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def momentum_for(total_updates: int, time_constant: float) -> float:
    """EMA momentum whose time constant 1 / (1 − λ) is `time_constant` of `total_updates` (at least one update).

    A run of 800 updates with `time_constant=0.125` gives λ = 0.99 (time constant 100 updates); a run of 8000
    gives 0.999. So the thresholds move the same way in training *progress* whatever the number of steps.
    """
    return 1.0 - 1.0 / max(1.0, time_constant * total_updates)


class AdaptiveThresholdPseudoLabeler(nn.Module):
    r"""FreeMatch-style self-adaptive, class-wise confidence thresholds.

    With target class probabilities :math:`p_b \in \Delta^{C-1}` of a batch of size B, each :meth:`update`
    applies two exponential moving averages with momentum :math:`\lambda`:

    .. math::
        \tau_t = \lambda \tau_{t-1} + (1 - \lambda) \frac{1}{B} \sum_b \max_c p_b(c), \qquad
        \tilde p_t = \lambda \tilde p_{t-1} + (1 - \lambda) \frac{1}{B} \sum_b p_b,

    starting from :math:`\tau_0 = 1/C` and :math:`\tilde p_0 = (1/C, \dots, 1/C)` as in FreeMatch. The class-wise
    thresholds are

    .. math::
        \tau_t(c) = \frac{\tilde p_t(c)}{\max_{c'} \tilde p_t(c')}\, \tau_t,

    and :meth:`select` keeps target *j* iff :math:`\max_c p_j(c) \ge \tau_t(\hat y_j)` with
    :math:`\hat y_j = \arg\max_c p_j(c)`.

    The global threshold follows the model's average confidence, so it starts low (every sample is selected
    while the model knows little, as in FreeMatch) and rises as the model grows confident. The class-wise
    factor lowers the bar for classes the model *rarely predicts* on the target. That matters for binary
    arousal/valence, whose label priors differ a lot between corpora: a classifier trained on a source whose
    majority is "high arousal" predicts that class on most target samples, a single global threshold would then
    select almost only majority-class pseudo-labels, and class-level alignment would collapse onto one class.
    The flip side: for C = 2 the maximum probability is always >= 0.5, so once the rare class's threshold has
    fallen below 0.5 *every* sample predicted as that class is selected; its pseudo-labels are then as noisy
    as the model's minority predictions (FreeMatch has no floor; neither has this reconstruction).

    Call order and timing. :meth:`select` is a pure function of the current state. The intended order per
    training step is FreeMatch's: first ``update(probs)`` with the batch's (detached, all-gathered) target
    probabilities, then ``select(probs)``, so the thresholds include the current batch with weight
    :math:`1 - \lambda`. :meth:`update` can run from the first step, during a warm-up in which pseudo-labels are
    not yet used, so that the thresholds have adapted by the time selection starts.

    Distributed training. Call :meth:`update` with probabilities gathered across processes (e.g.
    ``accelerator.gather``), so that every process holds the same state; :meth:`select` can take the local
    batch. The state lives in buffers, so it is part of ``state_dict()``; note that DDP with the default
    ``broadcast_buffers=True`` overwrites module buffers from rank 0 at each forward when this module is a
    submodule of the wrapped model, which is harmless only if the states agree, as they do with gathered inputs.

    Args:
        num_classes: number of classes C.
        momentum: EMA momentum :math:`\lambda`. FreeMatch uses 0.999 for runs of about a million steps; its time
            constant :math:`1/(1-\lambda)` = 1000 steps would leave the thresholds near their initial value for
            a whole run of a few hundred steps (0.999^300 = 0.74 of the weight still on :math:`\tau_0`). The
            default 0.99 has a time constant of 100 steps (half-life 69 steps): after 300 steps 95% of the
            weight is on observed batches, while each estimate still averages about 100 batches.
        fixed_threshold: if set, every class uses this constant threshold instead (the ablation "fixed instead
            of adaptive"). :meth:`update` still tracks the statistics, which can be logged, but they do not
            affect selection.

    Buffers (restored exactly by ``load_state_dict``): ``global_confidence`` (0-dim, :math:`\tau_t`) and
    ``class_marginals`` ((C,), :math:`\tilde p_t`), float32. :meth:`update` refuses half-precision buffers (after
    e.g. ``model.to(torch.bfloat16)``): an EMA step of :math:`(1-\lambda)\Delta` is below bfloat16's resolution
    and would silently be lost.
    """

    global_confidence: Tensor
    class_marginals: Tensor

    def __init__(
        self, num_classes: int, momentum: float = 0.99, fixed_threshold: float | None = None
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if fixed_threshold is not None and not 0.0 < fixed_threshold <= 1.0:
            raise ValueError(f"fixed_threshold must be in (0, 1], got {fixed_threshold}")
        self.num_classes = num_classes
        self.momentum = momentum
        self.fixed_threshold = fixed_threshold
        self.register_buffer("global_confidence", torch.tensor(1.0 / num_classes))
        self.register_buffer("class_marginals", torch.full((num_classes,), 1.0 / num_classes))

    def _check(self, probs: Tensor) -> None:
        if probs.dim() != 2 or probs.shape[1] != self.num_classes:
            raise ValueError(
                f"expected probabilities of shape (B, {self.num_classes}), got {tuple(probs.shape)}"
            )

    @torch.no_grad()
    def update(self, probs: Tensor, momentum: float | None = None) -> None:
        """Move the EMAs towards this batch's mean confidence and mean class probabilities.

        ``probs``: (B, C) softmax probabilities of target samples, gathered across processes. An empty batch
        leaves the state unchanged. ``momentum`` overrides the constructor's for this update (a momentum
        derived from the length of training, see :func:`momentum_for`).
        """
        self._check(probs)
        if self.class_marginals.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"pseudo-labeler state must stay float32, found {self.class_marginals.dtype}")
        if probs.shape[0] == 0:
            return
        probs = probs.detach().to(self.class_marginals)
        weight = 1.0 - (self.momentum if momentum is None else momentum)
        self.global_confidence.lerp_(probs.max(dim=1).values.mean(), weight)
        self.class_marginals.lerp_(probs.mean(dim=0), weight)

    @torch.no_grad()
    def thresholds(self) -> Tensor:
        """(C,) per-class thresholds :math:`\\tau_t(c)`, or the fixed threshold for every class."""
        if self.fixed_threshold is not None:
            return torch.full_like(self.class_marginals, self.fixed_threshold)
        return self.class_marginals / self.class_marginals.max() * self.global_confidence

    @property
    def global_threshold(self) -> float:
        """The global threshold :math:`\\tau_t` (or the fixed one), as a float for logging."""
        if self.fixed_threshold is not None:
            return self.fixed_threshold
        return float(self.global_confidence)

    @torch.no_grad()
    def select(self, probs: Tensor) -> tuple[Tensor, Tensor]:
        """Pseudo-label and select confident samples with the current thresholds.

        ``probs``: (B, C) probabilities. Returns ``pseudo_labels`` (B,) long, the argmax for *every* row, and
        ``mask`` (B,) bool, True for the rows whose confidence reaches their class's threshold. Both are on
        ``probs``' device.
        """
        self._check(probs)
        confidence, pseudo_labels = probs.detach().float().max(dim=1)
        thresholds = self.thresholds().to(confidence)
        return pseudo_labels, confidence >= thresholds[pseudo_labels]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, momentum={self.momentum}, fixed_threshold={self.fixed_threshold}"


class CurriculumPseudoLabeler(nn.Module):
    r"""Class-wise adaptive thresholds that select a share of the target growing with *training progress*.

    The rule (our reconstruction of Emo-DNA's "adaptive threshold"; docs/method.md §3.4) depends on where training
    is, never on how many steps it has taken, so a short and a long run select the same share at the same point.
    A memory keeps the (detached, all-gathered) class probabilities of the last ``memory_size`` target rows seen.
    At training progress :math:`p` the share to select is

    .. math::
        q(p) = q_{max} \cdot \mathrm{clip}\Big(\frac{p - p_0}{p_1 - p_0}, 0, 1\Big)

    (``warmup`` :math:`p_0`, ``ramp`` :math:`p_1`). It is split between the classes in proportion to how often the
    model predicts each in the memory, :math:`\pi_c` = share of remembered rows whose argmax is *c*, so a corpus
    whose classes are imbalanced keeps its imbalance (an equal split would force the source's balance onto it).
    Class *c*'s threshold is the :math:`k_c`-th largest remembered :math:`p(c)`, with
    :math:`k_c = \mathrm{round}(q(p) \cdot M \cdot \pi_c)` over the M remembered rows (no threshold, nothing
    selected, when :math:`k_c = 0`):

    .. math::
        \tau_c(p) = \mathrm{top}_{k_c}\{\, p_m(c) : m \in \text{memory} \,\}.

    A row qualifies for class *c* when :math:`p_j(c) \ge \tau_c`; it is selected when it qualifies for some class,
    and its pseudo-label is the qualifying class with the highest probability (the argmax whenever it qualifies).
    Thresholds rank rows *within* each class, so a class the model is less sure of (a minority or a shifted class)
    gets its share of pseudo-labels at a lower bar: class-balanced curriculum selection (as in FlexMatch and
    curriculum self-training), with the thresholds adapting to the model's current confidences.

    Interface as :class:`AdaptiveThresholdPseudoLabeler`: ``update(probs)`` with gathered probabilities, then
    ``select(probs, progress)``. State (memory, fill count, write position) lives in buffers, restored exactly by
    ``load_state_dict``.

    Args:
        num_classes: number of classes C.
        memory_size: remembered target rows M (use at most the target corpus's size, so old predictions leave).
        warmup, ramp: progress at which selection starts and at which it reaches ``max_fraction``.
        max_fraction: the largest selected share :math:`q_{max}`.
    """

    memory: Tensor
    memory_count: Tensor
    memory_position: Tensor

    def __init__(self, num_classes: int, memory_size: int = 2048, warmup: float = 0.2, ramp: float = 0.8,
                 max_fraction: float = 1.0, confidence_floor: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if memory_size < 1:
            raise ValueError(f"memory_size must be >= 1, got {memory_size}")
        if not 0.0 <= warmup <= ramp <= 1.0:
            raise ValueError(f"need 0 <= warmup <= ramp <= 1, got warmup={warmup}, ramp={ramp}")
        if not 0.0 < max_fraction <= 1.0:
            raise ValueError(f"max_fraction must be in (0, 1], got {max_fraction}")
        if not 0.0 <= confidence_floor <= 1.0:
            raise ValueError(f"confidence_floor must be in [0, 1], got {confidence_floor}")
        self.num_classes, self.warmup, self.ramp, self.max_fraction = num_classes, warmup, ramp, max_fraction
        self.confidence_floor = confidence_floor
        self.register_buffer("memory", torch.zeros(memory_size, num_classes))
        self.register_buffer("memory_count", torch.tensor(0, dtype=torch.long))
        self.register_buffer("memory_position", torch.tensor(0, dtype=torch.long))

    def _check(self, probs: Tensor) -> None:
        if probs.dim() != 2 or probs.shape[1] != self.num_classes:
            raise ValueError(f"expected probabilities of shape (B, {self.num_classes}), got {tuple(probs.shape)}")

    @torch.no_grad()
    def update(self, probs: Tensor) -> None:
        """Remember this batch's target probabilities ``(B, C)`` (gathered across processes), oldest out first."""
        self._check(probs)
        size = self.memory.shape[0]
        probs = probs.detach().to(self.memory)[-size:]
        rows = (self.memory_position + torch.arange(len(probs), device=self.memory.device)) % size
        self.memory[rows] = probs
        self.memory_position.copy_((self.memory_position + len(probs)) % size)
        self.memory_count.copy_(torch.clamp(self.memory_count + len(probs), max=size))

    def fraction(self, progress: float) -> float:
        """The share of the target to select at training progress ``progress`` in [0, 1]."""
        if progress < self.warmup:
            return 0.0
        if self.ramp <= self.warmup:
            return self.max_fraction
        return self.max_fraction * min(1.0, (progress - self.warmup) / (self.ramp - self.warmup))

    @torch.no_grad()
    def thresholds(self, progress: float = 1.0) -> Tensor:
        """(C,) class thresholds at ``progress``; ``inf`` for a class that selects nothing."""
        remembered = self.memory[: int(self.memory_count)]
        thresholds = torch.full((self.num_classes,), float("inf"), device=self.memory.device)
        if not len(remembered):
            return thresholds
        shares = torch.bincount(remembered.argmax(1), minlength=self.num_classes).float() / len(remembered)
        counts = torch.round(self.fraction(progress) * len(remembered) * shares).long().tolist()
        for c, k in enumerate(counts):
            if k > 0:
                thresholds[c] = torch.topk(remembered[:, c], k).values[-1].clamp(min=self.confidence_floor)
        return thresholds

    @property
    def global_threshold(self) -> float:
        """Not defined for this rule (the per-class thresholds are what selects): NaN, for uniform logging."""
        return float("nan")

    @torch.no_grad()
    def select(self, probs: Tensor, progress: float = 1.0) -> tuple[Tensor, Tensor]:
        """``(pseudo_labels, mask)`` for ``probs`` ``(B, C)`` at ``progress`` (see the class docstring)."""
        self._check(probs)
        probs = probs.detach().float()
        qualifies = probs >= self.thresholds(progress).to(probs)[None, :]
        selected = qualifies.any(1)
        best_qualifying = torch.where(qualifies, probs, torch.full_like(probs, -1.0)).argmax(1)
        return torch.where(selected, best_qualifying, probs.argmax(1)), selected

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, memory_size={self.memory.shape[0]}, warmup={self.warmup}, "
                f"ramp={self.ramp}, max_fraction={self.max_fraction}")
