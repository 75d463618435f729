"""`recipes/adapt.py` as one story: a trained audio classifier + an unlabelled target corpus → an adapted model of
the same class (SHOT, TENT or AdaBN), its feature extractor, a model card and `adaptation.json`.

No source data is read. The target is loaded like a training target (`data.load_corpus`, the same corpus arguments
as `--target_*` of train.py), prepared as the model reads it, and its labels, where it has any, only score the model
before and after adaptation: the trainer's rows go through `training_columns`, which drops them.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Value

from .adabn import adapt_normalization_statistics
from .card import versions
from .corpus_arguments import (
    _parse_mapping,
    check_sources,
    check_specs,
    corpus_specs,
    looks_like_local_path,
    normalise_corpus_lists,
)
from .data import SCHEMES, CorpusSpec, load_corpus
from .data.labels import CANONICAL_EMOTIONS, SCHEME_MAPS
from .metrics import classification_metrics
from .objectives import objective_class
from .selection import information_maximization
from .source_free import SourceFreeTrainer, SourceFreeTrainingArguments, collator_for, target_outputs

logger = logging.getLogger(__name__)
ADAPTATION_FILE = "adaptation.json"
OUTSIDE = "(outside the scheme)"


@dataclass
class AdaptationArguments:
    """The checkpoint to adapt, the unlabelled target corpus (`target_*`, as train.py's target) and the labels."""

    model_name_or_path: str = field(metadata={"help": "A trained audio-classification model: a folder or Hub id "
                                              "(ours, or a transformers Wav2Vec2/Hubert...ForSequenceClassification)."})
    target_dataset: list[str] = field(metadata={"help": "The unlabelled target corpus: an audio folder, a "
                                                "CSV/TSV/JSONL manifest, a saved dataset, a Hub id or synthetic:<preset>."})
    target_name: list[str] | None = field(default=None, metadata={"help": "Target corpus name (default: 'target')."})
    target_split: list[str] | None = field(default=None, metadata={"help": "Split of the target."})
    target_config_name: list[str] | None = field(default=None, metadata={"help": "Hub config of the target."})
    target_audio_column: list[str] | None = field(default=None, metadata={"help": "Audio column."})
    target_label_column: list[str] | None = field(
        default=None, metadata={"help": "Label column, only to score the model before/after (never trained on)."})
    target_speaker_column: list[str] | None = field(default=None, metadata={"help": "Speaker column."})
    target_utt_id_column: list[str] | None = field(default=None, metadata={"help": "Utterance-id column."})
    target_label_map_name: list[str] | None = field(default=None, metadata={"help": "Built-in label map."})
    target_label_map: dict | str | None = field(default=None, metadata={"help": "{raw label: emotion}."})
    target_load_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Loading options (e.g. n_speakers=4 for a synthetic corpus)."})
    label_mapping: dict | str | None = field(
        default=None,
        metadata={"help": "{checkpoint label: scheme class} (JSON/YAML or key=value text); null/none: a class "
                  "outside the scheme. Labels named like a scheme class or a canonical emotion are inferred."})
    scheme: str = field(default="auto", metadata={"help": f"Label scheme ({', '.join(SCHEMES)}) or 'auto'."})
    revision: str | None = field(default=None, metadata={"help": "Model revision (Hub)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Run the code stored with the model."})
    max_duration_s: float | None = field(default=None, metadata={"help": "Centre-crop longer utterances."})
    on_bad_audio: str = field(default="raise", metadata={"help": "'raise' or 'skip' unreadable audio."})
    allow_paths_outside_corpus: bool = field(default=False, metadata={"help": "As for training."})
    audio_cache_dir: str | None = field(default="auto", metadata={"help": "Arrow files of decoded audio; 'none'."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Dataset.map num_proc."})

    def __post_init__(self):
        if self.target_name is None:
            self.target_name = ["target"]
        names = self.target_name if isinstance(self.target_name, list) else [self.target_name]
        for name in ("target_label_map", "target_load_kwargs"):
            # As train.py's target: the one target's mapping itself (also accepted keyed by its name).
            mapping = _parse_mapping(getattr(self, name), name)
            if mapping and not (set(mapping) == set(names) and all(isinstance(v, dict) for v in mapping.values())):
                mapping = {names[0]: mapping}
            setattr(self, name, mapping)
        normalise_corpus_lists(self, "target", role="target")
        if len(self.target_name) != 1:
            raise ValueError(f"One target corpus is adapted to; got {self.target_name}.")
        if self.scheme != "auto" and self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be 'auto' or one of {sorted(SCHEMES)}, got {self.scheme!r}")
        self.label_mapping = _parse_mapping(self.label_mapping, "label_mapping")
        check_specs([self.target_spec()])

    def target_spec(self) -> CorpusSpec:
        return corpus_specs(self, "target", self.on_bad_audio)[0]


def resolve_label_mapping(label_names: list[str], mapping: dict | None, scheme: str = "auto") -> tuple[str, list]:
    """`(scheme, [scheme class or None for each checkpoint label])`.

    An explicit `mapping` entry wins (None/"none": outside the scheme); otherwise a label that is a class of the
    scheme maps to itself and a canonical emotion through the scheme's table (`SCHEME_MAPS`; None where it has no
    class there). `scheme="auto"`: the first scheme under which every label resolves and some label lands on a
    class. Unresolved labels raise a ValueError naming them.
    """
    mapping = {str(k): (None if v is None or str(v).lower() in ("none", "null") else str(v))
               for k, v in (mapping or {}).items()}
    unknown = sorted(set(mapping) - set(label_names))
    if unknown:
        raise ValueError(f"label_mapping names {unknown}, which are not labels of the checkpoint ({label_names}).")
    failures = {}
    for name in (SCHEMES if scheme == "auto" else [scheme]):
        classes, resolved, missing = SCHEMES[name], [], []
        for label in label_names:
            key = label.strip().lower()
            if label in mapping:
                resolved.append(mapping[label])
            elif key in classes:
                resolved.append(key)
            elif key in CANONICAL_EMOTIONS:
                resolved.append(SCHEME_MAPS[name].get(key))
            else:
                missing.append(label)
        bad = sorted({c for c in resolved if c is not None and c not in classes})
        if not missing and not bad and any(c is not None for c in resolved):
            return name, resolved
        failures[name] = (missing, bad)
    details = "; ".join(f"{name}: unmapped {missing}" + (f", not classes {bad}" if bad else "")
                        for name, (missing, bad) in failures.items())
    raise ValueError(f"The checkpoint's labels {label_names} do not map to "
                     f"{'any label scheme' if scheme == 'auto' else f'scheme {scheme!r}'} ({details}): pass "
                     "--label_mapping '{\"<checkpoint label>\": \"<scheme class>\", ...}' (null for a class outside "
                     "the scheme).")


def score(logits: np.ndarray, labels: list, mapped: list, scheme: str) -> dict[str, Any]:
    """What a model predicts on the target: class shares and information maximisation always; UAR, WAR, macro-F1
    where the target has labels (checkpoint classes mapped to the scheme; a class outside it is always wrong)."""
    classes = list(SCHEMES[scheme])
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    index = np.array([classes.index(c) if c is not None else len(classes) for c in mapped])
    predictions = index[logits.argmax(1)]
    shares = np.bincount(predictions, minlength=len(classes) + 1) / len(predictions)
    result: dict[str, Any] = {
        "n": len(predictions), "information_maximization": information_maximization(probabilities),
        "predicted_distribution": {name: float(s) for name, s in zip([*classes, OUTSIDE], shares, strict=True)
                                   if name != OUTSIDE or s > 0},
        "labelled": any(label is not None for label in labels),
    }
    if result["labelled"]:
        known = np.array([label is not None for label in labels])
        references = np.array([label for label in labels if label is not None], dtype=np.int64)
        result.update(classification_metrics(predictions[known], references, [*classes, OUTSIDE]))
        result.pop(f"recall_{OUTSIDE}", None)
    return result


def _prepare(dataset, model, feature_extractor, name: str, args: AdaptationArguments, batch_size: int):
    """The target as the model reads it: ours through `prepare_dataset` (as training and evaluation prepare it),
    a transformers model with its feature extractor's waveform normalisation."""
    from .modeling import EmoDnaForAudioClassification
    from .preparation import normalize_waveforms, prepare_dataset

    disk = {"cache_dir": args.audio_cache_dir, "num_proc": args.preprocessing_num_workers}
    if isinstance(model, EmoDnaForAudioClassification):
        return prepare_dataset(dataset, model, feature_extractor, name, batch_size=batch_size, **disk)[0]
    return normalize_waveforms(dataset, feature_extractor, f"Normalising {name}", **disk)


def run_adaptation(args: AdaptationArguments, training_args: SourceFreeTrainingArguments,
                   command: str | None = None) -> dict[str, Any]:
    """Adapt `args.model_name_or_path` to the target; write the output folder; return the record."""
    from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

    from .experiment import check_output_dir

    started = time.time()
    output_dir = Path(training_args.output_dir)
    check_output_dir(output_dir, training_args.overwrite_output_dir)
    spec = args.target_spec()
    check_sources([spec])
    path = args.model_name_or_path
    if looks_like_local_path(path) and not Path(path).expanduser().is_dir():
        raise ValueError(f"Model folder {path} does not exist (pass a trained model's folder or a Hub model id).")
    model = AutoModelForAudioClassification.from_pretrained(path, revision=args.revision,
                                                            trust_remote_code=args.trust_remote_code)
    feature_extractor = AutoFeatureExtractor.from_pretrained(path, revision=args.revision)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scheme, mapped = resolve_label_mapping(label_names, args.label_mapping, args.scheme)
    if training_args.adaptation_method != "adabn":
        objective_class(training_args.adaptation_method)  # a clear error before any data is loaded
    dataset, report = load_corpus(spec, scheme=scheme, sampling_rate=feature_extractor.sampling_rate,
                                  max_duration_s=args.max_duration_s, require_labels=False,
                                  cache_dir=args.audio_cache_dir, num_proc=args.preprocessing_num_workers)
    labels = list(dataset["labels"])  # for scoring only; the trainer never sees this column
    target_id = getattr(model.config, "num_corpora", 1) - 1
    dataset = dataset.add_column("corpus_id", [target_id] * len(dataset), feature=Value("int64"))
    batch_size = training_args.per_device_eval_batch_size
    prepared = _prepare(dataset, model, feature_extractor, spec.name, args, batch_size)
    model.to(training_args.device)
    collator = collator_for(model, feature_extractor)

    def evaluate() -> dict[str, Any]:
        logits, _ = target_outputs(model, prepared, collator, batch_size=batch_size, device=training_args.device)
        return score(logits.numpy(), labels, mapped, scheme)

    before = evaluate()
    method = training_args.adaptation_method
    details: dict[str, Any] = {}
    if method == "adabn":
        details = adapt_normalization_statistics(model, prepared, collator, batch_size=batch_size,
                                                 device=training_args.device)
        description = {"name": "AdaBN (re-estimated normalisation statistics)",
                       "description": "No gradient step: " + "; ".join(details["adapted"]) + " re-estimated on the "
                       "unlabelled target.", "settings": {"adaptation_method": "adabn"}}
    else:
        trainer = SourceFreeTrainer(model=model, args=training_args, target_dataset=prepared, data_collator=collator)
        trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
        train = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        trainer.classifier_inputs.remove()
        description = type(trainer.objective).describe(model.config)
        description["settings"] = trainer.objective.card_settings()
        details = {"train_metrics": train.metrics, "trained_parameters": len(trainable),
                   "trained_parameter_names": trainable[:50]}
    model.eval()
    after = evaluate()
    record = {
        "model": path, "model_class": type(model).__name__, "method": description, "details": details,
        "target": {"name": spec.name, "dataset": spec.source, "n": len(dataset),
                   "labels": "unlabelled" if not before["labelled"] else "labelled (scoring only)"},
        "scheme": scheme, "label_mapping": dict(zip(label_names, mapped, strict=True)),
        "training": {k: getattr(training_args, k) for k in ("max_steps", "num_train_epochs", "learning_rate",
                                                            "per_device_train_batch_size", "seed")},
        "feature_extractor": {"class": type(feature_extractor).__name__,
                              "sampling_rate": feature_extractor.sampling_rate,
                              "do_normalize": getattr(feature_extractor, "do_normalize", None)},
        "before": before, "after": after, "command": command, "versions": versions(),
    }
    if training_args.should_save:
        output_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(output_dir)
        feature_extractor.save_pretrained(output_dir)
        record["wall_time_s"] = time.time() - started
        (output_dir / ADAPTATION_FILE).write_text(json.dumps(record, indent=2, default=str) + "\n")
        (output_dir / "README.md").write_text(model_card(record))
    return record


def _metrics_line(result: dict[str, Any]) -> str:
    if not result["labelled"]:
        return f"unlabelled; information maximisation {result['information_maximization']:.3f}"
    return (f"UAR {result['uar']:.3f}, WAR {result['war']:.3f}, macro-F1 {result['macro_f1']:.3f}; "
            f"information maximisation {result['information_maximization']:.3f}")


def model_card(record: dict[str, Any]) -> str:
    """README.md of an adapted model: what was adapted, from what, how, on which target, and the results."""
    method, target, fe = record["method"], record["target"], record["feature_extractor"]
    tags = ["audio-classification", "speech-emotion-recognition", "source-free-domain-adaptation",
            str(record["method"]["settings"].get("adaptation_method"))]
    local = looks_like_local_path(record["model"]) or Path(record["model"]).expanduser().exists()
    base = None if local else record["model"]  # a Hub id
    settings = "\n".join(f"| `{k}` | {v} |" for k, v in {**method["settings"], **record["training"]}.items())
    mapping = ", ".join(f"`{k}` → {v if v is not None else 'outside the scheme'}"
                        for k, v in record["label_mapping"].items())
    scored = target["labels"] != "unlabelled"
    lines = [
        "---", "library_name: transformers", "pipeline_tag: audio-classification",
        "tags:", *[f"- {tag}" for tag in tags], *([f"base_model: {base}"] if base else []), "---", "",
        f"# {record['model_class']} adapted to `{target['name']}` with {method['name']}", "",
        f"This model is `{record['model']}` ({record['model_class']}, same class and configuration, label names "
        f"unchanged) adapted **without source data** to the unlabelled target corpus `{target['name']}` "
        f"(`{target['dataset']}`, {target['n']} utterances) with `recipes/adapt.py` of emodna_hf.", "",
        f"**Method.** {method['description']}", "",
        "| setting | value |", "|---|---|", settings, "",
        "**Target labels.** " + ("The target has labels; they were used only to score the model before and after "
                                 "adaptation, never in training." if scored
                                 else "None were used (the target is unlabelled)."),
        "", f"**Labels.** Scheme `{record['scheme']}`: {mapping}.", "",
        f"**Feature extractor.** `{fe['class']}` at {fe['sampling_rate']} Hz (waveform normalisation: "
        f"{fe['do_normalize']}), saved with the model: `AutoFeatureExtractor.from_pretrained` on this folder.", "",
        "## Target results", "",
        f"- before adaptation: {_metrics_line(record['before'])}",
        f"- after adaptation: {_metrics_line(record['after'])}", "",
        "Information maximisation (H(mean prediction) − mean H(prediction), higher = confident and diverse) is "
        "label-free; accuracy is reported only where the target has labels.", "",
        "## Use", "", "```python", "from transformers import AutoFeatureExtractor, AutoModelForAudioClassification",
        "model = AutoModelForAudioClassification.from_pretrained(\"PATH_OR_ID\""
        + (", trust_remote_code=True" if record["model_class"] == "EmoDnaForAudioClassification" else "") + ")",
        "feature_extractor = AutoFeatureExtractor.from_pretrained(\"PATH_OR_ID\")", "```", "",
        f"Details: `{ADAPTATION_FILE}`.", "",
    ]
    return "\n".join(lines)


__all__ = ["AdaptationArguments", "model_card", "resolve_label_mapping", "run_adaptation", "score"]
