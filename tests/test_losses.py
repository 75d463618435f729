import math

import pytest
import torch
import torch.nn.functional as F

from emodna_hf.losses import (
    ClassPrototypeAlignmentLoss,
    ContrastiveDecouplingLoss,
    CrossCorpusClassAlignmentLoss,
    DomainAdversarialLoss,
    MultiKernelMMDLoss,
    corpus_classification_loss,
    grl_coefficient,
    pseudo_label_cross_entropy,
)


def _leaf(*shape: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator).requires_grad_()


def _assert_graph_zero(loss: torch.Tensor, *inputs: torch.Tensor) -> None:
    """The documented edge-case value: exactly 0, finite, connected to every input with finite zero grads."""
    assert loss.dim() == 0 and loss.item() == 0.0
    assert loss.grad_fn is not None
    grads = torch.autograd.grad(loss, inputs, allow_unused=False)
    for grad in grads:
        assert torch.isfinite(grad).all() and (grad == 0).all()


# ---------------------------------------------------------------- contrastive decoupling


def _supcon_loop(z, labels, v, tau):
    """Naive transcription of the docstring formula, one anchor and one positive at a time."""
    z = F.normalize(z, dim=1)
    v = F.normalize(v, dim=1)
    per_anchor = []
    for i in range(len(z)):
        if labels[i] == -100:
            continue
        positives = [p for p in range(len(z)) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(math.exp(z[i] @ z[a] / tau) for a in range(len(z)) if a != i)
        denominator += sum(math.exp(z[i] @ v[k] / tau) for k in range(len(v)))
        terms = [math.log(math.exp(z[i] @ z[p] / tau) / denominator) for p in positives]
        per_anchor.append(-sum(terms) / len(terms))
    return sum(per_anchor) / len(per_anchor)


def test_contrastive_decoupling_matches_naive_loop():
    z, v = _leaf(7, 5, seed=1), _leaf(7, 5, seed=2)
    # class 2 has one sample (no positive, but in denominators); row 5 unlabelled; three classes.
    labels = torch.tensor([0, 1, 0, 1, 2, -100, 0])
    loss = ContrastiveDecouplingLoss(temperature=0.5)(z, labels, v)
    expected = _supcon_loop(z.detach().double(), labels.tolist(), v.detach().double(), 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_decoupling_corpus_negatives_matter():
    """Moving v onto z must raise the loss: corpus projections are negatives of the emotion projections."""
    z = _leaf(6, 4, seed=3)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    loss_fn = ContrastiveDecouplingLoss(temperature=0.1)
    far = loss_fn(z, labels, -z.detach())
    near = loss_fn(z, labels, z.detach())
    assert near.item() > far.item()


def test_contrastive_decoupling_gradients_reach_z_and_v():
    z, v = _leaf(5, 3, seed=4), _leaf(5, 3, seed=5)
    loss = ContrastiveDecouplingLoss()(z, torch.tensor([0, 1, 0, 1, -100]), v)
    grad_z, grad_v = torch.autograd.grad(loss, (z, v))
    assert grad_z.abs().sum() > 0 and grad_v.abs().sum() > 0


def test_contrastive_decoupling_is_stable_at_tiny_temperature():
    z, v = _leaf(6, 4, seed=6), _leaf(6, 4, seed=7)
    loss = ContrastiveDecouplingLoss(temperature=1e-3)(z, torch.tensor([0, 0, 1, 1, 2, 2]), v)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all() and torch.isfinite(v.grad).all()


@pytest.mark.parametrize(
    "labels",
    [
        torch.tensor([0, 1, 2, 3]),  # one sample per class: no positive anywhere
        torch.tensor([-100, -100, -100, -100]),  # all unlabelled
    ],
)
def test_contrastive_decoupling_without_anchors_is_graph_zero(labels):
    z, v = _leaf(4, 3, seed=8), _leaf(4, 3, seed=9)
    _assert_graph_zero(ContrastiveDecouplingLoss()(z, labels, v), z, v)


def test_contrastive_decoupling_single_row_is_graph_zero():
    z, v = _leaf(1, 3), _leaf(1, 3, seed=1)
    _assert_graph_zero(ContrastiveDecouplingLoss()(z, torch.tensor([0]), v), z, v)


def test_contrastive_decoupling_single_class_batch_is_finite():
    z, v = _leaf(4, 3, seed=10), _leaf(4, 3, seed=11)
    loss = ContrastiveDecouplingLoss()(z, torch.zeros(4, dtype=torch.long), v)
    assert torch.isfinite(loss) and loss.item() > 0


# ---------------------------------------------------------------- class-level alignment


def _cross_corpus_loop(zt, pseudo, mask, zs, ys, tau, use_target_pairs):
    zt, zs = F.normalize(zt, dim=1), F.normalize(zs, dim=1)
    per_anchor = []
    for j in range(len(zt)):
        if not mask[j]:
            continue
        candidates = [(zs[k], ys[k] == pseudo[j] and ys[k] != -100) for k in range(len(zs))]
        if use_target_pairs:
            candidates += [(zt[k], pseudo[k] == pseudo[j]) for k in range(len(zt)) if k != j and mask[k]]
        positives = [c for c, is_pos in candidates if is_pos]
        if not positives:
            continue
        denominator = sum(math.exp(zt[j] @ c / tau) for c, _ in candidates)
        per_anchor.append(
            -sum(math.log(math.exp(zt[j] @ p / tau) / denominator) for p in positives) / len(positives)
        )
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("use_target_pairs", [False, True])
def test_cross_corpus_alignment_matches_naive_loop(use_target_pairs):
    zt, zs = _leaf(5, 4, seed=12), _leaf(6, 4, seed=13)
    pseudo = torch.tensor([0, 1, 2, 0, 1])  # class 2 absent from the source batch
    mask = torch.tensor([True, True, True, False, True])
    ys = torch.tensor([0, 0, 1, 1, -100, 0])
    loss = CrossCorpusClassAlignmentLoss(0.2, use_target_pairs)(zs, ys, zt, pseudo, mask)
    expected = _cross_corpus_loop(
        zt.detach().double(),
        pseudo.tolist(),
        mask.tolist(),
        zs.detach().double(),
        ys.tolist(),
        0.2,
        use_target_pairs,
    )
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    grad_t, grad_s = torch.autograd.grad(loss, (zt, zs))
    assert grad_t[3].abs().sum() == 0  # unselected target row gets no gradient
    assert grad_t[0].abs().sum() > 0 and grad_s.abs().sum() > 0


def test_cross_corpus_alignment_edge_cases_are_graph_zero():
    zt, zs = _leaf(3, 4, seed=14), _leaf(4, 4, seed=15)
    loss_fn = CrossCorpusClassAlignmentLoss()
    pseudo, ys = torch.tensor([0, 1, 1]), torch.tensor([0, 0, 0, 0])
    no_selection = loss_fn(zs, ys, zt, pseudo, torch.zeros(3, dtype=torch.bool))
    _assert_graph_zero(no_selection, zt, zs)
    no_shared_class = loss_fn(zs, ys, zt, pseudo, torch.tensor([False, True, True]))
    _assert_graph_zero(no_shared_class, zt, zs)
    empty_source = loss_fn(zs[:0], ys[:0], zt, pseudo, torch.ones(3, dtype=torch.bool))
    _assert_graph_zero(empty_source, zt, zs)


def test_prototype_alignment_exact_2d_value():
    source = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], requires_grad=True)
    source_labels = torch.tensor([0, 0, 1])
    target = torch.tensor([[2.0, 0.0], [5.0, 5.0], [-1.0, 0.0]], requires_grad=True)
    pseudo = torch.tensor([0, 0, 1])
    mask = torch.tensor([True, False, True])
    loss = ClassPrototypeAlignmentLoss(num_classes=3)(source, source_labels, target, pseudo, mask)
    # class 0: mu_s = (1, 1)/sqrt2, mu_t = (1, 0) -> 2 - sqrt2; class 1: mu_s = (0, -1), mu_t = (-1, 0) -> 2;
    # class 2 is absent on both sides and does not count.
    assert loss.item() == pytest.approx(((2 - math.sqrt(2)) + 2) / 2, rel=1e-6)
    grad_s, grad_t = torch.autograd.grad(loss, (source, target))
    assert grad_s.abs().sum() > 0 and grad_t[0].abs().sum() > 0
    assert (grad_t[1] == 0).all()  # unselected row


