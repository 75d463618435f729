import pytest
import torch

from emodna_hf.pseudo_labels import AdaptiveThresholdPseudoLabeler, CurriculumPseudoLabeler, momentum_for


def _random_probs(batch: int, classes: int, seed: int, sharpness: float = 3.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(sharpness * torch.randn(batch, classes, generator=generator), dim=1)


def test_initial_state_is_uniform_as_in_freematch():
    labeler = AdaptiveThresholdPseudoLabeler(num_classes=4)
    torch.testing.assert_close(labeler.thresholds(), torch.full((4,), 0.25))
    assert labeler.global_threshold == pytest.approx(0.25)
    # binary: max probability is always >= 1/2 = tau_0, so everything is selected before any update
    binary = AdaptiveThresholdPseudoLabeler(num_classes=2)
    labels, mask = binary.select(torch.tensor([[0.5, 0.5], [0.3, 0.7], [0.9, 0.1]]))
    assert mask.all() and labels.tolist() == [0, 1, 0]


def test_update_is_the_documented_ema():
    labeler = AdaptiveThresholdPseudoLabeler(num_classes=2, momentum=0.5)
    labeler.update(torch.tensor([[0.9, 0.1], [0.7, 0.3]]))
    # tau_1 = 0.5 * 0.5 + 0.5 * mean(0.9, 0.7); p_1 = 0.5 * (0.5, 0.5) + 0.5 * (0.8, 0.2)
    assert labeler.global_threshold == pytest.approx(0.65)
    torch.testing.assert_close(labeler.class_marginals, torch.tensor([0.65, 0.35]))
    torch.testing.assert_close(labeler.thresholds(), torch.tensor([0.65, 0.35 / 0.65 * 0.65]))


def test_thresholds_rise_on_confident_and_fall_on_unconfident_batches():
    labeler = AdaptiveThresholdPseudoLabeler(num_classes=3, momentum=0.9)
    confident = torch.tensor([[0.98, 0.01, 0.01], [0.01, 0.98, 0.01], [0.01, 0.01, 0.98]])
    history = [labeler.global_threshold]
    for _ in range(5):
        labeler.update(confident)
        history.append(labeler.global_threshold)
    assert all(a < b for a, b in zip(history, history[1:], strict=False))
    uncertain = torch.full((3, 3), 1 / 3)
    for _ in range(5):
        labeler.update(uncertain)
        history.append(labeler.global_threshold)
    assert all(a > b for a, b in zip(history[5:], history[6:], strict=False))


def test_rarely_predicted_class_gets_a_lower_threshold():
    """Imbalanced target: class 1 is rarely predicted, so its bar is lower and its samples pass more easily."""
    labeler = AdaptiveThresholdPseudoLabeler(num_classes=2, momentum=0.0)  # state = the last batch
    batch = torch.tensor([[0.95, 0.05]] * 7 + [[0.3, 0.7]])
    labeler.update(batch)
    thresholds = labeler.thresholds()
    assert thresholds[1] < thresholds[0]
    assert thresholds[0].item() == pytest.approx(labeler.global_threshold)
    assert thresholds[0].item() == pytest.approx((7 * 0.95 + 0.7) / 8)
    _, mask = labeler.select(torch.tensor([[0.8, 0.2], [0.2, 0.8]]))
    # 0.8 is below the majority class's threshold (0.9188) but above the minority class's
    assert mask.tolist() == [False, True]


def test_fixed_threshold_mode_ignores_the_statistics():
    labeler = AdaptiveThresholdPseudoLabeler(num_classes=2, fixed_threshold=0.9)
    before = labeler.thresholds().clone()
    labeler.update(torch.tensor([[0.99, 0.01]] * 4))
    assert labeler.global_confidence.item() != pytest.approx(0.5)  # statistics are still tracked
    torch.testing.assert_close(labeler.thresholds(), before)
    assert labeler.global_threshold == 0.9
    labels, mask = labeler.select(torch.tensor([[0.95, 0.05], [0.1, 0.9], [0.15, 0.85]]))
    assert labels.tolist() == [0, 1, 1] and mask.tolist() == [True, True, False]


def test_state_dict_round_trip_reproduces_selections_exactly():
    labeler = AdaptiveThresholdPseudoLabeler(num_classes=3, momentum=0.9)
    for step in range(20):
        labeler.update(_random_probs(16, 3, seed=step))
    state = labeler.state_dict()
    assert set(state) == {"global_confidence", "class_marginals"}
    restored = AdaptiveThresholdPseudoLabeler(num_classes=3, momentum=0.9)
    restored.load_state_dict(state)
    probs = _random_probs(64, 3, seed=100)
    for a, b in zip(labeler.select(probs), restored.select(probs), strict=True):
        assert torch.equal(a, b)
    assert 0 < int(labeler.select(probs)[1].sum()) < 64  # the comparison is not trivially all/none
    labeler.update(probs)
    restored.update(probs)
    assert torch.equal(labeler.thresholds(), restored.thresholds())
    # a fresh labeler (not restored) selects differently: the state is what carries the behaviour
    assert not torch.equal(AdaptiveThresholdPseudoLabeler(3).select(probs)[1], labeler.select(probs)[1])


def test_default_momentum_adapts_within_a_few_hundred_steps():
    labeler = AdaptiveThresholdPseudoLabeler(num_classes=2)
    batch = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    for _ in range(100):
        labeler.update(batch)
    # 0.99 ** 100 ~= 0.37 of the weight stays on tau_0 = 0.5 (0.049 after 300 steps; 0.999 would leave 0.90)
    assert labeler.global_threshold == pytest.approx(0.9 - 0.4 * 0.99**100, rel=1e-4)


def test_update_and_select_do_not_touch_autograd_and_keep_devices():
    logits = torch.randn(5, 3, requires_grad=True)
    probs = torch.softmax(logits, dim=1)
    labeler = AdaptiveThresholdPseudoLabeler(num_classes=3)
    labeler.update(probs)
    labels, mask = labeler.select(probs)
    assert labels.dtype == torch.long and mask.dtype == torch.bool
    assert not labels.requires_grad and not mask.requires_grad
    assert not labeler.class_marginals.requires_grad
    labeler.update(probs[:0])  # empty batch: no change, no error
    with pytest.raises(ValueError):
        labeler.update(torch.rand(4, 2))
    with pytest.raises(TypeError):
        labeler.to(torch.bfloat16).update(probs.detach())


@pytest.mark.parametrize(
    "kwargs",
    [{"num_classes": 1}, {"num_classes": 2, "momentum": 1.0}, {"num_classes": 2, "fixed_threshold": 0.0}],
)
def test_invalid_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        AdaptiveThresholdPseudoLabeler(**kwargs)


# --- CurriculumPseudoLabeler: the default rule -------------------------------------------------------------------


def test_curriculum_share_follows_training_progress():
    labeler = CurriculumPseudoLabeler(num_classes=2, memory_size=100, warmup=0.2, ramp=0.6, max_fraction=0.8)
    assert [labeler.fraction(p) for p in (0.0, 0.19, 0.2, 0.4, 0.6, 1.0)] == pytest.approx(
        [0.0, 0.0, 0.0, 0.4, 0.8, 0.8]
    )


def test_curriculum_thresholds_are_the_kth_largest_probability_per_class():
    labeler = CurriculumPseudoLabeler(num_classes=2, memory_size=8, warmup=0.0, ramp=1.0)
    # 6 rows predicted class 0 (p0 = 0.9 .. 0.65), 2 predicted class 1 (p1 = 0.8, 0.6): shares 3/4 and 1/4.
    probs = torch.tensor([[0.9, 0.1], [0.85, 0.15], [0.8, 0.2], [0.75, 0.25], [0.7, 0.3], [0.65, 0.35],
                          [0.2, 0.8], [0.4, 0.6]])
    labeler.update(probs)
    # progress 0.5: select 4 of 8 rows, k_0 = round(4 * 3/4) = 3, k_1 = round(4 * 1/4) = 1.
    torch.testing.assert_close(labeler.thresholds(0.5), torch.tensor([0.8, 0.8]))
    labels, mask = labeler.select(probs, 0.5)
    assert mask.tolist() == [True, True, True, False, False, False, True, False]
    assert labels.tolist() == [0, 0, 0, 0, 0, 0, 1, 1]  # unselected rows keep their argmax
    # nothing before the warm-up, everything at the end of the ramp
    assert torch.isinf(CurriculumPseudoLabeler(2, warmup=0.3).thresholds(0.1)).all()
    assert labeler.select(probs, 1.0)[1].all()


def test_curriculum_keeps_the_predicted_class_imbalance():
    labeler = CurriculumPseudoLabeler(num_classes=3, memory_size=300, warmup=0.0, ramp=1.0)
    probs = _random_probs(300, 3, seed=0)
    labeler.update(probs)
    labels, mask = labeler.select(probs, 0.5)
    predicted = torch.bincount(probs.argmax(1), minlength=3).float()
    selected = torch.bincount(labels[mask], minlength=3).float()
    assert mask.float().mean().item() == pytest.approx(0.5, abs=0.02)
    torch.testing.assert_close(selected / selected.sum(), predicted / predicted.sum(), atol=0.03, rtol=0)


def test_curriculum_selection_does_not_depend_on_the_run_length():
    """The same predictions at the same training progress select the same rows, in 50 steps or 5000."""
    probs = _random_probs(64, 4, seed=3)
    masks = []
    for steps in (50, 5000):
        labeler = CurriculumPseudoLabeler(num_classes=4, memory_size=64)
        for _ in range(min(steps, 20)):  # the memory holds the last 64 rows whatever the number of updates
            labeler.update(probs)
        masks.append(labeler.select(probs, progress=0.5)[1])
    assert torch.equal(masks[0], masks[1]) and 0 < masks[0].sum() < len(probs)


def test_curriculum_memory_is_a_ring_restored_by_state_dict():
    labeler = CurriculumPseudoLabeler(num_classes=2, memory_size=4)
    first, second = _random_probs(3, 2, seed=1), _random_probs(3, 2, seed=2)
    labeler.update(first)
    labeler.update(second)
    assert int(labeler.memory_count) == 4 and int(labeler.memory_position) == 2
    torch.testing.assert_close(labeler.memory, torch.cat([second[1:], first[2:], second[:1]]))
    restored = CurriculumPseudoLabeler(num_classes=2, memory_size=4)
    restored.load_state_dict(labeler.state_dict())
    torch.testing.assert_close(restored.thresholds(0.7), labeler.thresholds(0.7))
    with pytest.raises(ValueError, match="warmup"):
        CurriculumPseudoLabeler(2, warmup=0.9, ramp=0.5)


def test_momentum_from_training_length_makes_freematch_follow_progress():
    assert momentum_for(800, 0.125) == pytest.approx(0.99) and momentum_for(8000, 0.125) == pytest.approx(0.999)
    assert momentum_for(3, 0.125) == 0.0  # shorter than one time constant: no memory
    # Halfway through a short and a 10x longer run on the same predictions, the thresholds agree closely.
    probs = _random_probs(32, 4, seed=5, sharpness=6.0)
    thresholds = []
    for total in (200, 2000):
        labeler = AdaptiveThresholdPseudoLabeler(num_classes=4)
        for _ in range(total // 2):
            labeler.update(probs, momentum=momentum_for(total, 0.125))
        thresholds.append(labeler.thresholds())
    torch.testing.assert_close(thresholds[0], thresholds[1], atol=0.01, rtol=0)
    # ...while a fixed momentum of 0.99 leaves the short run far from where the long one is.
    short = AdaptiveThresholdPseudoLabeler(num_classes=4, momentum=0.99)
    for _ in range(10):
        short.update(probs)
    assert (short.thresholds() - thresholds[1]).abs().max() > 0.1
