"""Label-free model-selection criteria (emodna_hf.selection) against naive loops of their docstring formulas, and
selection during training: the checkpoint a criterion picks, with target labels provably unused."""

import math

import numpy as np
import pytest
import torch
from factories import tiny_config, toy_corpus

from emodna_hf import EmoDnaForAudioClassification
from emodna_hf.selection import (
    CRITERIA,
    best_by,
    check_model_selection,
    dev_risk,
    importance_weighted_loss,
    importance_weights,
    information_maximization,
    label_free_criteria,
    soft_neighborhood_density,
)
from emodna_hf.trainer import EmoDnaTrainer, EmoDnaTrainingArguments


def naive_entropy(p):
    return -sum(x * math.log(x) for x in p if x > 0)


def test_information_maximization_known_values():
    one_hot = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]
    assert information_maximization(one_hot) == pytest.approx(math.log(4))  # confident and balanced: the maximum
    assert information_maximization(np.eye(4)[[2] * 8]) == pytest.approx(0.0)  # one class for everything
    assert information_maximization(np.full((5, 4), 0.25)) == pytest.approx(0.0)  # no confidence
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=7)
    mean = [sum(row[c] for row in p) / len(p) for c in range(3)]
    expected = naive_entropy(mean) - sum(naive_entropy(row) for row in p) / len(p)
    assert information_maximization(p) == pytest.approx(expected)


def test_soft_neighborhood_density_matches_a_naive_loop():
    rng = np.random.default_rng(1)
    vectors, tau = rng.normal(size=(6, 3)), 0.05
    unit = [v / np.linalg.norm(v) for v in vectors]
    total = 0.0
    for i in range(6):
        scores = {j: float(unit[i] @ unit[j]) / tau for j in range(6) if j != i}
        norm = sum(math.exp(s) for s in scores.values())
        total += naive_entropy([math.exp(s) / norm for s in scores.values()])
    assert soft_neighborhood_density(vectors, tau) == pytest.approx(total / 6)
    # Identical vectors: every neighbour equally close, the maximum log(N - 1).
    assert soft_neighborhood_density(np.ones((5, 3))) == pytest.approx(math.log(4))
    with pytest.raises(ValueError, match="at least 2"):
        soft_neighborhood_density(np.ones((1, 3)))


def test_dev_risk_and_importance_weighted_loss_known_values():
    losses = np.array([1.0, 2.0, 0.5, 3.0])
    assert dev_risk(losses, np.ones(4)) == pytest.approx(losses.mean())  # no shift: the plain mean loss
    weights = np.array([0.5, 2.0, 1.0, 0.5])
    weighted = weights * losses
    mean_w, mean_l = weights.mean(), weighted.mean()
    cov = sum((a - mean_l) * (b - mean_w) for a, b in zip(weighted, weights, strict=True)) / 3
    var = sum((b - mean_w) ** 2 for b in weights) / 3
    eta = -cov / var
    assert dev_risk(losses, weights) == pytest.approx(mean_l + eta * mean_w - eta)
    assert importance_weighted_loss(losses, weights) == pytest.approx((0.5 + 4 + 0.5 + 1.5) / 4.0)


def test_importance_weights_follow_the_target():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(200, 2))
    same = importance_weights(source, rng.normal(size=(200, 2)))
    assert abs(same.mean() - 1) < 0.25 and same.std() < 0.5  # no shift: weights near 1
    shifted = importance_weights(source, rng.normal(loc=(1.5, 0), size=(200, 2)))
    near, far = shifted[source[:, 0] > 1], shifted[source[:, 0] < -1]
    assert near.mean() > 5 * far.mean()  # source rows that look like the target count more