def test_prototype_alignment_edge_cases_are_graph_zero():
    source, target = _leaf(4, 3, seed=16), _leaf(4, 3, seed=17)
    loss_fn = ClassPrototypeAlignmentLoss(num_classes=2)
    ys, pseudo = torch.tensor([0, 0, 0, 0]), torch.tensor([1, 1, 1, 0])
    _assert_graph_zero(loss_fn(source, ys, target, pseudo, torch.zeros(4, dtype=torch.bool)), source, target)
    _assert_graph_zero(
        loss_fn(source, ys, target, pseudo, torch.tensor([True, True, False, False])), source, target
    )


def test_pseudo_label_cross_entropy_mean_over_selected():
    logits = _leaf(4, 3, seed=18)
    pseudo = torch.tensor([0, 2, 1, 1])
    mask = torch.tensor([True, False, True, False])
    loss = pseudo_label_cross_entropy(logits, pseudo, mask)
    expected = F.cross_entropy(logits[[0, 2]], pseudo[[0, 2]])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    (grad,) = torch.autograd.grad(loss, logits)
    assert (grad[1] == 0).all() and grad[0].abs().sum() > 0
    _assert_graph_zero(pseudo_label_cross_entropy(logits, pseudo, torch.zeros(4, dtype=torch.bool)), logits)


