"""Evaluation with embeddings (for the plots and silhouettes) and `evaluate_model`, the evaluation of a saved
model on any corpora (what `recipes/evaluate_model.py` runs)."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, Features, Value

from . import reporting
from .arguments import EvaluationArguments, looks_like_local_path
from .card import corpus_info, versions
from .data import SCHEMES, load_corpus
from .preparation import prepare_dataset
from .selection import label_free_criteria
from .trainer import PREDICTION_IGNORE_KEYS, EmoDnaTrainer, EmoDnaTrainingArguments, WithEmbeddings


@dataclass
class Evaluation:
    """Predictions of one evaluation set, with its metrics (`uar`, `war`, `macro_f1`, `recall`, `loss`, `n`)."""

    name: str
    metrics: dict[str, Any]
    predictions: np.ndarray
    labels: np.ndarray
    corpus_ids: np.ndarray
    emotion_embeddings: np.ndarray
    corpus_embeddings: np.ndarray | None  # the method's corpus-specific branch (Emo-DNA) where it has one
    confusion_matrix: np.ndarray
    logits: np.ndarray | None = None


def predict_with_embeddings(trainer: EmoDnaTrainer, dataset: Dataset, name: str,
                            label_names: list[str]) -> Evaluation:
    """One pass of `trainer.predict` (distributed-safe) giving metrics, predictions and the embeddings (the
    corpus-specific ones only where the trainer's method has a trained corpus branch)."""
    from .metrics import confusion_matrix

    collator = trainer.data_collator
    trainer.data_collator = WithEmbeddings(collator)
    try:
        output = trainer.predict(dataset, ignore_keys=PREDICTION_IGNORE_KEYS, metric_key_prefix=f"eval_{name}")
    finally:
        trainer.data_collator = collator
    logits, emotion_embeddings, *corpus_embeddings = output.predictions
    labels = np.asarray(output.label_ids).reshape(-1)
    logits = np.asarray(logits, dtype=np.float64)
    predictions = logits.argmax(-1)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    # What needs no labels: how the model spreads its predictions over the classes and how sure it is.
    metrics: dict[str, Any] = {
        "n": int(len(labels)),
        "labelled": bool((labels != -100).any()),
        "predicted_distribution": {label: float((predictions == c).mean()) for c, label in enumerate(label_names)},
        "mean_confidence": float(probabilities.max(-1).mean()),
    }
    if metrics["labelled"]:
        prefix = f"eval_{name}_"
        raw = {k[len(prefix):]: v for k, v in output.metrics.items() if k.startswith(prefix)}
        metrics.update(uar=raw["uar"], war=raw["war"], macro_f1=raw["macro_f1"], loss=raw.get("loss"),
                       recall={label: raw[f"recall_{label}"] for label in label_names})
    return Evaluation(
        name=name,
        metrics=metrics,
        predictions=predictions,
        labels=labels,
        corpus_ids=np.asarray(dataset.with_format("numpy")["corpus_id"][:], dtype=np.int64),  # no Python list
        emotion_embeddings=np.asarray(emotion_embeddings),
        corpus_embeddings=np.asarray(corpus_embeddings[0]) if corpus_embeddings else None,
        confusion_matrix=confusion_matrix(predictions, labels, len(label_names)) if metrics["labelled"] else None,
        logits=logits,
    )


PREDICTIONS_FILE = "predictions.parquet"


def predictions_table(evaluation: Evaluation, dataset: Dataset, label_names: list[str],
                      corpus_names: list[str]) -> Dataset:
    """One row per utterance of `evaluation`: `corpus`, `utt_id` (the corpus's id, or its file path relative to the
    corpus folder without extension), `speaker` (None where unknown), `predicted_label`, `confidence`, one
    `probability_<class>` column per class, and `label`, the true class where the corpus has one (else None).

    What a user labelling a new corpus keeps: `datasets.load_dataset("parquet", data_files=...)` or pandas reads it.
    """
    n = len(evaluation.predictions)
    columns = set(dataset.column_names)
    corpus_ids = evaluation.corpus_ids
    corpora = [corpus_names[int(c)] if 0 <= int(c) < len(corpus_names) else str(int(c)) for c in corpus_ids]
    utt_ids = (list(dataset.select_columns(["utt_id"])["utt_id"])[:n] if "utt_id" in columns
               else [f"{corpus}-{i:06d}" for i, corpus in enumerate(corpora)])
    speakers: list[str | None] = [None] * n
    if "speaker" in columns:
        # Stored as "<corpus>:<speaker>" (speakers of different corpora never merge); written as the corpus has it.
        raw = list(dataset.select_columns(["speaker"])["speaker"])[:n]
        speakers = [None if s is None or s.endswith(":unknown") else s.split(":", 1)[-1] for s in raw]
    logits = np.asarray(evaluation.logits, dtype=np.float64)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    table: dict[str, list] = {
        "corpus": corpora, "utt_id": [str(u) for u in utt_ids], "speaker": speakers,
        "predicted_label": [label_names[int(p)] for p in evaluation.predictions],
        "confidence": probabilities.max(-1).astype(np.float32).tolist(),
    }
    for c, name in enumerate(label_names):
        table[f"probability_{name}"] = probabilities[:, c].astype(np.float32).tolist()
    table["label"] = [label_names[int(y)] if y >= 0 else None for y in evaluation.labels]
    return Dataset.from_dict(table, features=Features({
        **{k: Value("string") for k in ("corpus", "utt_id", "speaker", "predicted_label")},
        "confidence": Value("float32"), **{f"probability_{name}": Value("float32") for name in label_names},
        "label": Value("string")}))


def write_predictions(path: Path, evaluations: list[tuple[Evaluation, Dataset]], label_names: list[str],
                      corpus_names: list[str]) -> Path:
    """The per-utterance predictions of every `(evaluation, dataset)` in one Parquet file (`predictions_table`)."""
    from datasets import concatenate_datasets

    tables = [predictions_table(e, ds, label_names, corpus_names) for e, ds in evaluations]
    concatenate_datasets(tables).to_parquet(str(path))
    return path


def selection_criteria(target: Evaluation, source: Evaluation | None, seed: int = 0) -> dict[str, float]:
    """The label-free model-selection criteria of the final model (`emodna_hf.selection`), as logged at every
    evaluation during training: the held-out source metrics and the criteria computed from the outputs."""
    criteria = label_free_criteria(
        target.logits, target.emotion_embeddings,
        *((source.logits, source.labels, source.emotion_embeddings) if source is not None else ()), seed=seed)
    if source is not None and source.metrics.get("labelled"):
        criteria = {"source_uar": source.metrics["uar"], "source_loss": source.metrics["loss"], **criteria}
    return criteria


def _projection_sample(evaluations: list[Evaluation], max_per_corpus: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"emotion": [], "corpus": [], "labels": [], "corpus_ids": [],
                                          "predicted": []}
    for evaluation in evaluations:
        for corpus_id in np.unique(evaluation.corpus_ids):
            rows = np.flatnonzero(evaluation.corpus_ids == corpus_id)
            if len(rows) > max_per_corpus:
                rows = np.sort(rng.choice(rows, max_per_corpus, replace=False))
            parts["emotion"].append(evaluation.emotion_embeddings[rows])
            if evaluation.corpus_embeddings is not None:
                parts["corpus"].append(evaluation.corpus_embeddings[rows])
            # Unlabelled rows (an unlabelled target) are shown by their predicted emotion.
            labels = evaluation.labels[rows]
            parts["labels"].append(np.where(labels == -100, evaluation.predictions[rows], labels))
            parts["predicted"].append(labels == -100)
            parts["corpus_ids"].append(evaluation.corpus_ids[rows])
    if len(parts["corpus"]) != len(parts["emotion"]):  # some (or all) sets without corpus embeddings
        parts["corpus"] = []
    return {k: np.concatenate(v) if v else None for k, v in parts.items()}


def analyse_embeddings(evaluations: list[Evaluation], max_projection_samples: int = 300,
                       seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A per-corpus sample of the embeddings and its silhouette scores (see `reporting.embedding_silhouettes`)."""
    sample = _projection_sample(evaluations, max_projection_samples, seed)
    silhouettes = reporting.embedding_silhouettes(sample["emotion"], sample["corpus"], sample["labels"],
                                                  sample["corpus_ids"])
    # Points coloured by the model's own prediction (no label): their "by emotion" grouping partly reflects the
    # classifier; the card and the plot say so.
    return sample, dict(silhouettes, n_points=int(len(sample["labels"])),
                        n_predicted_colour=int(sample["predicted"].sum()))


def write_plots(output_dir: Path, evaluations: list[Evaluation], label_names: list[str], corpus_names: list[str],
                *, titles: dict[str, str], projection: str = "pca", max_projection_samples: int = 300,
                seed: int = 0, figure_title: str | None = None, prefix: str = "") -> dict[str, Any]:
    """Confusion matrices and the embedding projection (file names start with `prefix`); returns the files and
    the embedding analysis."""
    files = {"confusion_matrix": prefix + reporting.CONFUSION_MATRIX_FILE, "embeddings": prefix + reporting.EMBEDDINGS_FILE}
    panels = [(titles[e.name], e.confusion_matrix) for e in evaluations if e.confusion_matrix is not None]
    if panels:
        reporting.save_confusion_matrices(output_dir / files["confusion_matrix"], panels, label_names)
    else:  # nothing labelled: no confusion matrix to draw
        del files["confusion_matrix"]
    sample, analysis = analyse_embeddings(evaluations, max_projection_samples, seed)
    reporting.save_embedding_projection(
        output_dir / files["embeddings"], sample["emotion"], sample["corpus"], sample["labels"],
        sample["corpus_ids"], label_names, corpus_names, method=projection, seed=seed, silhouettes=analysis,
        title=figure_title, predicted=sample["predicted"],
    )
    return {"files": files, "embedding_analysis": dict(analysis, projection=projection)}


def summary_metrics(evaluation: Evaluation) -> dict[str, Any]:
    matrix = evaluation.confusion_matrix
    return dict(evaluation.metrics, confusion_matrix=None if matrix is None else matrix.tolist())


def scheme_of(label_names: list[str]) -> str:
    """The label scheme whose classes (in order) are `label_names`."""
    for scheme, names in SCHEMES.items():
        if list(names) == list(label_names):
            return scheme
    raise ValueError(f"The model's labels {label_names} are not a built-in scheme ({dict(SCHEMES)}).")


def evaluate_model(eval_args: EvaluationArguments) -> dict[str, Any]:
    """Evaluate a saved Emo-DNA model on `eval_args`' corpora; write metrics.json and plots; return the metrics."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    started = time.time()
    eval_args.check_sources()
    model_path = eval_args.model_name_or_path
    if looks_like_local_path(model_path) and not Path(model_path).expanduser().is_dir():
        raise ValueError(f"Model folder {model_path} does not exist (pass a run's output folder or a Hub model id).")
    model = AutoModelForAudioClassification.from_pretrained(
        eval_args.model_name_or_path, revision=eval_args.revision, trust_remote_code=eval_args.trust_remote_code
    ).eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(eval_args.model_name_or_path, revision=eval_args.revision)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scheme = scheme_of(label_names)
    specs = eval_args.corpus_specs()
    datasets, reports = [], {}
    for corpus_id, spec in enumerate(specs):
        # Decoded and normalised audio in Arrow files of the cache folder, shard by shard, as for training.
        disk = {"cache_dir": eval_args.audio_cache_dir, "num_proc": eval_args.preprocessing_num_workers}
        # A corpus without labels is evaluated too (predictions, class shares, label-free criteria; no accuracy).
        dataset, reports[spec.name] = load_corpus(
            spec, scheme=scheme, sampling_rate=feature_extractor.sampling_rate, max_duration_s=eval_args.max_duration_s,
            require_labels=False, **disk,
        )
        dataset = dataset.add_column("corpus_id", [corpus_id] * len(dataset), feature=Value("int64"))
        # As training prepared it: a speaker-normalised model gets cached features and each row's speaker
        # statistics over this corpus's utterances of that speaker; a speaker-free one, the normalised waveforms.
        by_speaker = getattr(model.config, "speaker_normalization", False)
        datasets.append(prepare_dataset(dataset, model, feature_extractor, spec.name, batch_size=eval_args.batch_size,
                                        cache_features=None if by_speaker else False, **disk)[0])

    output_dir = Path(eval_args.output_dir)
    args = EmoDnaTrainingArguments(
        output_dir=str(output_dir), per_device_eval_batch_size=eval_args.batch_size, report_to="none",
        use_cpu=eval_args.use_cpu,
    )
    # The corpus ids here number the evaluated corpora, not the training ones: every row gets the target's
    # normalisation statistics, as at inference.
    trainer = EmoDnaTrainer(model=model, args=args, eval_corpus_statistics=False)
    evaluations = [predict_with_embeddings(trainer, ds, f"corpus{i}", label_names) for i, ds in enumerate(datasets)]
    for spec, evaluation in zip(specs, evaluations, strict=True):
        evaluation.name = spec.name
    record: dict[str, Any] = {
        "model": eval_args.model_name_or_path,
        "scheme": scheme,
        "label_names": label_names,
        "trained_on": getattr(model.config, "corpus_names", None),
        # Label-free criteria of each corpus as a target (emodna_hf.selection): comparable across models on an
        # unlabelled corpus.
        "corpora": {e.name: dict(summary_metrics(e), selection=label_free_criteria(e.logits, e.emotion_embeddings))
                    for e in evaluations},
        "data": {spec.name: {k: v for k, v in corpus_info(spec, reports[spec.name]).items()
                             if k in ("source_kind", "n", "classes", "dropped", "mapping")} for spec in specs},
        "config": dataclasses.asdict(eval_args),
        "versions": versions(),
    }
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        # Files of their own (eval_<corpora>*), so that evaluating into a run's folder never replaces its
        # metrics.json and plots, which the model card refers to.
        prefix = f"eval_{'+'.join(s.name for s in specs)}_"
        titles = {e.name: f"{e.name} — " + (f"UAR {e.metrics['uar']:.1%}" if e.metrics["labelled"] else "unlabelled")
                  for e in evaluations}
        # The model's name, not the machine's path to it (the figure may be shared).
        model_name = (Path(model_path).expanduser().resolve().name if looks_like_local_path(model_path)
                      else model_path)
        plots = write_plots(
            output_dir, evaluations, label_names, [s.name for s in specs], titles=titles,
            projection=eval_args.projection, max_projection_samples=eval_args.max_projection_samples,
            figure_title=f"{model_name} evaluated on {', '.join(s.name for s in specs)}", prefix=prefix,
        )
        predictions = write_predictions(output_dir / (prefix + PREDICTIONS_FILE),
                                        list(zip(evaluations, datasets, strict=True)), label_names,
                                        [s.name for s in specs])
        record["embedding_analysis"] = plots["embedding_analysis"]
        record["files"] = {"metrics": prefix.rstrip("_") + ".json", **plots["files"], "predictions": predictions.name}
        record["wall_time_s"] = time.time() - started
        reporting.write_metrics(output_dir / record["files"]["metrics"], record)
    record["output_dir"] = str(output_dir)
    return record
