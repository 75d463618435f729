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
    assert isinstance(ours.predictions, tuple) and len(ours.predictions) == len(theirs.predictions) == 3
    for a, b in zip(ours.predictions, theirs.predictions, strict=True):
        assert a.shape[0] == 11 and np.array_equal(a, b)
    assert np.array_equal(ours.label_ids, theirs.label_ids)
    assert ours.metrics == theirs.metrics and ours.num_samples == theirs.num_samples == 11
