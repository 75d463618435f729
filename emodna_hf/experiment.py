"""One cross-corpus adaptation run, as one story: parse → load → model → train → evaluate → write → push.

:func:`run_experiment` is what `recipes/train.py` and the benchmarks run; the pieces live next door:
`emodna_hf.arguments` (the arguments), `emodna_hf.config_files` (YAML/JSON + command line), `emodna_hf.preparation` (corpora and model inputs),
`emodna_hf.evaluation` (predictions with embeddings, `evaluate_model`), `emodna_hf.card` (the model card),
`emodna_hf.reporting` (metrics.json and plots), `emodna_hf.hub` (the upload). Their public names are re-exported
here.

Protocol: the target's labels are never read in training and never used for model selection or early stopping
(`metric_for_best_model` may only name a held-out *source* metric or a label-free criterion of
`emodna_hf.selection`). Target results are transductive: the model is
evaluated on the unlabelled target utterances it adapted to.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from . import hub, reporting, selection
from .arguments import (  # noqa: F401 (re-exported)
    _CONFIG_DEFAULTS,
    DataArguments,
    EvaluationArguments,
    ModelArguments,
    check_corpus_source,
)
from .card import card_info, corpus_info, make_model_card, versions
from .checkpoints import resolve_checkpoint
from .config_files import ParsedArgs, build_parser, load_config_file, parse_args  # noqa: F401 (re-exported)
from .data import UDAData
from .data.feature_store import STORE_COUNTS
from .data.streaming import is_streamed
from .evaluation import (  # noqa: F401 (re-exported)
    PREDICTIONS_FILE,
    Evaluation,
    analyse_embeddings,
    evaluate_model,
    predict_with_embeddings,
    scheme_of,
    selection_criteria,
    summary_metrics,
    write_plots,
    write_predictions,
)
from .feature_extraction import create_feature_extractor
from .modeling import EmoDnaConfig, EmoDnaForAudioClassification
from .modeling.backbones_emodna import front_end
from .preparation import (  # noqa: F401 (re-exported)
    evaluation_rows,
    load_data,
    normalize_waveforms,
    prepare_inputs,
)
from .processes import SMALL_BACKBONES, choose_torch_threads  # noqa: F401 (re-exported)
from .trainer import EmoDnaTrainer, EmoDnaTrainingArguments

logger = logging.getLogger(__name__)


def build_model(model_args: ModelArguments, label_names: list[str], corpus_names: list[str],
                sampling_rate: int = 16000, speaker_normalization: bool = False) -> EmoDnaForAudioClassification:
    """A fresh model for this label space and these corpora (SSL backbone weights from the checkpoint, if any);
    `speaker_normalization`: the model standardises its cached features with each input's speaker statistics."""
    kwargs = model_args.config_kwargs()
    kwargs.update(
        speaker_normalization=speaker_normalization,
        id2label=dict(enumerate(label_names)),
        label2id={name: i for i, name in enumerate(label_names)},
        num_corpora=len(corpus_names),
        sampling_rate=sampling_rate,
        corpus_names=list(corpus_names),
    )
    if model_args.backbone_name_or_path:
        if "backbone_config" in kwargs:
            raise ValueError("backbone_config (config_overrides) and backbone_name_or_path exclude each other: the "
                             "checkpoint defines the encoder.")
        backbone_type = kwargs.pop("backbone_type", None)
        if sampling_rate != 16000:
            logger.warning("SSL checkpoints expect 16 kHz audio; sampling_rate is %d.", sampling_rate)
        model = EmoDnaForAudioClassification.from_backbone_pretrained(
            model_args.backbone_name_or_path, revision=model_args.backbone_revision, **kwargs
        )
        if backbone_type is not None and backbone_type != model.config.backbone_type:
            raise ValueError(
                f"backbone_type={backbone_type!r} but {model_args.backbone_name_or_path!r} is a "
                f"{model.config.backbone_type!r} checkpoint; drop backbone_type or fix it."
            )
        return model
    if front_end(kwargs.get("backbone_type", _CONFIG_DEFAULTS["backbone_type"])).ssl:
        logger.warning("No backbone_name_or_path: the %s backbone starts from random weights.", kwargs["backbone_type"])
    return EmoDnaForAudioClassification(EmoDnaConfig(**kwargs))


# Files a training run writes: a folder holding any of them holds a trained model or its results.
_RUN_OUTPUT_FILES = ("model.safetensors", "config.json", reporting.METRICS_FILE, "README.md")


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """Refuse to train into a folder that already holds a run's outputs unless `overwrite` is set."""
    existing = [name for name in _RUN_OUTPUT_FILES if (output_dir / name).exists()]
    if existing and not overwrite:
        raise ValueError(
            f"Output folder {output_dir} already holds a trained model or its results ({', '.join(existing)}); "
            "pass --overwrite_output_dir true to replace them, or choose another --output_dir."
        )