def test_label_free_criteria_take_no_target_labels_and_skip_what_they_cannot_compute():
    rng = np.random.default_rng(0)
    target_logits, target_embeddings = rng.normal(size=(30, 4)), rng.normal(size=(30, 8))
    only_target = label_free_criteria(target_logits, target_embeddings)
    assert set(only_target) == {"target_im", "target_snd", "target_snd_embeddings"}
    both = label_free_criteria(target_logits, target_embeddings, rng.normal(size=(20, 4)), rng.integers(0, 4, 20),
                               rng.normal(size=(20, 8)))
    assert set(both) == set(only_target) | {"dev_loss", "iwv_loss"}
    assert both["target_im"] == only_target["target_im"]
    assert all(math.isfinite(v) for v in both.values())
    # Subsampling caps the cost and is seeded.
    capped = label_free_criteria(target_logits, target_embeddings, max_samples=10, seed=3)
    assert capped == label_free_criteria(target_logits, target_embeddings, max_samples=10, seed=3)
    assert capped["target_snd"] != only_target["target_snd"]


@pytest.mark.parametrize("metric", ["target_uar", "eval_target_uar", "eval_target_loss", "loss", None, "accuracy"])
def test_target_label_metrics_never_select_models(metric):
    with pytest.raises(ValueError, match="SOURCE metrics or label-free criteria"):
        check_model_selection(metric, load_best_model_at_end=True)


@pytest.mark.parametrize("metric", ["source_uar", "eval_source_loss", *CRITERIA, "eval_target_im"])
def test_label_free_metrics_may_select_models(metric):
    check_model_selection(metric, load_best_model_at_end=True)
    check_model_selection(None, load_best_model_at_end=False)


def test_best_by_follows_the_direction_of_each_criterion():
    points = [{"step": 1, "target_im": 0.5, "dev_loss": 2.0}, {"step": 2, "target_im": 0.9, "dev_loss": 3.0},
              {"step": 3, "target_im": None, "dev_loss": 1.0}, {"step": 4, "target_im": 0.9}]
    assert best_by(points, "target_im")["step"] == 2  # ties: the earliest
    assert best_by(points, "eval_dev_loss".removeprefix("eval_"))["step"] == 3  # a loss: the smallest
    assert best_by(points, "target_snd") is None


def _selecting_trainer(tmp_path, target, metric):
    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config(adaptation_method="emodna", pseudo_label_warmup=0.0))
    args = EmoDnaTrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=8, learning_rate=3e-3, logging_steps=2,
        report_to="none", use_cpu=True, seed=0, disable_tqdm=True, eval_strategy="steps", eval_steps=2,
        save_strategy="steps", save_steps=2, load_best_model_at_end=True, metric_for_best_model=metric,
    )
    return EmoDnaTrainer(
        model=model, args=args, train_dataset=toy_corpus(0, 24, 0.0, seed=1), target_dataset=target,
        eval_dataset={"target": target, "source": toy_corpus(0, 12, 0.0, seed=5)},
    )


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["target_im", "dev_loss"])
def test_selection_picks_the_checkpoint_its_criterion_ranks_first_without_reading_target_labels(tmp_path, metric):
    labelled = toy_corpus(1, 16, 35.0, seed=2)
    permuted = labelled.map(lambda row, i: {"labels": (row["labels"] + 1 + i) % 4}, with_indices=True)
    unlabelled = toy_corpus(1, 16, 35.0, seed=2, with_labels=False).add_column("labels", [None] * 16)
    runs = []
    for name, target in (("labelled", labelled), ("permuted", permuted), ("unlabelled", unlabelled)):
        trainer = _selecting_trainer(tmp_path / name, target, metric)
        trainer.train()
        evaluations = [e for e in trainer.state.log_history if f"eval_{metric}" in e]
        assert len(evaluations) == 4 and all(f"eval_{c}" in evaluations[0] for c in CRITERIA)
        best = best_by([{**e, metric: e[f"eval_{metric}"]} for e in evaluations], metric)
        assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")
        assert trainer.state.best_metric == best[f"eval_{metric}"]
        runs.append((best["step"], {k: v.clone() for k, v in trainer.model.state_dict().items()}))
        assert ("eval_target_uar" in evaluations[0]) == (name != "unlabelled")  # scores only where labelled
    for step, weights in runs[1:]:
        assert step == runs[0][0]
        for key, tensor in runs[0][1].items():
            torch.testing.assert_close(weights[key], tensor, rtol=0, atol=0, msg=key)
