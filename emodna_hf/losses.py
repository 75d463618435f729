"""Loss terms of the Emo-DNA-style objective (reconstruction; see ``docs/method.md``).

The Emo-DNA paper's formulas are not available. Every term here is a documented reconstruction of what the
abstract names: a *contrastive decoupling* loss, *class-level* alignment on confident (pseudo-labelled) target
samples, and *corpus-level* alignment (DANN or multi-kernel MMD).

Conventions shared by all terms:

* Nothing here holds trainable parameters. The domain discriminator, the gradient reversal layer and the
  projection heads live in the model; these modules only turn tensors into scalar losses.
* Label tensors use ``-100`` (:data:`IGNORE_INDEX`, the Hugging Face convention) for "no label".
* When a term is undefined for a batch (no anchor with a positive, no selected target sample, fewer than two
  rows on one side, ...) it returns a scalar zero that is still connected to the autograd graph of its inputs.
  DistributedDataParallel then sees every parameter take part in the backward pass (no "unused parameter"
  error), and the value is never NaN.
* Similarities and kernels are computed in float32 with autocast disabled: with a temperature of 0.1 the logits
  reach +-10 and bfloat16 dot products would lose most of the differences that matter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = -100


def _graph_zero(*tensors: Tensor) -> Tensor:
    """A float32 scalar zero that depends on every input, so autograd and DDP see the inputs as used."""
    return sum((t.float().sum() for t in tensors), torch.zeros((), device=tensors[0].device)) * 0.0


def _no_autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


def _supervised_contrastive(
    anchors: Tensor, candidates: Tensor, positives: Tensor, in_denominator: Tensor, temperature: float
) -> Tensor:
    r"""Mean over anchor rows of :math:`-\frac{1}{|P(i)|}\sum_{p\in P(i)} \log \frac{e^{s_{ip}}}{\sum_{k\in D(i)} e^{s_{ik}}}`.

    ``anchors`` (N, D) and ``candidates`` (M, D) are unit vectors, :math:`s = a c^\top / \tau`. ``positives`` and
    ``in_denominator`` are (N, M) boolean masks; every positive must also be in the denominator. Rows without
    a positive are not anchors. Masks are used instead of indexing so that no host-device sync is needed and
    the "no anchor" case naturally yields a graph-connected zero. Callers guarantee that every row has at
    least one denominator entry, otherwise the backward pass of ``logsumexp`` would produce NaN.
    """
    sim = anchors @ candidates.T / temperature
    # logsumexp subtracts the row maximum internally, so large 1/tau cannot overflow.
    log_denominator = torch.logsumexp(sim.masked_fill(~in_denominator, float("-inf")), dim=1, keepdim=True)
    log_prob = torch.where(positives, sim - log_denominator, torch.zeros_like(sim))
    num_positives = positives.sum(dim=1)
    is_anchor = num_positives > 0
    per_anchor = -log_prob.sum(dim=1) / num_positives.clamp(min=1)
    return (per_anchor * is_anchor).sum() / is_anchor.sum().clamp(min=1)


class ContrastiveDecouplingLoss(nn.Module):
    r"""Supervised contrastive loss whose negatives also include the corpus-specific projections.

    Reconstruction of Emo-DNA's *contrastive decoupling* loss: SupCon (Khosla et al., 2020) over the emotion
    projections :math:`z = g(h)`, where the corpus-specific projections :math:`v = g'(u)` of *all* utterances
    (the anchor's own :math:`v_i` included) are extra negatives. Pulling same-emotion :math:`z` together while
    pushing every :math:`z` away from every :math:`v` separates emotion-relevant from corpus-specific features.

    .. math::
        \mathcal{L}_{cd} = -\frac{1}{|A|} \sum_{i \in A} \frac{1}{|P(i)|} \sum_{p \in P(i)}
        \log \frac{\exp(z_i \cdot z_p / \tau)}
                  {\sum_{a \neq i} \exp(z_i \cdot z_a / \tau) + \sum_{k} \exp(z_i \cdot v_k / \tau)}

    :math:`P(i)` are the other rows with the same label as row *i*; :math:`A` are the labelled rows with at least
    one positive. Unlabelled rows (label ``-100``) are neither anchors nor positives but stay in the
    denominator through their :math:`z_a` (and :math:`v_a`), as "other samples". Target rows whose pseudo-label
    was selected can be passed with that pseudo-label, which makes positives cross corpora.

    Args:
        temperature: :math:`\tau`. 0.1 follows the suggested reconstruction (SupCon uses 0.07-0.1).

    Inputs:
        - z: (N, D) emotion projections. L2-normalised here (a no-op if the model already normalises).
        - labels: (N,) integer emotion labels, ``-100`` for unlabelled rows.
        - v: (M, D) corpus-specific projections, normally M = N (the same utterances). L2-normalised here.

    Output: scalar. A graph-connected zero when no row has a positive (e.g. one sample per class, all
    unlabelled, or a single row).
    """

    def __init__(self, temperature: float = 0.1) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def forward(self, z: Tensor, labels: Tensor, v: Tensor) -> Tensor:
        n = z.shape[0]
        if n + v.shape[0] < 2:  # no denominator entry at all; nothing to contrast
            return _graph_zero(z, v)
        with _no_autocast(z.device):
            z = F.normalize(z.float(), dim=1)
            v = F.normalize(v.float(), dim=1)
            not_self = ~torch.eye(n, dtype=torch.bool, device=z.device)
            labelled = labels != IGNORE_INDEX
            same_label = (labels[:, None] == labels[None, :]) & labelled[:, None] & not_self
            candidates = torch.cat([z, v], dim=0)
            positives = torch.cat(
                [same_label, torch.zeros(n, v.shape[0], dtype=torch.bool, device=z.device)], 1
            )
            in_denominator = torch.cat([not_self, torch.ones_like(positives[:, n:])], dim=1)
            return _supervised_contrastive(z, candidates, positives, in_denominator, self.temperature)


class CrossCorpusClassAlignmentLoss(nn.Module):
    r"""Contrastive class-level alignment of confident target samples to same-class source samples.

    Anchors are the selected target emotion projections :math:`z^t_j` (``mask[j]``) with pseudo-label
    :math:`\hat y_j`; positives are the source projections with :math:`y^s_p = \hat y_j`; the denominator holds
    all source projections (and, with ``use_target_pairs``, the other selected targets):

    .. math::
        \mathcal{L}_{ca} = -\frac{1}{|A|} \sum_{j \in A} \frac{1}{|P(j)|} \sum_{p \in P(j)}
        \log \frac{\exp(z^t_j \cdot z^s_p / \tau)}{\sum_{k \in D(j)} \exp(z^t_j \cdot z_k / \tau)}

    By default only source rows are positives, because their labels are ground truth, whereas a target-target
    positive pair joins two possibly wrong pseudo-labels and feeds confirmation bias. With
    ``use_target_pairs=True`` the other selected targets join :math:`D(j)`, and those sharing
    :math:`\hat y_j` also join :math:`P(j)` (SupCon over source plus selected targets, target anchors only).

    Args:
        temperature: :math:`\tau`.
        use_target_pairs: also contrast selected targets with each other (see above).

    Inputs (source first, then target, as every class-level loss here):
        - z_source: (N, D) source emotion projections (L2-normalised here).
        - source_labels: (N,) integer labels, ``-100`` rows are only in the denominator.
        - z_target: (B, D) target emotion projections (L2-normalised here).
        - pseudo_labels: (B,) integer pseudo-labels; only rows with ``mask`` are used.
        - mask: (B,) bool, the confident rows (see :mod:`emodna_hf.pseudo_labels`).

    Output: scalar; a graph-connected zero when no target is selected, no selected class occurs in the source
    batch, or the source batch is empty.
    """

    def __init__(self, temperature: float = 0.1, use_target_pairs: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        self.use_target_pairs = use_target_pairs

    def forward(
        self, z_source: Tensor, source_labels: Tensor, z_target: Tensor, pseudo_labels: Tensor, mask: Tensor
    ) -> Tensor:
        if z_source.shape[0] == 0 or z_target.shape[0] == 0:
            return _graph_zero(z_target, z_source)
        with _no_autocast(z_target.device):
            z_target = F.normalize(z_target.float(), dim=1)
            z_source = F.normalize(z_source.float(), dim=1)
            mask = mask.bool()
            positives = (pseudo_labels[:, None] == source_labels[None, :]) & mask[:, None]
            positives &= (source_labels != IGNORE_INDEX)[None, :]
            in_denominator = torch.ones_like(positives)
            candidates = z_source
            if self.use_target_pairs:
                b = z_target.shape[0]
                other_selected = (
                    mask[:, None] & mask[None, :] & ~torch.eye(b, dtype=torch.bool, device=mask.device)
                )
                same_pseudo = other_selected & (pseudo_labels[:, None] == pseudo_labels[None, :])
                candidates = torch.cat([z_source, z_target], dim=0)
                positives = torch.cat([positives, same_pseudo], dim=1)
                in_denominator = torch.cat([in_denominator, other_selected], dim=1)
            return _supervised_contrastive(z_target, candidates, positives, in_denominator, self.temperature)


class ClassPrototypeAlignmentLoss(nn.Module):
    r"""Squared distance between normalised source and selected-target class prototypes.

    For every class *c* present on both sides of the batch, the prototype is the L2-normalised mean of the
    embeddings of that class (source: ground truth; target: selected pseudo-labels):

    .. math::
        \mu^s_c = \frac{\bar f^s_c}{\lVert \bar f^s_c \rVert},\quad
        \mu^t_c = \frac{\bar f^t_c}{\lVert \bar f^t_c \rVert},\quad
        \mathcal{L}_{proto} = \frac{1}{|C_{st}|} \sum_{c \in C_{st}} \lVert \mu^s_c - \mu^t_c \rVert^2
                            = \frac{1}{|C_{st}|} \sum_{c \in C_{st}} 2 - 2 \cos(\bar f^s_c, \bar f^t_c)

    Prototypes are per batch (no EMA state), and gradients reach both sides. The average over shared classes
    (rather than a sum) keeps the scale in [0, 4] whatever the number of classes.

    Args:
        num_classes: number of emotion classes C (labels are in ``[0, C)``).

    Inputs:
        - source_features: (N, D) source embeddings.
        - source_labels: (N,) integer labels, ``-100`` rows ignored.
        - target_features: (B, D) target embeddings.
        - pseudo_labels: (B,) integer pseudo-labels.
        - mask: (B,) bool, the selected target rows.

    Output: scalar; a graph-connected zero when no class is shared (including "no target selected").
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes

    def _normalised_class_means(
        self, features: Tensor, labels: Tensor, keep: Tensor
    ) -> tuple[Tensor, Tensor]:
        # One-hot weights give all class sums in one matmul without a host sync. The norm of the mean equals
        # the norm of the sum up to the count, so normalising the sum gives the normalised mean directly.
        weights = F.one_hot(labels.clamp(min=0), self.num_classes).float() * keep[:, None].float()
        sums = weights.T @ features.float()
        return F.normalize(sums, dim=1), weights.sum(dim=0) > 0

    def forward(
        self,
        source_features: Tensor,
        source_labels: Tensor,
        target_features: Tensor,
        pseudo_labels: Tensor,
        mask: Tensor,
    ) -> Tensor:
        with _no_autocast(source_features.device):
            mu_s, present_s = self._normalised_class_means(
                source_features, source_labels, source_labels != IGNORE_INDEX
            )
            mu_t, present_t = self._normalised_class_means(target_features, pseudo_labels, mask.bool())
            shared = present_s & present_t
            distances = ((mu_s - mu_t) ** 2).sum(dim=1)
            return (distances * shared).sum() / shared.sum().clamp(min=1)


def pseudo_label_cross_entropy(logits: Tensor, pseudo_labels: Tensor, mask: Tensor) -> Tensor:
    r"""Self-training term: cross-entropy on the selected target rows only.

    :math:`\mathcal{L}_{pl} = \frac{1}{|S|} \sum_{j \in S} \mathrm{CE}(\text{logits}_j, \hat y_j)` with
    :math:`S = \{j : \text{mask}_j\}`. Returns a graph-connected zero when :math:`S` is empty. Pseudo-labels are
    integer targets, so no gradient flows through the pseudo-labelling itself.

    Args:
        logits: (B, C) emotion logits of the target rows.
        pseudo_labels: (B,) integer pseudo-labels.
        mask: (B,) bool, the selected rows.
    """
    mask = mask.bool()
    per_row = F.cross_entropy(logits.float(), pseudo_labels.clamp(min=0), reduction="none")
    return (per_row * mask).sum() / mask.sum().clamp(min=1)


class DomainAdversarialLoss(nn.Module):
    r"""Cross-entropy of domain-discriminator logits against corpus labels (DANN, Ganin et al. 2016).

    The gradient reversal layer sits upstream, in the objective's `CorpusDiscriminator` (between the emotion
    embedding and the discriminator), so minimising this loss trains the discriminator while the reversed gradient makes the
    emotion features corpus-invariant. The loss is averaged per corpus first and then over the corpora present,

    .. math::
        \mathcal{L}_{adv} = \frac{1}{|K|} \sum_{k \in K} \frac{1}{n_k} \sum_{i : d_i = k} \ell(D(h_i), d_i),

    which equals the plain mean for equal-size source/target halves and, as tllib's
    ``0.5 * (BCE_s + BCE_t)``, keeps an uneven batch from favouring one corpus. :math:`\ell` is binary
    cross-entropy for logits of shape (N,) or (N, 1) with labels in {0, 1}, and softmax cross-entropy for
    (N, K), K >= 2 (multi-corpus).

    After each call, ``domain_discriminator_accuracy`` holds the detached plain accuracy of the discriminator on
    that batch (a 0-dim tensor; call ``.item()`` only when logging, to avoid a sync per step). Near 0.5 for two
    corpora means the emotion features no longer reveal the corpus.

    Inputs:
        - domain_logits: (N,), (N, 1) or (N, K) discriminator logits.
        - domain_labels: (N,) integer corpus ids (0 = source, 1 = target for single-source UDA).
    """

    domain_discriminator_accuracy: Tensor | None

    def __init__(self) -> None:
        super().__init__()
        self.domain_discriminator_accuracy = None

    def forward(self, domain_logits: Tensor, domain_labels: Tensor) -> Tensor:
        domain_labels = domain_labels.long()
        with _no_autocast(domain_logits.device):
            logits = domain_logits.float()
            if logits.dim() == 1 or logits.shape[1] == 1:
                logits = logits.reshape(-1)
                per_row = F.binary_cross_entropy_with_logits(logits, domain_labels.float(), reduction="none")
                predictions = (logits > 0).long()
                num_domains = 2
            else:
                per_row = F.cross_entropy(logits, domain_labels, reduction="none")
                predictions = logits.argmax(dim=1)
                num_domains = logits.shape[1]
            one_hot = F.one_hot(domain_labels, num_domains).float()
            counts = one_hot.sum(dim=0)
            per_domain_mean = (one_hot * per_row[:, None]).sum(dim=0) / counts.clamp(min=1)
            loss = per_domain_mean.sum() / (counts > 0).sum().clamp(min=1)
        self.domain_discriminator_accuracy = (predictions == domain_labels).float().mean().detach()
        return loss


class MultiKernelMMDLoss(nn.Module):
    r"""Multi-kernel Gaussian MMD² between source and target features (DAN, Long et al. 2015).

    With the pooled sample :math:`X = \{x^s_i\}_{i=1}^{n} \cup \{x^t_j\}_{j=1}^{m}`, the base bandwidth is the
    mean squared pairwise distance over distinct pooled pairs,
    :math:`\sigma^2 = \frac{1}{|X|(|X|-1)}\sum_{a \neq b} \lVert x_a - x_b \rVert^2`, computed on **detached**
    features (the encoder cannot shrink or inflate the kernel to fake alignment), and the kernel is the
    uniform convex combination (DAN constrains :math:`\sum_u \beta_u = 1`) of Gaussians at multiples of it:

    .. math::
        k(x, y) = \frac{1}{U} \sum_{u=1}^{U} \exp\!\left(-\frac{\lVert x - y \rVert^2}{\alpha_u \sigma^2}\right)

    Estimators of :math:`\mathrm{MMD}^2 = \mathbb{E}k(x^s, x^{s\prime}) + \mathbb{E}k(x^t, x^{t\prime})
    - 2\,\mathbb{E}k(x^s, x^t)`:

    * ``unbiased=False`` (default), the biased V-statistic: means over *all* pairs, diagonals included. Always
      >= 0, exactly 0 for identical samples, lower variance; its O(1/n) positive bias is constant w.r.t. the
      alignment and harmless as a training signal. This is the quadratic form used by tllib's MK-MMD.
    * ``unbiased=True``, the U-statistic: within-domain means over distinct pairs (diagonals excluded). Unbiased
      but can be negative.

    Unequal batch sizes n != m are handled (each term is its own mean).

    Args:
        kernel_multipliers: :math:`\alpha_u`, the bandwidth multipliers.
        unbiased: which estimator (see above).

    Inputs: source (n, D) and target (m, D) features. Output: scalar; a graph-connected zero if n < 2 or m < 2.
    """

    def __init__(
        self, kernel_multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0), unbiased: bool = False
    ) -> None:
        super().__init__()
        if len(kernel_multipliers) == 0 or any(a <= 0 for a in kernel_multipliers):
            raise ValueError(f"kernel_multipliers must be non-empty and positive, got {kernel_multipliers}")
        self.kernel_multipliers = tuple(float(a) for a in kernel_multipliers)
        self.unbiased = unbiased

    def forward(self, source: Tensor, target: Tensor) -> Tensor:
        n, m = source.shape[0], target.shape[0]
        if n < 2 or m < 2:
            return _graph_zero(source, target)
        with _no_autocast(source.device):
            pooled = torch.cat([source, target], dim=0).float()
            # Squared distances from the Gram matrix (cdist's backward is NaN on the zero diagonal).
            sq_norms = (pooled * pooled).sum(dim=1)
            sq_dist = (sq_norms[:, None] + sq_norms[None, :] - 2 * pooled @ pooled.T).clamp(min=0)
            total = n + m
            sigma2 = (sq_dist.detach().sum() / (total * (total - 1))).clamp(min=1e-12)
            kernel = sum(torch.exp(-sq_dist / (a * sigma2)) for a in self.kernel_multipliers)
            kernel = kernel / len(self.kernel_multipliers)
            k_ss, k_tt, k_st = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
            if self.unbiased:
                term_ss = (k_ss.sum() - k_ss.diagonal().sum()) / (n * (n - 1))
                term_tt = (k_tt.sum() - k_tt.diagonal().sum()) / (m * (m - 1))
            else:
                term_ss, term_tt = k_ss.mean(), k_tt.mean()
            return term_ss + term_tt - 2 * k_st.mean()


