"""Options of the base network (issue 19): whole-corpus statistics for the corpus normalisation, class-balanced
source loss, input noise and dropout. Known values and naive computations, no training to convergence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from factories import tiny_config

from emodna_hf import EmoDnaConfig, EmoDnaForAudioClassification
from emodna_hf.trainer import EmoDnaTrainer, EmoDnaTrainingArguments, source_class_weights

REPO = Path(__file__).resolve().parents[1]


def _functionals(n: int, corpus_id: int, shift: float, labels: list[int] | None, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = {"input_features": [(shift + rng.standard_normal((1, 88)) * (1 + corpus_id)).astype(np.float32)
                               for _ in range(n)], "corpus_id": [corpus_id] * n}
    if labels is not None:
        rows["labels"] = labels
    return Dataset.from_dict(rows)


def _trainer(tmp_path, source: Dataset, target: Dataset, **overrides) -> EmoDnaTrainer:
    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config("opensmile", **overrides))
    args = EmoDnaTrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=2,
                                   report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True)
    return EmoDnaTrainer(model=model, args=args, train_dataset=source, target_dataset=target)


def test_dataset_statistics_are_each_corpus_mean_and_variance_and_used_in_training(tmp_path):
    source = _functionals(30, 0, 5.0, [i % 4 for i in range(30)], seed=0)
    target = _functionals(20, 1, -3.0, None, seed=1)
    trainer = _trainer(tmp_path, source, target, corpus_statistics="dataset")
    normalization = trainer.model.corpus_normalization
    for corpus, dataset in enumerate((source, target)):
        values = np.stack([np.asarray(row, np.float64)[0] for row in dataset["input_features"]])
        np.testing.assert_allclose(normalization.running_mean[corpus].numpy(), values.mean(0), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(normalization.running_var[corpus].numpy(), values.var(0), rtol=1e-4, atol=1e-5)
    # In training mode too, a row is standardised with its corpus's whole-corpus statistics, not the batch's.
    normalization.train()
    features = torch.randn(3, 88)
    ids = torch.tensor([0, 1, 1])
    expected = (features - normalization.running_mean[ids]) / torch.sqrt(normalization.running_var[ids] + 1e-5)
    before = normalization.running_mean.clone()
    torch.testing.assert_close(normalization(features, ids), expected)
    torch.testing.assert_close(normalization.running_mean, before)  # nothing moves them


def test_batch_statistics_stay_the_default():
    model = EmoDnaForAudioClassification(tiny_config("opensmile")).train()
    normalization = model.corpus_normalization
    features = torch.randn(6, 88) * 3 + 1
    out = normalization(features, torch.tensor([0, 0, 0, 1, 1, 1]))
    torch.testing.assert_close(out[:3].mean(0), torch.zeros(88), atol=1e-5, rtol=0)  # the batch's own statistics


def test_dataset_statistics_need_the_opensmile_front_end():
    with pytest.raises(ValueError, match="opensmile"):
        EmoDnaConfig(backbone_type="tcn", corpus_statistics="dataset")
    with pytest.raises(ValueError, match="corpus_statistics"):
        EmoDnaConfig(backbone_type="opensmile", corpus_statistics="running")


def test_source_class_weights_balance_the_classes():
    source = Dataset.from_dict({"labels": [0, 0, 0, 1, 2, 2]})
    weights = source_class_weights(source, 4)
    # n / (classes * n_c): 6 / (4 * 3), 6 / (4 * 1), 6 / (4 * 2); an absent class keeps weight 1.
    torch.testing.assert_close(weights, torch.tensor([0.5, 1.5, 0.75, 1.0]))
    counts = torch.tensor([3.0, 1.0, 2.0])
    assert torch.allclose((weights[:3] * counts), torch.full((3,), 1.5))  # every present class weighs the same


def test_class_balanced_loss_is_the_weighted_source_cross_entropy(tmp_path):
    labels = [0] * 12 + [1] * 4 + [2] * 2 + [3] * 2
    source = _functionals(20, 0, 0.0, labels, seed=2)
    target = _functionals(8, 1, 1.0, None, seed=3)
    trainer = _trainer(tmp_path, source, target, class_balanced_loss=True, adaptation_method="source_only",
                       corpus_normalization=True)
    torch.testing.assert_close(trainer.source_class_weights, source_class_weights(source, 4))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in (0, 1, 12, 16, 18, 20, 21)])
    model = trainer.model.train()
    torch.manual_seed(1)
    trainer.compute_loss(model, dict(batch))
    torch.manual_seed(1)
    outputs = model(input_features=batch["input_features"], feature_mask=batch["feature_mask"],
                    corpus_ids=batch["corpus_ids"], output_embeddings=True)
    weights, rows = trainer.source_class_weights, batch["labels"] != -100
    log_probs = outputs.logits[rows].log_softmax(-1)
    targets = batch["labels"][rows]
    naive = -sum(weights[y] * log_probs[i, y] for i, y in enumerate(targets.tolist())) / weights[targets].sum()
    recorded = trainer._metrics["train"]["loss_classification"][-1]
    torch.testing.assert_close(recorded, naive.detach(), rtol=1e-5, atol=1e-6)


def test_input_noise_and_dropout_act_in_training_only():
    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config("opensmile", input_noise_std=0.5, input_dropout=0.3))
    features, mask = torch.randn(4, 1, 88), torch.ones(4, 1, dtype=torch.bool)
    model.eval()
    first = model(input_features=features, feature_mask=mask).logits
    torch.testing.assert_close(model(input_features=features, feature_mask=mask).logits, first)
    model.train()
    noisy = [model(input_features=features, feature_mask=mask, corpus_ids=torch.tensor([0, 0, 1, 1])).logits
             for _ in range(2)]
    assert not torch.allclose(noisy[0], noisy[1])


def test_the_recipe_default_picks_whole_corpus_statistics_for_opensmile_only():
    """`corpus_statistics: auto` (the recipe default) must not break `--backbone_type tcn` or an SSL checkpoint."""
    from emodna_hf.experiment import parse_args

    def chosen(*extra: str) -> str:
        model_args = parse_args(["--config", str(REPO / "recipes" / "configs" / "default.yaml"), *extra])[0]
        return model_args.config_kwargs()["corpus_statistics"]

    assert chosen() == "dataset"
    assert chosen("--backbone_type", "tcn") == "batch"
    assert chosen("--corpus_statistics", "batch") == "batch"
    EmoDnaConfig(**{**tiny_config("tcn").to_dict(), "corpus_statistics": chosen("--backbone_type", "tcn")})