def check_model_selection(training_args: EmoDnaTrainingArguments) -> None:
    """Refuse target-label model selection (see `emodna_hf.selection.check_model_selection`)."""
    selection.check_model_selection(training_args.metric_for_best_model, training_args.load_best_model_at_end)


def run_experiment(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: EmoDnaTrainingArguments,
    *,
    data: UDAData | None = None,
    callbacks: list | None = None,
    write_outputs: bool = True,
    command: str | None = None,
    config_file: str | None = None,
) -> dict[str, Any]:
    """Train one adaptation run and evaluate it; write the output folder; push it if asked.

    Args:
        model_args, data_args, training_args: the three argument groups (see `parse_args`). They are not
            modified, so a loop can reuse them with `dataclasses.replace`.
        data: already loaded corpora (`load_data(data_args)`), e.g. shared by several runs of a benchmark.
        callbacks: extra `TrainerCallback`s.
        write_outputs: write the output folder (model, card, metrics.json, plots). Without it nothing is saved
            (a push request is then an error).
        command: how the run was launched, quoted in the model card's "Reproduce" section.
        config_file: the configuration file used, recorded in metrics.json.

    Returns:
        The `metrics.json` record: `target` and `source` (`uar`, `war`, `macro_f1`, `recall`, `loss`, `n`,
        `confusion_matrix`, `corpus`), `train`, `embedding_analysis`, `scenario`, `data`, `config`, `versions`,
        plus `output_dir`.
    """
    check_model_selection(training_args)
    output_dir = Path(training_args.output_dir)
    if write_outputs:
        check_output_dir(output_dir, training_args.overwrite_output_dir)
    if training_args.label_smoothing_factor:
        raise ValueError("label_smoothing_factor is not used by EmoDnaTrainer; set label_smoothing instead.")
    # Before any loading: a missing or cut-short checkpoint is reported at once, naming the file.
    resume_from = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)
    push_plan = None
    if training_args.push_to_hub:
        if not write_outputs:
            raise ValueError("push_to_hub needs write_outputs=True (the output folder is what gets pushed).")
        # Every process checks (no network), so that all fail together; only the main one creates the repo.
        hub.check_push_possible(training_args.hub_model_id or output_dir.name, token=training_args.hub_token)
        if training_args.should_save:
            push_plan = hub.prepare_push(
                training_args.hub_model_id or output_dir.name, token=training_args.hub_token,
                private=training_args.hub_private_repo, revision=training_args.hub_revision,
            )
    # Our own push (the whole folder, card included) replaces Trainer's; the caller's object stays untouched.
    args = dataclasses.replace(training_args, push_to_hub=False)
    started = time.time()

    from transformers import set_seed

    if data is None:
        logger.info("Loading corpora: %s → %s (%s)", ", ".join(data_args.source_name), data_args.target_name,
                    data_args.scheme)
        with args.main_process_first(desc="loading corpora"):
            data = load_data(data_args)
    set_seed(args.seed)
    model = build_model(model_args, data.label_names, data.corpus_names, data_args.sampling_rate,
                        speaker_normalization=data_args.speaker_normalization)
    feature_extractor = create_feature_extractor(model.config)
    model.to(args.device)  # feature caching runs the backbone: on the training device
    counted = dict(STORE_COUNTS)
    with args.main_process_first(desc="preparing inputs"):
        inputs, cached = prepare_inputs(data, model, feature_extractor, model_args.cache_features,
                                        batch_size=args.per_device_eval_batch_size,
                                        speaker_normalization=data_args.speaker_normalization)
    logger.info("Training %s on %s source and %s target utterances%s.", model.config.adaptation_method,
                *(("a stream of" if is_streamed(ds) else len(ds)) for ds in (inputs.source_train, inputs.target)),
                " (cached features)" if cached else "")

    # A streamed set is evaluated on its first max_eval_samples rows, read once (preparation.evaluation_rows).
    streamed = {"target": is_streamed(inputs.target), "source": is_streamed(inputs.source_eval)}
    eval_sets = {"target": evaluation_rows(inputs.target, data_args.max_eval_samples, inputs.cache_dir, "target")}
    source_eval = evaluation_rows(inputs.source_eval, data_args.max_eval_samples, inputs.cache_dir, "source")
    if len(source_eval):
        eval_sets["source"] = source_eval
    trainer = EmoDnaTrainer(
        model=model, args=args, train_dataset=inputs.source_train, target_dataset=inputs.target,
        eval_dataset=eval_sets, processing_class=feature_extractor, callbacks=callbacks,
    )
    train_result = trainer.train(resume_from_checkpoint=resume_from)
    train_metrics = dict(train_result.metrics, global_step=train_result.global_step)

    logger.info("Evaluating on %s (target%s).", data_args.target_name,
                " and held-out source" if "source" in eval_sets else "")
    evaluations = [predict_with_embeddings(trainer, ds, name, data.label_names) for name, ds in eval_sets.items()]
    by_name = {e.name: e for e in evaluations}

    sources, target = data_args.source_specs(), data_args.target_spec()
    corpora = {spec.name: corpus_info(spec, data.reports.get(spec.name, {})) for spec in [*sources, target]}
    record: dict[str, Any] = {
        "scenario": {
            "sources": [s.name for s in sources], "target": target.name, "scheme": data_args.scheme,
            "label_names": list(data.label_names), "corpus_names": list(data.corpus_names),
            "protocol": "transductive UDA: the target metrics are computed on the unlabelled target utterances "
                        "used for adaptation; target labels were used for evaluation only."
                        + (" Features were standardised per speaker (speaker ids used; not comparable with "
                           "speaker-free results)." if data_args.speaker_normalization else "")
                        + (" The target was allowed to overlap the source corpora (an in-domain experiment: its "
                           "utterances may also be labelled training data)."
                           if data_args.allow_source_target_overlap else ""),
            "streamed": streamed,
        },
        "target": dict(summary_metrics(by_name["target"]), corpus=target.name),
    }
    if streamed["target"]:
        record["scenario"]["protocol"] += (f" The target was streamed: adapted to as a stream, evaluated on its first "
                                           f"{record['target']['n']} utterances.")
    if "source" in by_name:
        record["source"] = dict(summary_metrics(by_name["source"]), corpus=" + ".join(s.name for s in sources))
    # What a user without target labels can judge the model by (emodna_hf.selection; docs/benchmarks.md).
    record["selection"] = selection_criteria(by_name["target"], by_name.get("source"), seed=args.seed)
    if training_args.metric_for_best_model:
        record["selection"]["best_checkpoint"] = {
            "metric": training_args.metric_for_best_model, "value": trainer.state.best_metric,
            "checkpoint": trainer.state.best_model_checkpoint,
            "loaded": bool(training_args.load_best_model_at_end and trainer.state.best_model_checkpoint)}
    record["train"] = {
        "runtime_s": train_metrics.get("train_runtime"), "loss": train_metrics.get("train_loss"),
        "steps": train_result.global_step, "epochs": train_metrics.get("epoch"),
        "cached_features": cached, "speaker_normalization": data_args.speaker_normalization,
        # Rows whose features this run computed, and those read from the feature store (computed before).
        "features": {name: STORE_COUNTS[name] - counted.get(name, 0) for name in ("computed", "reused")},
        "processes": args.world_size,
    }
    record["data"] = {
        name: {k: info[k] for k in ("source_kind", "n", "classes", "dropped", "skipped_audio")}
        | {"duplicates": data.reports.get(name, {}).get("duplicates", {})}
        for name, info in corpora.items()
    }
    record["data"]["split"] = data.reports.get("split", {})
    record["data"]["source_classes"] = data.reports.get("source_classes", {})
    record["config"] = {
        "config_file": config_file,
        "command": command,
        "model_args": dataclasses.asdict(model_args),
        "data_args": dataclasses.asdict(data_args),
        "training_args": training_args.to_dict(),
        "model_config": model.config.to_dict(),
    }
    record["versions"] = versions()

    if write_outputs and trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        trainer.model.save_pretrained(output_dir)
        feature_extractor.save_pretrained(output_dir)
        trainer.save_state()
        titles = {
            "target": f"target: {target.name} — "
                      + (f"UAR {record['target']['uar']:.1%}" if record["target"]["labelled"] else "unlabelled"),
            "source": f"held-out source: {record.get('source', {}).get('corpus', '')} — "
                      f"UAR {record.get('source', {}).get('uar', float('nan')):.1%}",
        }
        corpus_label = [*data.corpus_names[:-1], f"{data.corpus_names[-1]} (target)"]
        plots = write_plots(
            output_dir, evaluations, list(data.label_names), corpus_label, titles=titles,
            projection=data_args.projection, max_projection_samples=data_args.max_projection_samples,
            seed=args.seed,
            figure_title=f"{' + '.join(s.name for s in sources)} → {target.name}: {model.config.adaptation_method}",
        )
        record["embedding_analysis"] = plots["embedding_analysis"]
        # Per-utterance predictions of the target corpus: what a user labelling it keeps (never pushed: they name
        # the corpus's utterances and speakers; hub.DEFAULT_IGNORE_PATTERNS).
        write_predictions(output_dir / PREDICTIONS_FILE, [(by_name["target"], eval_sets["target"])],
                          list(data.label_names), list(data.corpus_names))
        reporting.write_metrics(output_dir / reporting.METRICS_FILE, record)
        repo_id = push_plan.repo_id if push_plan else (training_args.hub_model_id or str(output_dir))
        card = make_model_card(
            card_info(record, corpora, model, model_args, training_args, trainer, plots["files"], repo_id, command,
                      hub_pushed=push_plan is not None)
        )
        card.save(output_dir / "README.md")
        logger.info("Wrote %s", output_dir)
    else:
        record["embedding_analysis"] = analyse_embeddings(evaluations, data_args.max_projection_samples,
                                                          args.seed)[1]
    trainer.accelerator.wait_for_everyone()

    record["output_dir"] = str(output_dir) if write_outputs else None
    record["wall_time_s"] = time.time() - started
    if push_plan is not None:
        commit = hub.push_output_folder(output_dir, push_plan.repo_id, token=push_plan.token,
                                        private=push_plan.private, revision=push_plan.revision, create_repo=False)
        record["hub"] = {"repo_id": push_plan.repo_id, "commit_url": getattr(commit, "commit_url", None)}
    return record