def corpus_classification_loss(corpus_logits: Tensor, corpus_labels: Tensor) -> Tensor:
    r"""Cross-entropy of the corpus-specific branch's corpus logits against corpus ids.

    :math:`\mathcal{L}_{spec} = \frac{1}{N}\sum_i \mathrm{CE}(D_c(u_i), d_i)`. No gradient reversal: this term
    *trains* the corpus-specific encoder :math:`E_c` to carry corpus identity, the counterpart of the
    contrastive decoupling loss that pushes the emotion projections away from it.

    Args:
        corpus_logits: (N, K) logits over the K corpora (K = 2 for single-source UDA).
        corpus_labels: (N,) integer corpus ids.
    """
    return F.cross_entropy(corpus_logits.float(), corpus_labels.long())


def grl_coefficient(progress: float, gamma: float = 10.0, max_value: float = 1.0) -> float:
    r"""DANN schedule for the gradient-reversal coefficient: :math:`\lambda_p = m \left(\frac{2}{1 + e^{-\gamma p}} - 1\right)`.

    ``progress`` :math:`p` is the fraction of training done, clamped to [0, 1]. The coefficient rises smoothly
    from 0 at p = 0 (the discriminator's noisy early gradients do not disturb the encoder) to
    :math:`m \tanh(\gamma / 2)` at p = 1, i.e. 0.99991 m for the default gamma = 10 (Ganin et al., 2016).
    """
    p = min(max(float(progress), 0.0), 1.0)
    return max_value * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)
