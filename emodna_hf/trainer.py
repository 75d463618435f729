"""`EmoDnaTrainer`: unsupervised domain adaptation (Emo-DNA and baselines) inside 🤗 `Trainer`.

Every training batch holds a labelled source half and an unlabelled target half (`SourceTargetBatchSampler`); one
forward pass over both returns what the method reads (`output_embeddings=True`), and `compute_loss` sums the weighted
loss terms that the method of `config.adaptation_method` returns (its source term included). The method's own
trainable parts (discriminators, Emo-DNA's corpus branch) are optimised, synchronised across processes and
checkpointed with the model, and never saved with it. See docs/method.md for the maths.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from accelerate.utils import DistributedType
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader, Sampler
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import EvalLoopOutput, EvalPrediction, speed_metrics

from .corpus_statistics import set_corpus_statistics, source_class_weights  # noqa: F401 (re-exported)
from .data.collator import UDADataCollator
from .data.memory import ReleaseMemoryCallback, RowCounter, release_memory
from .data.stream_batches import SourceTargetStream, for_process
from .data.streaming import is_streamed
from .losses import grl_coefficient
from .metrics import make_compute_metrics
from .modeling import EmoDnaConfig
from .objective_training import (  # noqa: F401 (the state file names are re-exported)
    LEGACY_PSEUDO_LABELER_STATE,
    OBJECTIVE_STATE,
    ObjectivePartsMixin,
    ZeroObjectiveGradients,
)
from .objectives import ObjectiveBatch, build_objective
from .processes import check_gpus_per_process, launched_without_accelerator
from .selection import label_free_criteria

logger = logging.getLogger(__name__)
MODEL_INPUT_COLUMNS = ("input_values", "input_features", "labels", "corpus_id", "speaker_mean", "speaker_std")
# Outputs not gathered at evaluation: the logits and the embeddings are what metrics, criteria and reports need.
PREDICTION_IGNORE_KEYS = ["pooled_features"]


class WithEmbeddings:
    """Collator wrapper that asks the model for its embeddings (`output_embeddings=True`) in every batch."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        batch = self.collator(examples)
        batch["output_embeddings"] = True
        return batch


@dataclass
class EmoDnaTrainingArguments(TrainingArguments):
    """`TrainingArguments` for [`EmoDnaTrainer`].

    `per_device_train_batch_size` counts **source** rows; every training batch also holds as many target rows, so
    a step processes twice that many utterances per device. The adaptation method and loss weights live in the
    model's [`EmoDnaConfig`], so that a saved model records how it was trained.

    Defaults differ from `TrainingArguments` where UDA needs it: `label_names=["labels"]` (the corpus ids are not
    labels), `remove_unused_columns=False` (the trainer selects the columns itself).
    """

    epoch_length: str = field(
        default="max",
        metadata={
            "help": "How many batches make an epoch: 'max' (the larger of source and target is seen once, the "
            "smaller one cycled), 'source' or 'target'."
        },
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output folder that already holds a trained model (its files are "
                  "replaced). Without it such a run stops before loading any data."},
    )
    shuffle_buffer_size: int = field(
        default=1000,
        metadata={"help": "Streamed corpora only: rows in the shuffle buffer (IterableDataset.shuffle)."},
    )
    label_names: list[str] | None = field(default_factory=lambda: ["labels"])
    remove_unused_columns: bool = False

    def __post_init__(self):
        if not self.use_cpu and launched_without_accelerator():
            # Several processes (torchrun / `accelerate launch --multi_gpu`) on a machine without GPUs: accelerate
            # only sets up CPU data parallelism (gloo) when asked for the CPU; without it every process would
            # train the whole run alone, all writing the same output folder.
            logger.info("%s processes and no accelerator: data-parallel training on the CPU (gloo).",
                        os.environ["WORLD_SIZE"])
            self.use_cpu = True
        check_gpus_per_process(self.use_cpu)
        super().__post_init__()
        if self.epoch_length not in ("max", "source", "target"):
            raise ValueError(f"epoch_length must be 'max', 'source' or 'target', got {self.epoch_length!r}")


