"""EmoDnaTrainer mechanics: batch composition, target-label isolation, logging, GA scaling, exact resume."""

import numpy as np
import pytest
import torch
from factories import tiny_config, toy_corpus
from safetensors.torch import load_file

from emodna_hf import EmoDnaForAudioClassification
from emodna_hf.objectives import build_objective
from emodna_hf.trainer import (
    OBJECTIVE_STATE,
    EmoDnaTrainer,
    EmoDnaTrainingArguments,
    SourceTargetBatchSampler,
)


def make_trainer(tmp_path, method="emodna", target=None, seed=0, **arg_overrides):
    torch.manual_seed(seed)
    model = EmoDnaForAudioClassification(tiny_config(adaptation_method=method, pseudo_label_warmup=0.0))
    args = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=6, learning_rate=3e-3,
        logging_steps=2, report_to="none", use_cpu=True, save_strategy="no", seed=seed, disable_tqdm=True,
    )
    args.update(arg_overrides)
    source = toy_corpus(0, 24, 0.0, seed=1)
    target = target if target is not None else toy_corpus(1, 16, 35.0, seed=2)
    return EmoDnaTrainer(
        model=model, args=EmoDnaTrainingArguments(**args), train_dataset=source, target_dataset=target,
        eval_dataset={"target": toy_corpus(1, 16, 35.0, seed=2)},
    )


