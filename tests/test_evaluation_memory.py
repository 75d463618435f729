"""Evaluation memory that does not grow faster than the outputs: EmoDnaTrainer joins the batches once."""

import numpy as np
import torch
from factories import tiny_config, toy_corpus
from transformers import Trainer

from emodna_hf import EmoDnaForAudioClassification
from emodna_hf.trainer import PREDICTION_IGNORE_KEYS, EmoDnaTrainer, EmoDnaTrainingArguments, WithEmbeddings


def test_outputs_joined_once_equal_transformers_concatenation_per_batch(tmp_path):
    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config())
    args = EmoDnaTrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=3, report_to="none",
                                   use_cpu=True, disable_tqdm=True)
    trainer = EmoDnaTrainer(model=model, args=args)
    trainer.data_collator = WithEmbeddings(trainer.data_collator)
    dataset = toy_corpus(1, 11, 35.0, seed=2)  # 4 batches, the last one short
    ours = trainer.evaluation_loop(trainer.get_eval_dataloader(dataset), "Evaluation",
                                   prediction_loss_only=False, ignore_keys=PREDICTION_IGNORE_KEYS)
    assert trainer.args.eval_do_concat_batches and trainer.compute_metrics is not None  # restored
    theirs = Trainer.evaluation_loop(trainer, trainer.get_eval_dataloader(dataset), "Evaluation",
                                     prediction_loss_only=False, ignore_keys=PREDICTION_IGNORE_KEYS)
    # logits and emotion embeddings (a trainer that trains no method adds no corpus-branch embeddings)
    assert isinstance(ours.predictions, tuple) and len(ours.predictions) == len(theirs.predictions) == 2
    for a, b in zip(ours.predictions, theirs.predictions, strict=True):
        assert a.shape[0] == 11 and np.array_equal(a, b)
    assert np.array_equal(ours.label_ids, theirs.label_ids)
    assert ours.metrics == theirs.metrics and ours.num_samples == theirs.num_samples == 11


def test_evaluate_model_decodes_into_the_cache_folder_and_reuses_it(tmp_path):
    from emodna_hf.arguments import EvaluationArguments
    from emodna_hf.evaluation import evaluate_model
    from emodna_hf.feature_extraction import create_feature_extractor

    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config())
    model.save_pretrained(tmp_path / "model")
    create_feature_extractor(model.config).save_pretrained(tmp_path / "model")

    def run(cache: str, output: str) -> dict:
        return evaluate_model(EvaluationArguments(
            model_name_or_path=str(tmp_path / "model"), corpus_name=["synth-b"], corpus_dataset=["synthetic:synth-b"],
            corpus_load_kwargs='{"synth-b": {"n_per_class_per_speaker": 1, "n_speakers": 3}}', max_duration_s=0.5,
            output_dir=str(tmp_path / output), audio_cache_dir=cache, use_cpu=True, max_projection_samples=12))

    first = run(str(tmp_path / "cache"), "a")
    files = {path.name: path.stat().st_mtime_ns for path in (tmp_path / "cache").glob("*.arrow")}
    assert any(name.startswith("synth-b-decoded-") for name in files)
    assert any(name.startswith("normalised-") for name in files)
    second = run(str(tmp_path / "cache"), "b")
    assert {path.name: path.stat().st_mtime_ns for path in (tmp_path / "cache").glob("*.arrow")} == files  # reused
    in_memory = run("none", "c")
    for record in (second, in_memory):
        assert record["corpora"]["synth-b"]["confusion_matrix"] == first["corpora"]["synth-b"]["confusion_matrix"]
        assert record["corpora"]["synth-b"]["uar"] == first["corpora"]["synth-b"]["uar"]