# ---------------------------------------------------------------- corpus-level alignment


def test_domain_adversarial_binary_is_domain_balanced_and_reports_accuracy():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0, -2.0], requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1])
    loss_fn = DomainAdversarialLoss()
    loss = loss_fn(logits, labels)
    bce = F.binary_cross_entropy_with_logits(logits.detach(), labels.float(), reduction="none")
    assert loss.item() == pytest.approx(0.5 * (bce[:3].mean() + bce[3:].mean()).item(), rel=1e-6)
    # predictions (logit > 0): 1, 0, 1, 1, 0 -> correct: no, yes, no, yes, no
    assert loss_fn.domain_discriminator_accuracy.item() == pytest.approx(2 / 5)
    assert loss_fn.domain_discriminator_accuracy.grad_fn is None
    (grad,) = torch.autograd.grad(loss, logits)
    assert (grad != 0).all()
    # (N, 1) logits are the same binary case
    assert loss_fn(logits.detach()[:, None], labels).item() == pytest.approx(loss.item())


def test_domain_adversarial_multi_corpus_equal_sizes_is_plain_cross_entropy():
    logits = _leaf(6, 3, seed=19)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    loss_fn = DomainAdversarialLoss()
    assert loss_fn(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    assert loss_fn.domain_discriminator_accuracy.item() == pytest.approx(
        (logits.argmax(1) == labels).float().mean().item()
    )


def test_corpus_classification_loss_is_cross_entropy():
    logits = _leaf(4, 2, seed=20)
    labels = torch.tensor([0, 0, 1, 1])
    loss = corpus_classification_loss(logits, labels)
    assert loss.item() == pytest.approx(F.cross_entropy(logits, labels).item())
    assert torch.autograd.grad(loss, logits)[0].abs().sum() > 0


def _mmd_reference(source, target, multipliers, unbiased):
    """Loop implementation with a fixed (constant) bandwidth, per the docstring."""
    pooled = torch.cat([source, target])
    total = len(pooled)
    sigma2 = sum(
        float(((pooled[a] - pooled[b]) ** 2).sum().detach())
        for a in range(total)
        for b in range(total)
        if a != b
    ) / (total * (total - 1))

    def k(x, y):
        return sum(torch.exp(-((x - y) ** 2).sum() / (a * sigma2)) for a in multipliers) / len(multipliers)

    def mean_k(xs, ys, same):
        pairs = [(i, j) for i in range(len(xs)) for j in range(len(ys)) if not (same and unbiased and i == j)]
        return sum(k(xs[i], ys[j]) for i, j in pairs) / len(pairs)

    return mean_k(source, source, True) + mean_k(target, target, True) - 2 * mean_k(source, target, False)


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_matches_reference_and_bandwidth_is_detached(unbiased):
    """Unequal batch sizes; gradients equal those of the constant-bandwidth reference, so sigma is detached."""
    source, target = _leaf(5, 3, seed=21), (_leaf(3, 3, seed=22).detach() + 1.0).requires_grad_()
    multipliers = (0.5, 1.0, 2.0)
    loss = MultiKernelMMDLoss(multipliers, unbiased=unbiased)(source, target)
    reference = _mmd_reference(source, target, multipliers, unbiased)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)
    grads = torch.autograd.grad(loss, (source, target))
    reference_grads = torch.autograd.grad(reference, (source, target))
    for grad, reference_grad in zip(grads, reference_grads, strict=True):
        assert grad.abs().sum() > 0
        torch.testing.assert_close(grad, reference_grad, rtol=1e-4, atol=1e-6)