class SourceTargetBatchSampler(Sampler[list[int]]):
    """Batches of `batch_size` source indices followed by `batch_size` target indices.

    Indices address `UDATrainDataset` (source rows first, then target rows). Each side is reshuffled every time it
    is exhausted, so the smaller corpus is cycled rather than truncated. The order is a pure function of
    `(seed, epoch)`, which makes resuming from a checkpoint reproduce the exact batches.
    """

    def __init__(self, num_source: int, num_target: int, batch_size: int, seed: int = 0, epoch_length: str = "max"):
        if num_source == 0 or num_target == 0:
            raise ValueError(f"Both corpora need rows: got {num_source} source and {num_target} target rows.")
        self.num_source, self.num_target, self.rows_per_corpus, self.seed = num_source, num_target, batch_size, seed
        # accelerate's BatchSamplerShard reads `batch_size` as the length of every full batch it shards.
        self.batch_size = 2 * batch_size
        rows = {"max": max(num_source, num_target), "source": num_source, "target": num_target}[epoch_length]
        self.num_batches = max(1, math.ceil(rows / batch_size))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def _stream(self, size: int, offset: int, generator: np.random.Generator) -> Iterator[int]:
        while True:
            yield from (offset + generator.permutation(size)).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        generator = np.random.default_rng([self.seed, self.epoch])
        source = self._stream(self.num_source, 0, generator)
        target = self._stream(self.num_target, self.num_source, generator)
        for _ in range(self.num_batches):
            yield [next(source) for _ in range(self.rows_per_corpus)] + [
                next(target) for _ in range(self.rows_per_corpus)
            ]


def training_columns(source, target):
    """THE gate of target labels: the columns training may read of the source (labels required) and of the target
    (its `labels` column, present where a benchmark target is labelled for scoring, is dropped here; every
    training path, map-style or streamed, goes through this function). `source=None`: target-only training
    (source-free adaptation, `emodna_hf.source_free`), whose source side is then None."""
    target = target.remove_columns([c for c in ("labels",) if c in target.column_names])
    return (None if source is None else _model_columns(source, "source", require_labels=True),
            _model_columns(target, "target", require_labels=False))


class UDATrainDataset(torch.utils.data.Dataset):
    """Source rows (with labels) followed by target rows, whose labels are dropped (`training_columns`).

    A side whose columns are small (cached functionals: 88 floats a row) is read into numpy arrays once, at most
    `IN_MEMORY_BYTES`: reading rows through `datasets`' formatting costs ~0.5 ms a row, most of a small model's
    step. Larger sides (frame-level features, waveforms) are read row by row from their memory-mapped files, as
    memory must stay flat in corpus size.
    """

    IN_MEMORY_BYTES = 64 * 2**20

    def __init__(self, source: Dataset, target: Dataset):
        self.source, self.target = training_columns(source, target)
        self.rows_read = RowCounter()  # gives back the pages of memory-mapped rows read (data/memory.py)
        self._columns = [_columns_in_memory(side, self.IN_MEMORY_BYTES) for side in (self.source, self.target)]

    def __len__(self) -> int:
        return len(self.source) + len(self.target)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """A batch's rows, in order (what torch's fetcher calls): one read per side."""
        n_source = len(self.source)
        rows: list[dict[str, Any] | None] = [None] * len(indices)
        for side, columns, positions, offset in (
            (self.source, self._columns[0], [i for i, index in enumerate(indices) if index < n_source], 0),
            (self.target, self._columns[1], [i for i, index in enumerate(indices) if index >= n_source], n_source),
        ):
            if not positions:
                continue
            if columns is None:
                self.rows_read.count(len(positions))
                columns = side[[indices[i] - offset for i in positions]]
                for j, i in enumerate(positions):
                    rows[i] = {name: values[j] for name, values in columns.items()}
            else:
                for i in positions:
                    rows[i] = {name: values[indices[i] - offset] for name, values in columns.items()}
        return rows


def _columns_in_memory(dataset: Dataset, max_bytes: int) -> dict[str, np.ndarray] | None:
    """Every column of `dataset` as numpy (`None` when its table is larger than `max_bytes`, or empty)."""
    if not len(dataset) or dataset.data.nbytes > max_bytes:
        return None
    columns = dict(dataset.with_format("numpy")[:])
    release_memory(trim=False)  # the mapped pages just read: the arrays are copies
    return columns


