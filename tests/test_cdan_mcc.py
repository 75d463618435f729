"""CDAN(+E) and MCC: each loss against a naive loop over its formula, and the objectives' terms and parts."""

import math

import pytest
import torch
import torch.nn.functional as F
from factories import tiny_config

from emodna_hf.objectives import ObjectiveBatch, build_objective
from emodna_hf.objectives.cdan import MultilinearMap, conditional_adversarial_loss
from emodna_hf.objectives.mcc import minimum_class_confusion


def _entropy(p):
    return -sum(float(x) * math.log(float(x)) for x in p if float(x) > 0)


def _cdan_loop(logits, labels, weights):
    """The docstring formula, one corpus and one row at a time."""
    corpora = sorted(set(labels.tolist()))
    total = 0.0
    for k in corpora:
        rows = [i for i in range(len(labels)) if int(labels[i]) == k]
        mean_weight = sum(float(weights[i]) for i in rows) / len(rows)
        per_row = []
        for i in rows:
            log_probs = logits[i].log_softmax(-1)
            per_row.append(float(weights[i]) / mean_weight * -float(log_probs[k]))
        total += sum(per_row) / len(rows)
    return total / len(corpora)


@pytest.mark.parametrize("entropy_conditioning", [True, False])
def test_cdan_loss_matches_the_formula(entropy_conditioning):
    generator = torch.Generator().manual_seed(0)
    domain_logits = torch.randn(7, 2, generator=generator)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    predictions = torch.randn(7, 4, generator=generator).softmax(-1)
    weights = torch.tensor([1 + math.exp(-_entropy(p)) for p in predictions]) if entropy_conditioning \
        else torch.ones(7)
    expected = _cdan_loop(domain_logits, labels, weights)
    got = conditional_adversarial_loss(domain_logits, labels, weights if entropy_conditioning else None)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    if entropy_conditioning:  # the weights change the value: they are not normalised away
        assert got.item() != pytest.approx(conditional_adversarial_loss(domain_logits, labels).item(), rel=1e-4)


def test_the_exact_multilinear_map_is_the_outer_product_and_large_ones_are_randomized():
    h, g = torch.randn(3, 5), torch.randn(3, 4).softmax(-1)
    exact = MultilinearMap(5, 4, randomized_dim=16)
    assert not exact.randomized and exact.output_size == 20
    mapped = exact(h, g)
    for i in range(3):
        for e in range(5):
            for c in range(4):
                assert mapped[i, e * 4 + c].item() == pytest.approx(float(h[i, e] * g[i, c]), rel=1e-6)
    large = MultilinearMap(2048, 4, randomized_dim=64)
    assert large.randomized and large(torch.randn(3, 2048), g).shape == (3, 64)
    # (R_h h) ⊙ (R_g g) / sqrt(d), with the buffers that a checkpoint saves.
    h = torch.randn(3, 2048)
    expected = (h @ large.random_embedding) * (g @ large.random_prediction) / 8.0
    torch.testing.assert_close(large(h, g), expected)
    assert set(large.state_dict()) == {"random_embedding", "random_prediction"}


def _mcc_loop(logits, temperature):
    """The docstring formula with Python loops."""
    b, c = logits.shape
    probs = [F.softmax(logits[i] / temperature, -1).tolist() for i in range(b)]
    raw = [1 + math.exp(-_entropy(p)) for p in probs]
    weights = [b * w / sum(raw) for w in raw]
    confusion = [[sum(probs[i][j] * weights[i] * probs[i][k] for i in range(b)) for k in range(c)] for j in range(c)]
    column = [sum(confusion[j][k] for j in range(c)) for k in range(c)]
    return sum(abs(confusion[j][k] / column[k]) for j in range(c) for k in range(c) if j != k) / c


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_mcc_loss_matches_the_formula(temperature):
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(1)) * 3
    assert minimum_class_confusion(logits, temperature).item() == pytest.approx(_mcc_loop(logits, temperature),
                                                                                rel=1e-5)


def test_mcc_is_zero_for_confident_distinct_predictions_and_connected_when_empty():
    confident = torch.eye(4) * 200
    assert minimum_class_confusion(confident, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert minimum_class_confusion(torch.zeros(4, 4), 1.0).item() == pytest.approx(0.75)  # uniform: (C-1)/C
    empty = torch.zeros(0, 4, requires_grad=True)
    loss = minimum_class_confusion(empty)
    assert loss.item() == 0.0 and loss.grad_fn is not None


@pytest.mark.parametrize("method", ["cdan", "mcc"])
def test_the_objectives_return_their_terms_and_train_their_parts(method):
    config = tiny_config(adaptation_method=method)
    objective = build_objective(config, pooled_size=16).train()
    embeddings = torch.randn(6, config.embedding_size, requires_grad=True)
    logits = torch.randn(6, config.num_labels, requires_grad=True)
    outputs = type("Out", (), {"logits": logits, "emotion_embeddings": embeddings, "pooled_features": None})()
    corpus_ids = torch.tensor([0, 0, 0, 1, 1, 1])
    labels = torch.tensor([0, 1, 2, -100, -100, -100])
    terms, stats = objective(ObjectiveBatch(outputs, labels, corpus_ids, corpus_ids == 1, 0.5, 0.7))
    expected = {"classification", "corpus_alignment" if method == "cdan" else "class_confusion"}
    assert set(terms) == expected
    sum(w * loss for loss, w in terms.values()).backward()
    if method == "cdan":
        assert {"domain_accuracy", "grl_coefficient"} <= set(stats)
        assert all(p.grad is not None and p.grad.any() for p in objective.parameters())
        assert embeddings.grad.any()  # the reversed gradient reaches the emotion embedding
    else:
        assert not list(objective.parameters())
        assert logits.grad[3:].any()  # the target rows' predictions are regularised