def test_mmd_is_zero_for_identical_samples_and_grows_with_mean_shift():
    x = _leaf(16, 4, seed=23).detach()
    loss_fn = MultiKernelMMDLoss()
    assert loss_fn(x, x.clone()).item() == pytest.approx(0.0, abs=1e-6)
    values = [loss_fn(x, x + shift).item() for shift in (0.0, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    # the unbiased estimator is near 0 for two samples of one distribution
    y = _leaf(16, 4, seed=24).detach()
    assert abs(MultiKernelMMDLoss(unbiased=True)(x, y).item()) < 0.05


@pytest.mark.parametrize("n_source,n_target", [(1, 5), (5, 1), (0, 4)])
def test_mmd_with_fewer_than_two_rows_is_graph_zero(n_source, n_target):
    source, target = _leaf(n_source, 3, seed=25), _leaf(n_target, 3, seed=26)
    _assert_graph_zero(MultiKernelMMDLoss()(source, target), source, target)


def test_grl_coefficient_schedule():
    assert grl_coefficient(0.0) == 0.0
    assert grl_coefficient(1.0) == pytest.approx(math.tanh(5.0))
    assert grl_coefficient(1.0, max_value=0.3) == pytest.approx(0.3 * math.tanh(5.0))
    values = [grl_coefficient(p / 20) for p in range(21)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    assert grl_coefficient(-0.5) == 0.0 and grl_coefficient(2.0) == grl_coefficient(1.0)  # clamped
    assert grl_coefficient(0.5, gamma=1.0) < grl_coefficient(0.5, gamma=10.0)


def test_losses_hold_no_parameters():
    modules = [
        ContrastiveDecouplingLoss(),
        CrossCorpusClassAlignmentLoss(),
        ClassPrototypeAlignmentLoss(2),
        DomainAdversarialLoss(),
        MultiKernelMMDLoss(),
    ]
    assert all(len(list(m.parameters())) == 0 and len(m.state_dict()) == 0 for m in modules)


def test_similarities_are_computed_in_float32_under_autocast():
    z, v = _leaf(8, 16, seed=27), _leaf(8, 16, seed=28)
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    loss_fn = ContrastiveDecouplingLoss(temperature=0.05)
    reference = loss_fn(z, labels, v)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under_autocast = loss_fn(z, labels, v)
        mmd = MultiKernelMMDLoss()(z, v)
    assert under_autocast.dtype == torch.float32 and mmd.dtype == torch.float32
    assert under_autocast.item() == pytest.approx(reference.item(), rel=1e-6)