def _stream_dataset(source, target, args: EmoDnaTrainingArguments) -> SourceTargetStream:
    """The training rows when a corpus is streamed (see `emodna_hf.data.streaming` for what changes)."""
    if args.max_steps <= 0:
        raise ValueError("A streamed corpus has no length: set max_steps (training is defined by steps, not epochs).")
    source, target = training_columns(source, target)
    source, target = (for_process(side, args.process_index, args.world_size) for side in (source, target))
    return SourceTargetStream(source, target, rows_per_corpus=args.per_device_train_batch_size,
                              seed=args.data_seed if args.data_seed is not None else args.seed,
                              shuffle_buffer_size=args.shuffle_buffer_size)


def _join(batches: Any) -> Any:
    """Per-batch outputs (a list of arrays, or of tuples of arrays) as one array (or tuple) concatenated on rows."""
    if not isinstance(batches, list):
        return batches  # None, or already joined
    if not batches:
        return None
    if isinstance(batches[0], (tuple, list)):
        return type(batches[0])(_join([batch[i] for batch in batches]) for i in range(len(batches[0])))
    return np.concatenate(batches, axis=0)


def _model_columns(dataset: Dataset, role: str, require_labels: bool) -> Dataset:
    """Keep the columns the model and losses read; fail early, naming the dataset and the missing column."""
    columns = dataset.column_names
    if "input_values" not in columns and "input_features" not in columns:
        raise ValueError(f"The {role} dataset needs an 'input_values' or 'input_features' column; has {columns}.")
    if "corpus_id" not in columns:
        raise ValueError(f"The {role} dataset needs a 'corpus_id' column (see emodna_hf.data.build_uda_data).")
    if require_labels and "labels" not in columns:
        raise ValueError(f"The {role} dataset needs a 'labels' column; has {columns}.")
    return dataset.select_columns([c for c in MODEL_INPUT_COLUMNS if c in columns])