def test_batch_sampler_mixes_halves_and_cycles_the_smaller_corpus():
    sampler = SourceTargetBatchSampler(num_source=10, num_target=3, batch_size=4, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3  # ceil(max(10, 3) / 4)
    for batch in batches:
        assert all(i < 10 for i in batch[:4]) and all(10 <= i < 13 for i in batch[4:])
    target_seen = [i for b in batches for i in b[4:]]
    assert len(target_seen) == 12 and set(target_seen) == {10, 11, 12}  # cycled, each pass a permutation
    for start in range(0, 12, 3):
        assert sorted(target_seen[start:start + 3]) == [10, 11, 12]
    assert list(SourceTargetBatchSampler(10, 3, 4, seed=0)) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    assert len(SourceTargetBatchSampler(10, 3, 4, epoch_length="target")) == 1
    with pytest.raises(ValueError, match="0 target rows"):
        SourceTargetBatchSampler(10, 0, 4)


@pytest.mark.slow
def test_target_labels_are_never_read(tmp_path):
    labelled = toy_corpus(1, 16, 35.0, seed=2)
    permuted = labelled.map(lambda row, i: {"labels": (row["labels"] + 1 + i) % 4}, with_indices=True)
    unlabelled = toy_corpus(1, 16, 35.0, seed=2, with_labels=False)
    weights = []
    for target in (labelled, permuted, unlabelled):
        trainer = make_trainer(tmp_path, target=target)
        trainer.train()
        weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    for other in weights[1:]:
        for name, tensor in weights[0].items():
            torch.testing.assert_close(other[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["emodna", "source_only", "dann", "mmd", "cdan", "mcc"])
def test_each_loss_term_is_logged(tmp_path, method):
    trainer = make_trainer(tmp_path, method=method)
    trainer.train()
    logged = set().union(*(row.keys() for row in trainer.state.log_history if "loss" in row))
    expected = {"loss", "loss_classification"}
    if method in ("dann", "mmd", "emodna", "cdan"):
        expected.add("loss_corpus_alignment")
    if method in ("dann", "emodna", "cdan"):
        expected |= {"domain_accuracy", "grl_coefficient"}
    if method == "mcc":
        expected.add("loss_class_confusion")
    if method == "emodna":
        expected |= {"loss_decoupling", "loss_corpus_classification", "loss_class_alignment", "loss_pseudo_label",
                     "pseudo_label_mask_rate", "threshold_global", "threshold_angry", "threshold_sad"}
    assert expected <= logged, expected - logged
    if method == "source_only":
        assert not any(k.startswith(("loss_corpus", "loss_decoupling", "threshold")) for k in logged)
    metrics = trainer.evaluate()
    assert {"eval_target_uar", "eval_target_war", "eval_target_macro_f1", "eval_target_recall_angry"} <= set(metrics)


@pytest.mark.slow
def test_curriculum_rule_logs_its_target_share(tmp_path):
    trainer = make_trainer(tmp_path, method="emodna")
    trainer.model.config.pseudo_label_selection = "curriculum"
    trainer.objective = build_objective(trainer.model.config, target_size=16, gather=trainer.accelerator.gather,
                                        pooled_size=trainer.model.pooling.output_size)
    trainer.train()
    logged = set().union(*(row.keys() for row in trainer.state.log_history if "loss" in row))
    assert {"pseudo_label_target_fraction", "pseudo_label_mask_rate"} <= logged and "threshold_global" not in logged
    assert int(trainer.pseudo_labeler.memory_count) == 16


@pytest.mark.slow
def test_ablation_switches_remove_their_terms(tmp_path):
    trainer = make_trainer(tmp_path)
    config = trainer.model.config
    config.use_decoupling, config.use_class_alignment = False, False
    trainer.train()
    logged = set().union(*(row.keys() for row in trainer.state.log_history))
    assert "loss_corpus_alignment" in logged
    assert not {"loss_decoupling", "loss_class_alignment", "loss_pseudo_label", "pseudo_label_mask_rate"} & logged


@pytest.mark.slow
def test_gradient_accumulation_keeps_loss_scale(tmp_path):
    """With GA the logged loss must stay a per-batch mean, not GA times it (the transformers#47688 trap)."""
    plain = make_trainer(tmp_path, method="source_only", max_steps=2, logging_steps=1, learning_rate=1e-9)
    plain.train()
    accumulated = make_trainer(tmp_path, method="source_only", max_steps=1, logging_steps=1, learning_rate=1e-9,
                               gradient_accumulation_steps=2)
    accumulated.train()
    plain_losses = [row["loss"] for row in plain.state.log_history if "loss" in row]
    accumulated_loss = next(row["loss"] for row in accumulated.state.log_history if "loss" in row)
    assert accumulated_loss == pytest.approx(np.mean(plain_losses), rel=1e-3)


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    straight = make_trainer(tmp_path / "a", max_steps=8)
    straight.train()

    first = make_trainer(tmp_path / "b", max_steps=8, save_strategy="steps", save_steps=4)
    first.train()
    checkpoint = tmp_path / "b" / "out" / "checkpoint-4"
    saved_state = load_file(checkpoint / OBJECTIVE_STATE)
    # The method's parts (discriminator, corpus branch) and the FreeMatch rule's state.
    assert {"pseudo_labeler.global_confidence", "pseudo_labeler.class_marginals"} <= set(saved_state)
    assert any(k.startswith("corpus_aligner.discriminator.") for k in saved_state)
    assert any(k.startswith("decoupling_branch.corpus_encoder.") for k in saved_state)
    saved_state = {k.split(".", 1)[1]: v for k, v in saved_state.items() if k.startswith("pseudo_labeler.")}
    resumed = make_trainer(tmp_path / "c", max_steps=8)
    resumed.train(resume_from_checkpoint=str(checkpoint))

    # The restored thresholds are those of step 4, not the fresh initial ones...
    assert not torch.allclose(saved_state["class_marginals"], torch.full((4,), 0.25))
    # ...and training continues to the same weights and pseudo-label state as the uninterrupted run.
    for name, tensor in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    for name, tensor in straight.objective.state_dict().items():
        torch.testing.assert_close(resumed.objective.state_dict()[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_missing_corpus_column_is_a_clear_error(tmp_path):
    source = toy_corpus(0, 8, 0.0, seed=1).remove_columns("corpus_id")
    with pytest.raises(ValueError, match="source dataset needs a 'corpus_id'"):
        EmoDnaTrainer(model=EmoDnaForAudioClassification(tiny_config()),
                      args=EmoDnaTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"),
                      train_dataset=source, target_dataset=toy_corpus(1, 8, 0.0, seed=2))
    with pytest.raises(ValueError, match="needs a target_dataset"):
        EmoDnaTrainer(model=EmoDnaForAudioClassification(tiny_config()),
                      args=EmoDnaTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"),
                      train_dataset=toy_corpus(0, 8, 0.0, seed=1))


@pytest.mark.slow
def test_held_out_source_is_evaluated_under_its_own_statistics(tmp_path):
    trainer = make_trainer(tmp_path, method="emodna")
    trainer.train()
    source = toy_corpus(0, 8, 0.0, seed=5)
    own = trainer.predict(source).predictions
    model = trainer.model.eval()
    norm = model.corpus_normalization
    assert not torch.allclose(norm.running_mean[0], norm.running_mean[1])
    with torch.no_grad():
        inputs = trainer.data_collator([source[i] for i in range(len(source))])
        expected = model(inputs["input_values"], inputs["attention_mask"], corpus_ids=inputs["corpus_ids"]).logits
        as_target = model(inputs["input_values"], inputs["attention_mask"]).logits
    np.testing.assert_allclose(own, expected.numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(own, as_target.numpy(), atol=1e-4)  # 10x the tolerance of the equalities
    trainer.eval_corpus_statistics = False  # e.g. a saved model on new corpora: the target's statistics
    np.testing.assert_allclose(trainer.predict(source).predictions, as_target.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("in_memory", [True, False])
def test_training_rows_are_the_datasets_rows(in_memory, monkeypatch):
    """torch's fetcher calls `__getitems__` for a whole batch: the rows and their order are the datasets' rows,
    across the source/target boundary, with target labels dropped, whether the columns were read into memory
    (small ones) or are read row by row."""
    from factories import toy_corpus

    from emodna_hf.trainer import UDATrainDataset

    monkeypatch.setattr(UDATrainDataset, "IN_MEMORY_BYTES", 2**30 if in_memory else 0)
    source, target = toy_corpus(0, 6, 0.0, seed=0), toy_corpus(1, 5, 30.0, seed=1)
    dataset = UDATrainDataset(source, target)
    assert (dataset._columns[0] is not None) == in_memory
    indices = [9, 0, 6, 3, 10, 5, 7]
    rows = dataset.__getitems__(indices)
    assert [dataset[i]["corpus_id"] for i in indices] == [row["corpus_id"] for row in rows]
    for index, row in zip(indices, rows, strict=True):
        expected = source[index] if index < 6 else target[index - 6]
        np.testing.assert_array_equal(np.asarray(row["input_values"]), np.asarray(expected["input_values"]))
        assert row["corpus_id"] == expected["corpus_id"]
        if index < 6:
            assert row["labels"] == expected["labels"]
        else:
            assert "labels" not in row


def test_several_processes_per_gpu_are_refused_in_one_line(monkeypatch, tmp_path):
    import torch

    from emodna_hf.trainer import EmoDnaTrainingArguments

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="2 processes were launched on this machine but it has 1 GPU"):
        EmoDnaTrainingArguments(output_dir=str(tmp_path), report_to="none")


def test_a_target_only_method_is_refused_by_the_mixed_batch_trainer(tmp_path):
    with pytest.raises(ValueError, match="target-only batches.*SourceFreeTrainer"):
        make_trainer(tmp_path, method="tent")