def format_summary(record: dict[str, Any]) -> str:
    """A few readable lines for the end of a run."""
    scenario = record["scenario"]
    target = record["target"]
    lines = [
        f"{' + '.join(scenario['sources'])} → {scenario['target']} ({scenario['scheme']}): "
        f"{record['config']['model_config'].get('adaptation_method', _CONFIG_DEFAULTS['adaptation_method'])}"]
    if target.get("labelled", True):
        lines.append(f"  target {target['corpus']:<12} UAR {target['uar']:.3f}  WAR {target['war']:.3f}  "
                     f"macro-F1 {target['macro_f1']:.3f}  ({target['n']} utterances, transductive)")
    else:
        shares = ", ".join(f"{label} {share:.0%}" for label, share in target["predicted_distribution"].items())
        lines.append(f"  target {target['corpus']:<12} unlabelled: accuracy not measured; predicted {shares}; mean "
                     f"confidence {target['mean_confidence']:.2f} ({target['n']} utterances)")
    if "source" in record:
        source = record["source"]
        lines.append(f"  source {source['corpus']:<12} UAR {source['uar']:.3f}  WAR {source['war']:.3f}  "
                     f"macro-F1 {source['macro_f1']:.3f}  ({source['n']} held-out utterances)")
    for corpus, info in record.get("data", {}).items():
        skipped = info.get("skipped_audio") if isinstance(info, dict) else None
        if skipped:
            listed = "; ".join(f"{utt} ({reason})" for utt, reason in list(skipped.items())[:5])
            more = f" and {len(skipped) - 5} more (metrics.json)" if len(skipped) > 5 else ""
            lines.append(f"  skipped audio in {corpus}: {len(skipped)} file(s): {listed}{more}")
        duplicates = info.get("duplicates") if isinstance(info, dict) else None
        if duplicates:
            lines.append(f"  duplicate rows in {corpus}: {sum(duplicates.values())} dropped (each file used once)")
    if record.get("output_dir"):
        lines.append(f"  output: {record['output_dir']} (model, README.md, metrics.json, {PREDICTIONS_FILE}, "
                     f"{reporting.CONFUSION_MATRIX_FILE}, {reporting.EMBEDDINGS_FILE})")
    if record.get("hub"):
        lines.append(f"  pushed: https://huggingface.co/{record['hub']['repo_id']}")
    lines.append(f"  wall time {record['wall_time_s']:.0f} s")
    return "\n".join(lines)


def command_line(argv: list[str] | None = None, launcher: str | None = None) -> str:
    """The current command, for the model card (`launcher`: e.g. 'accelerate launch')."""
    argv = list(sys.argv if argv is None else argv)
    script = argv[0] if argv else "recipes/train.py"
    repository = Path(__file__).resolve().parents[1]
    if Path(script).resolve().is_relative_to(repository):  # a recipe of this project: as run from its root
        script = Path(script).resolve().relative_to(repository).as_posix()
    prefix = launcher or "python"
    return " ".join([prefix, shlex.quote(script), *map(shlex.quote, argv[1:])])