class EmoDnaTrainer(ObjectivePartsMixin, Trainer):
    """`Trainer` for unsupervised domain adaptation from a labelled source to an unlabelled target corpus.

    Args:
        model: an [`EmoDnaForAudioClassification`]; its config selects the method (`adaptation_method`), the
            Emo-DNA components (`use_decoupling`, `use_class_alignment`, `use_corpus_alignment`,
            `adaptive_threshold`) and the loss weights.
        args: [`EmoDnaTrainingArguments`].
        train_dataset: the labelled source `Dataset` (`input_values` or cached `input_features`, `labels`,
            `corpus_id` in `0..num_corpora-2`).
        target_dataset: the unlabelled target `Dataset` (`corpus_id == num_corpora - 1`). A `labels` column, if
            present (a benchmark target labelled for scoring), is dropped before training (`training_columns`, the
            one place where target labels are removed).
        eval_dataset: e.g. `{"target": ..., "source": ...}`; metrics are UAR, WAR, macro-F1 and per-class recall,
            prefixed `eval_target_`, `eval_source_` (target ones only where the target is labelled, for scoring).
            With a `"target"` set, every evaluation also computes the label-free model-selection criteria of
            `emodna_hf.selection` (`eval_target_im`, `eval_target_snd`, `eval_target_snd_embeddings`, and
            `eval_dev_loss`, `eval_iwv_loss` with a `"source"` set), which `metric_for_best_model` may name.
        eval_corpus_statistics: in evaluation, give the model each row's `corpus_id`, so that corpus
            normalisation standardises held-out source rows with their own corpus's statistics (the source UAR then
            measures the source task: a check that it was learnt, not a ranking of target accuracy). `False` when
            the ids do not follow the training corpora (a saved model evaluated on new corpora): every row then
            gets the target's statistics, as at inference.
        Other arguments are those of `Trainer`. The default collator is [`UDADataCollator`] and the default
        `compute_metrics` is [`make_compute_metrics`] over the model's labels.
    """

    # Our losses are plain means: Trainer must divide them by the gradient-accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, model=None, args: EmoDnaTrainingArguments | None = None, train_dataset=None,
                 target_dataset: Dataset | None = None, eval_dataset=None, data_collator=None, compute_metrics=None,
                 eval_corpus_statistics: bool = True, **kwargs):
        if args is None:
            args = EmoDnaTrainingArguments(output_dir="emodna_output")
        config: EmoDnaConfig = model.config
        if data_collator is None:
            data_collator = UDADataCollator()
        if compute_metrics is None:
            compute_metrics = make_compute_metrics([config.id2label[i] for i in range(config.num_labels)])
        if train_dataset is not None:
            if target_dataset is None:
                raise ValueError("EmoDnaTrainer needs a target_dataset (the unlabelled target corpus) to train on.")
            if is_streamed(train_dataset) or is_streamed(target_dataset):
                train_dataset = _stream_dataset(train_dataset, target_dataset, args)
            else:
                train_dataset = UDATrainDataset(train_dataset, target_dataset)
                if config.corpus_statistics == "dataset" and model.corpus_normalization is not None:
                    set_corpus_statistics(model, train_dataset, data_collator)
        elif config.corpus_statistics == "dataset" and model.corpus_normalization is not None \
                and not bool(model.corpus_normalization.fixed):
            logger.warning("corpus_statistics='dataset': no training data to compute them from; the model's stored "
                           "statistics are used.")
        super().__init__(model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         data_collator=data_collator, compute_metrics=compute_metrics, **kwargs)
        self.add_callback(ReleaseMemoryCallback())  # memory flat in corpus size in evaluation (data/memory.py)
        self.add_callback(ZeroObjectiveGradients(self))
        self.target_corpus_id, self.eval_corpus_statistics = config.num_corpora - 1, eval_corpus_statistics
        # Inverse-frequency weights of the source classes (config.class_balanced_loss), from the whole source.
        self.source_class_weights = (
            source_class_weights(self.train_dataset.source, config.num_labels).to(self.args.device)
            if config.class_balanced_loss and isinstance(self.train_dataset, UDATrainDataset) else None)
        if config.class_balanced_loss and self.train_dataset is not None and self.source_class_weights is None:
            logger.warning("class_balanced_loss: a streamed source has no class counts; the source loss is "
                           "not weighted.")
        # The method (emodna_hf.objectives): its loss terms, statistics, trainable parts and pseudo-label state.
        # Built from the run's seed on every process (identical parts without a broadcast, and the same parts
        # whatever the process count).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.args.seed)
            self.objective = build_objective(
                config,
                target_size=None if target_dataset is None or is_streamed(target_dataset) else len(target_dataset),
                gather=self.accelerator.gather, pooled_size=self.accelerator.unwrap_model(model).pooling.output_size,
            ).to(self.args.device)
        if self.objective.batches != "source_and_target":
            raise ValueError(f"adaptation_method={config.adaptation_method!r} trains on target-only batches "
                             f"(batches={self.objective.batches!r}): use SourceFreeTrainer (recipes/adapt.py), not "
                             "EmoDnaTrainer, whose batches mix labelled source and unlabelled target rows.")
        if self.accelerator.distributed_type in (DistributedType.DEEPSPEED, DistributedType.FSDP) and any(
                p.requires_grad for p in self.objective.parameters()):
            raise ValueError(f"adaptation_method={config.adaptation_method!r} trains parts of its own, which "
                             "EmoDnaTrainer synchronises under DDP (one or several GPUs or CPU processes); "
                             "DeepSpeed and FSDP are not supported.")
        # Loss terms and statistics of each step, as detached tensors; averaged, gathered across processes and
        # flushed at every logging step (TRL's pattern), so logging costs one sync per log, not per step.
        self._metrics: dict[str, defaultdict[str, list[torch.Tensor]]] = {
            "train": defaultdict(list), "eval": defaultdict(list)}

    @property
    def pseudo_labeler(self) -> nn.Module | None:
        """The objective's pseudo-labeler (training state saved in checkpoints), if the method has one."""
        return self.objective.pseudo_labeler

    # --- data -----------------------------------------------------------------------------------------------------

    def get_train_dataloader(self) -> DataLoader:
        if self.train_dataset is None:
            raise ValueError("EmoDnaTrainer: training requires a train_dataset and a target_dataset.")
        if isinstance(self.train_dataset, SourceTargetStream):
            return self._get_stream_dataloader(self.train_dataset)
        dataset: UDATrainDataset = self.train_dataset
        sampler = SourceTargetBatchSampler(
            len(dataset.source),
            len(dataset.target),
            self._train_batch_size,
            seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed,
            epoch_length=self.args.epoch_length,
        )
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    def _get_stream_dataloader(self, stream: SourceTargetStream) -> DataLoader:
        """Mixed batches from a streamed corpus: the stream yields rows in batch order, the loader cuts batches."""
        stream.rows_per_corpus = self._train_batch_size
        workers = self.args.dataloader_num_workers
        shards = stream.min_shards()
        if shards is not None and workers > shards:
            logger.warning("A streamed corpus has %d shard(s): %d dataloader worker(s) instead of %d.", shards,
                           shards, workers)
            workers = shards
        loader = DataLoader(stream, batch_size=2 * self._train_batch_size, collate_fn=self.data_collator,
                            num_workers=workers, pin_memory=self.args.dataloader_pin_memory)
        # accelerate would read an iterable loader on rank 0 only and split its batches between processes (which
        # fails on batches padded to different lengths): each process reads its own part instead (`for_process`).
        return self.accelerator.prepare(loader) if self.args.world_size == 1 else loader

    def _get_eval_dataset_columns(self, dataset: Dataset) -> Dataset:
        return _model_columns(dataset, "evaluation", require_labels=True)

    def get_eval_dataloader(self, eval_dataset: str | Dataset | None = None) -> DataLoader:
        if isinstance(eval_dataset, str):
            eval_dataset = self.eval_dataset[eval_dataset]
        elif eval_dataset is None:
            eval_dataset = self.eval_dataset
        return super().get_eval_dataloader(self._get_eval_dataset_columns(eval_dataset))

    def get_test_dataloader(self, test_dataset: Dataset) -> DataLoader:
        return super().get_test_dataloader(self._get_eval_dataset_columns(test_dataset))

    # --- evaluation: metrics of every set, then the label-free criteria across sets --------------------------------

    def evaluation_loop(self, *args, **kwargs) -> EvalLoopOutput:
        """`Trainer.evaluation_loop` with the batches' outputs concatenated once, at the end, not after every batch.

        transformers (`eval_do_concat_batches=True`) copies everything gathered so far at every batch: on a 25k-row
        target the churn peaked ~140 MB above the outputs' own 26 MB (logits and both embeddings), growing with the
        corpus. Kept as a list and joined once, the peak is twice the outputs. Same arrays, same metrics.
        """
        if not self.args.eval_do_concat_batches or self.args.batch_eval_metrics:
            return super().evaluation_loop(*args, **kwargs)
        compute_metrics, joined = self.compute_metrics, {}

        def on_joined(prediction: EvalPrediction) -> dict[str, float]:
            joined.update(predictions=_join(prediction.predictions), label_ids=_join(prediction.label_ids))
            return compute_metrics(EvalPrediction(**joined, losses=_join(prediction.losses),
                                                  inputs=_join(prediction.inputs)))

        self.args.eval_do_concat_batches = False
        self.compute_metrics = on_joined if compute_metrics is not None else None
        try:
            output = super().evaluation_loop(*args, **kwargs)
        finally:
            self.args.eval_do_concat_batches, self.compute_metrics = True, compute_metrics
        if not joined:
            joined = {"predictions": _join(output.predictions), "label_ids": _join(output.label_ids)}
        return output._replace(**joined)

    def evaluate(self, eval_dataset: Dataset | dict[str, Dataset] | None = None, ignore_keys: list[str] | None = None,
                 metric_key_prefix: str = "eval") -> dict[str, float]:
        """`Trainer.evaluate`, plus, when the sets include `"target"`, the label-free selection criteria.

        The sets are evaluated one after the other (one `evaluation_loop` each, embeddings included) and logged
        together, so that `on_evaluate` callbacks (best-model tracking, early stopping) see every metric at once.
        The criteria read logits and emotion embeddings (the corpus embeddings are not kept) of both sets and the
        held-out source's labels; target labels, where present, only give the `eval_target_uar`-style scores.
        """
        sets = eval_dataset if eval_dataset is not None else self.eval_dataset
        if not (isinstance(sets, dict) and "target" in sets):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        self._memory_tracker.start()
        started = time.time()
        metrics: dict[str, float] = {}
        outputs = {}
        collator = self.data_collator
        self.data_collator = WithEmbeddings(collator)
        try:
            for name, dataset in sets.items():
                output = self.evaluation_loop(
                    self.get_eval_dataloader(dataset), description=f"Evaluation ({name})",
                    prediction_loss_only=False, ignore_keys=[*PREDICTION_IGNORE_KEYS, "corpus_embeddings"],
                    metric_key_prefix=f"{metric_key_prefix}_{name}",
                )
                metrics.update(output.metrics)
                outputs[name] = output
        finally:
            self.data_collator = collator
        target, source = outputs["target"], outputs.get("source")
        criteria = label_free_criteria(
            target.predictions[0], target.predictions[1],
            *((source.predictions[0], source.label_ids, source.predictions[1]) if source is not None else ()),
            seed=self.args.seed,
        )
        metrics.update({f"{metric_key_prefix}_{name}": value for name, value in criteria.items()})
        metrics.update(speed_metrics(metric_key_prefix, started, num_samples=sum(o.num_samples for o in outputs.values())))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics

    # --- loss -----------------------------------------------------------------------------------------------------

    @property
    def training_progress(self) -> float:
        """Fraction of training done, in [0, 1]; drives the GRL ramp and the pseudo-label warm-up."""
        if not self.state.max_steps:
            return 0.0
        return min(1.0, self.state.global_step / self.state.max_steps)

    def compute_loss(self, model: nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | None = None):
        corpus_ids = inputs.pop("corpus_ids", None)
        if not model.training:
            if corpus_ids is not None and self.eval_corpus_statistics:
                inputs["corpus_ids"] = corpus_ids
            outputs = model(**inputs)
            if inputs.get("output_embeddings") and self.train_dataset is not None:
                # The method's own embeddings (Emo-DNA's corpus branch) for the reports; only where this trainer
                # trains the method (a saved model evaluated alone has no such parts).
                self.objective.eval()
                for name, value in self.objective.evaluation_outputs(outputs).items():
                    outputs[name] = value
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        config: EmoDnaConfig = self.accelerator.unwrap_model(model).config
        if corpus_ids is None:
            raise ValueError("Training batches need 'corpus_ids' (from the datasets' 'corpus_id' column).")
        is_target = corpus_ids == self.target_corpus_id
        progress = self.training_progress
        grl = grl_coefficient(progress, gamma=config.grl_gamma)
        labels = inputs.pop("labels")  # the method's source term reads them, not the model
        outputs = model(**inputs, corpus_ids=corpus_ids, output_embeddings=True)
        updates = max(1, self.state.max_steps) * self.args.gradient_accumulation_steps
        self.objective.train()
        terms, stats = self.objective(ObjectiveBatch(
            outputs, labels, corpus_ids, is_target, progress, grl, total_updates=updates,
            class_weights=self.source_class_weights))
        if not terms:
            raise ValueError(f"adaptation_method={config.adaptation_method!r} returned no loss term.")
        loss = sum(weight * value for value, weight in terms.values())
        self._record("train", {**stats, **{f"loss_{name}": value.detach() for name, (value, _) in terms.items()}})
        return (loss, outputs) if return_outputs else loss

    # --- logging --------------------------------------------------------------------------------------------------

    def _record(self, mode: str, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            self._metrics[mode][name].append(
                torch.as_tensor(value, dtype=torch.float32, device=self.args.device).detach().reshape(()))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        names = [name for name, values in self._metrics[mode].items() if values]
        if names:
            # One gather for all statistics: each process's means, then the mean over processes.
            means = torch.stack([torch.stack(self._metrics[mode][name]).mean() for name in names])
            means = self.accelerator.gather(means[None]).mean(0).tolist()
            prefix = "eval_" if mode == "eval" else ""
            logs.update({f"{prefix}{name}": value for name, value in zip(names, means, strict=True)})
        super().log(logs, start_time)
        self._metrics[mode].clear()
