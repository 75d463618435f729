"""One cross-corpus adaptation run, reusable from the recipes, the benchmarks and plain Python.

* :class:`ModelArguments` — backbone and adaptation method. Every method field is an *optional override* of an
  :class:`~emodna_hf.EmoDnaConfig` field: left at None, the config's own default applies (EmoDnaConfig is the
  single source of default values).
* :class:`DataArguments` — one or several labelled source corpora, the unlabelled target corpus, the label
  scheme and audio options. Parallel `source_*` lists (a single value applies to every source) and `target_*`
  scalars; in YAML files also as `sources: [{name: ..., dataset: ...}]` and `target: {name: ..., dataset: ...}`.
* :func:`parse_args` — `HfArgumentParser` over the two dataclasses and
  :class:`~emodna_hf.trainer.EmoDnaTrainingArguments`, with values from a YAML/JSON file that the command line
  overrides.
* :func:`run_experiment` — load data, build model and trainer, train, evaluate on the target (and held-out
  source) corpus, write the output folder (model + remote code + feature extractor, `README.md` card,
  `metrics.json`, confusion-matrix and embedding plots), optionally push it; returns the metrics.
* :func:`evaluate_model` — evaluate a saved folder or Hub id on any corpora (what `recipes/evaluate_model.py` runs).

Protocol: the target's labels are never read in training and never used for model selection or early stopping
(`metric_for_best_model` may only name a *source* metric). Target results are transductive: the model is
evaluated on the unlabelled target utterances it adapted to.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import json
import logging
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import yaml
from datasets import Dataset, Value

from . import hub, reporting
from .data import PRESETS, SCHEMES, CorpusSpec, UDAData, build_uda_data, get_label_map, load_corpus
from .feature_extraction import create_feature_extractor
from .modeling import EmoDnaConfig, EmoDnaForAudioClassification
from .modeling.configuration_emodna import (
    BACKBONE_TYPES,
    CLASS_ALIGNMENT_TYPES,
    CORPUS_ALIGNMENT_TYPES,
)
from .objectives import REGISTRY as ADAPTATION_METHODS
from .objectives import objective_class
from .trainer import EmoDnaTrainer, EmoDnaTrainingArguments

logger = logging.getLogger(__name__)

# EmoDnaConfig's defaults, read from its signature: the help texts quote them, nothing here copies them.
_CONFIG_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(EmoDnaConfig.__init__).parameters.items()
    if p.default is not inspect.Parameter.empty
}
# Config fields that the run derives from the data; they cannot be overridden.
_DERIVED_CONFIG_FIELDS = ("id2label", "label2id", "num_labels", "num_corpora", "sampling_rate", "corpus_names")
_NONE_STRINGS = {"", "none", "null", "auto"}
def _override(name: str, help: str, **metadata: Any) -> Any:
    """A dataclass field that overrides EmoDnaConfig's `name` when set (None = keep the config default)."""
    return field(
        default=None, metadata={"help": f"{help} Default: EmoDnaConfig's ({_CONFIG_DEFAULTS[name]!r}).", **metadata}
    )


def _bool_override(name: str, help: str) -> Any:
    # nargs/const: `--flag` alone means True, `--flag false` False (HfArgumentParser's Optional[bool] needs a value).
    return _override(name, help, nargs="?", const=True)


def _parse_mapping(value: Any, what: str) -> dict | None:
    """A dict from YAML, or from the command line as JSON or `key=value,key=value`."""
    if value is None or isinstance(value, dict):
        return value
    text = str(value).strip()
    if text.lower() in _NONE_STRINGS:
        return None
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{what}: invalid JSON {text!r} ({error})") from error
        if not isinstance(parsed, dict):
            raise ValueError(f"{what} must be a JSON object, got {text!r}")
        return parsed
    result = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            raise ValueError(f"{what}: expected JSON or key=value pairs separated by commas, got {text!r}")
        key, raw = item.split("=", 1)
        result[key.strip()] = yaml.safe_load(raw)
    return result


@dataclass
class ModelArguments:
    """The backbone and the adaptation method (all method fields override EmoDnaConfig defaults when set)."""

    backbone_type: str | None = _override(
        "backbone_type",
        f"Backbone family: {', '.join(BACKBONE_TYPES)}. Inferred from backbone_name_or_path when that is set.",
    )
    backbone_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Pretrained SSL checkpoint (Hub id such as microsoft/wavlm-base-plus, or a local folder) to "
            "start the backbone from. Without it an SSL backbone is randomly initialised (tests only)."
        },
    )
    backbone_revision: str | None = field(default=None, metadata={"help": "Revision of the SSL checkpoint."})
    freeze_backbone: bool | None = _bool_override("freeze_backbone", "Keep the whole SSL encoder frozen.")
    freeze_feature_encoder: bool | None = _bool_override(
        "freeze_feature_encoder", "Freeze only the SSL encoder's CNN feature encoder."
    )
    adaptation_method: str | None = _override(
        "adaptation_method", f"Adaptation method: {', '.join(ADAPTATION_METHODS)}."
    )
    use_decoupling: bool | None = _bool_override("use_decoupling", "Emo-DNA ablation: contrastive decoupling.")
    use_class_alignment: bool | None = _bool_override(
        "use_class_alignment", "Emo-DNA ablation: class-level alignment with target pseudo-labels."
    )
    use_corpus_alignment: bool | None = _bool_override(
        "use_corpus_alignment", "Emo-DNA ablation: corpus-level alignment."
    )
    corpus_normalization: bool | None = _bool_override(
        "corpus_normalization", "Per-corpus standardisation of the pooled features (None: on for Emo-DNA only)."
    )
    adaptive_threshold: bool | None = _bool_override(
        "adaptive_threshold", "Self-adaptive pseudo-label thresholds (False: fixed_threshold)."
    )
    fixed_threshold: float | None = _override("fixed_threshold", "Pseudo-label threshold when not adaptive.")
    corpus_alignment: str | None = _override(
        "corpus_alignment", f"Emo-DNA corpus-level alignment: {', '.join(CORPUS_ALIGNMENT_TYPES)}."
    )
    class_alignment: str | None = _override(
        "class_alignment", f"Emo-DNA class-level alignment: {', '.join(CLASS_ALIGNMENT_TYPES)}."
    )
    classification_weight: float | None = _override("classification_weight", "Weight of the source cross-entropy.")
    decoupling_weight: float | None = _override("decoupling_weight", "Weight of the decoupling loss.")
    corpus_classification_weight: float | None = _override(
        "corpus_classification_weight", "Weight of the corpus classification loss."
    )
    class_alignment_weight: float | None = _override("class_alignment_weight", "Weight of class-level alignment.")
    pseudo_label_weight: float | None = _override("pseudo_label_weight", "Weight of the pseudo-label loss.")
    corpus_alignment_weight: float | None = _override(
        "corpus_alignment_weight", "Weight of corpus-level alignment (also DANN/MMD)."
    )
    pseudo_label_warmup: float | None = _override(
        "pseudo_label_warmup", "Fraction of training before pseudo-labels are used."
    )
    contrastive_temperature: float | None = _override("contrastive_temperature", "Contrastive temperature.")
    grl_gamma: float | None = _override("grl_gamma", "Steepness of the gradient-reversal ramp.")
    label_smoothing: float | None = _override("label_smoothing", "Label smoothing of the source cross-entropy.")
    config_overrides: dict | str | None = field(
        default=None,
        metadata={
            "help": "Any other EmoDnaConfig fields, as JSON or key=value,key=value (e.g. "
            "'tcn_hidden_size=32,pooling=mean'); a mapping in YAML."
        },
    )
    cache_features: bool | None = field(
        default=None,
        metadata={
            "help": "Compute the parameter-free / frozen backbone features once and train on them (same logits, "
            "less work per epoch). Default: on for the tcn backbone and for a frozen SSL backbone.",
            "nargs": "?",
            "const": True,
        },
    )

    def __post_init__(self):
        self.config_overrides = _parse_mapping(self.config_overrides, "config_overrides")
        for name, choices in (
            ("backbone_type", BACKBONE_TYPES),
            ("adaptation_method", ADAPTATION_METHODS),
            ("corpus_alignment", CORPUS_ALIGNMENT_TYPES),
            ("class_alignment", CLASS_ALIGNMENT_TYPES),
        ):
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise ValueError(f"Unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}.")
        for key in self.config_overrides or {}:
            if key in _DERIVED_CONFIG_FIELDS:
                raise ValueError(f"config_overrides cannot set {key!r}: the run derives it from the data.")
            if key not in _CONFIG_DEFAULTS:
                close = difflib.get_close_matches(key, list(_CONFIG_DEFAULTS), n=3)
                raise ValueError(
                    f"config_overrides: {key!r} is not an EmoDnaConfig field"
                    + (f" (did you mean {', '.join(close)}?)" if close else "")
                )
            if hasattr(self, key) and getattr(self, key) is not None:
                raise ValueError(f"{key!r} is set both directly and in config_overrides; set it once.")

    def config_kwargs(self) -> dict[str, Any]:
        """The EmoDnaConfig fields this run sets explicitly (everything else keeps the config default)."""
        names = [f.name for f in dataclasses.fields(self) if f.name in _CONFIG_DEFAULTS]
        kwargs = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        kwargs.update(self.config_overrides or {})
        return kwargs


def _as_list(value: Any) -> list | None:
    if value is None:
        return None
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _none_if_auto(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip().lower() in _NONE_STRINGS else value


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")
_FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def check_corpus_source(name: str, source: str, *, must_exist: bool = True) -> str:
    """How `source` will be read ("synthetic", "local" or "hub"); a clear ValueError when it cannot be.

    With `must_exist=False` (parse time) a path that does not exist yet passes; `DataArguments.check_sources`
    (run time, before any loading) requires it.
    """
    from .data import ESPEAK_PRESETS

    presets = sorted({*PRESETS, *ESPEAK_PRESETS})  # source-filter and espeak-ng presets
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"Corpus {name!r}: empty dataset source.")
    if source.startswith("synthetic:"):
        preset = source.split(":", 1)[1]
        if preset not in presets:
            raise ValueError(
                f"Corpus {name!r}: unknown synthetic preset {preset!r}; known: "
                f"{', '.join('synthetic:' + p for p in presets)}."
            )
        return "synthetic"
    path = Path(source).expanduser()
    if path.exists():
        return "local"
    looks_like_path = (
        source.startswith((".", "/", "~")) or source.lower().endswith(_FILE_SUFFIXES) or source.count("/") > 1
        or "\\" in source
    )
    if looks_like_path and not must_exist:
        return "local"
    if looks_like_path or not _HUB_ID.match(source):
        raise ValueError(
            f"Corpus {name!r}: dataset source {source!r} is neither an existing local file or folder, nor "
            "'synthetic:<preset>' (presets: " + ", ".join(presets) + "), nor a Hub dataset id "
            "('name' or 'owner/name'). Fix the path or the id."
        )
    return "hub"


def _check_label_map(name: str, label_map_name: str | None, label_map: dict | None) -> None:
    if label_map:
        return  # harmonize_labels accepts an explicit map for any corpus
    try:
        get_label_map(label_map_name or name)
    except KeyError:
        from .data import CORPUS_LABEL_MAPS

        raise ValueError(
            f"Corpus {name!r}: no built-in label map for corpus {label_map_name or name!r} (known: "
            f"{', '.join(sorted(CORPUS_LABEL_MAPS))}). Set its label_map_name to one of them, or give a "
            "label_map (raw label -> emotion)."
        ) from None


_CORPUS_FIELDS = ("dataset", "split", "config_name", "audio_column", "label_column", "speaker_column",
                  "utt_id_column", "label_map_name")
_CORPUS_DEFAULTS = {"split": "train", "audio_column": "audio"}


@dataclass
class DataArguments:
    """Source and target corpora, label scheme and audio options.

    `source_*` fields are parallel lists, one entry per source corpus (a single entry applies to all);
    `none`/`auto` entries mean "not set". `*_label_map` and `*_load_kwargs` are mappings: for sources keyed by
    corpus name.
    """

    source_name: list[str] = field(
        default_factory=lambda: ["synth-a"],
        metadata={"help": "Source corpus names (also select the built-in label map unless source_label_map_name)."},
    )
    source_dataset: list[str] = field(
        default_factory=lambda: ["synthetic:synth-a"],
        metadata={
            "help": "Where each source corpus is: a Hub dataset id, a local audiofolder / save_to_disk folder, a "
            "CSV/TSV/JSONL manifest or parquet file, or synthetic:<synth-a|synth-b|synth-c>."
        },
    )
    source_split: list[str] = field(default_factory=lambda: ["train"], metadata={"help": "Split of each source."})
    source_config_name: list[str] | None = field(default=None, metadata={"help": "Hub config of each source."})
    source_audio_column: list[str] = field(default_factory=lambda: ["audio"], metadata={"help": "Audio column."})
    source_label_column: list[str] | None = field(
        default=None, metadata={"help": "Label column (default: emotion, label, labels, ...)."}
    )
    source_speaker_column: list[str] | None = field(
        default=None, metadata={"help": "Speaker column (default: speaker, speaker_id, ...; used for splits)."}
    )
    source_utt_id_column: list[str] | None = field(default=None, metadata={"help": "Utterance-id column."})
    source_label_map_name: list[str] | None = field(
        default=None,
        metadata={"help": "Built-in label map per source (emodb, iemocap, ravdess, crema-d, enterface05, casia, "
                  "savee, tess, emovo, msp-podcast, synthetic) when the name is not one."},
    )
    source_label_map: dict | str | None = field(
        default=None,
        metadata={"help": "Extra raw-label -> emotion entries per source: {corpus: {raw: emotion or null}}."},
    )
    source_load_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Extra load_dataset / make_synthetic_corpus kwargs per source: {corpus: {...}}."},
    )
    target_name: str = field(default="synth-b", metadata={"help": "Target corpus name."})
    target_dataset: str = field(
        default="synthetic:synth-b", metadata={"help": "Where the target corpus is (as for source_dataset)."}
    )
    target_split: str | None = field(default="train", metadata={"help": "Split of the target corpus."})
    target_config_name: str | None = field(default=None, metadata={"help": "Hub config of the target."})
    target_audio_column: str = field(default="audio", metadata={"help": "Audio column of the target."})
    target_label_column: str | None = field(default=None, metadata={"help": "Label column of the target."})
    target_speaker_column: str | None = field(default=None, metadata={"help": "Speaker column of the target."})
    target_utt_id_column: str | None = field(default=None, metadata={"help": "Utterance-id column of the target."})
    target_label_map_name: str | None = field(default=None, metadata={"help": "Built-in label map of the target."})
    target_label_map: dict | str | None = field(
        default=None, metadata={"help": "Extra raw-label -> emotion entries of the target: {raw: emotion}."}
    )
    target_load_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Extra load_dataset / make_synthetic_corpus kwargs of the target."}
    )
    scheme: str = field(
        default="categorical4",
        metadata={"help": f"Label scheme: {', '.join(SCHEMES)} (classes: "
                  + "; ".join(f"{k}: {'/'.join(v)}" for k, v in SCHEMES.items()) + ")."},
    )
    sampling_rate: int = field(default=16000, metadata={"help": "Audio rate of the model (SSL checkpoints: 16000)."})
    max_duration_s: float | None = field(
        default=None, metadata={"help": "Centre-crop longer utterances to this many seconds (all splits)."}
    )
    source_eval_fraction: float = field(
        default=0.2, metadata={"help": "Share of each source corpus held out (speaker-independent when possible)."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the source train/eval split (kept across runs)."})
    on_bad_audio: str = field(default="raise", metadata={"help": "'raise' or 'skip' unreadable audio files."})
    audio_cache_dir: str | None = field(
        default=None, metadata={"help": "Cache decoded audio of local sources here (Hub datasets use their cache)."}
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for decoding."})
    max_samples_per_split: int | None = field(
        default=None,
        metadata={"help": "Debugging: keep at most this many random utterances of each split (the target's "
                  "train and eval rows stay the same utterances)."},
    )
    max_projection_samples: int = field(
        default=300, metadata={"help": "Utterances per corpus in the 2-D embedding projection plot."}
    )
    projection: str = field(default="pca", metadata={"help": "Embedding projection: 'pca' or 'tsne'."})
    speaker_normalization: bool = field(
        default=False,
        metadata={"help": "Standardise the cached features per speaker (speaker ids are metadata, not emotion "
                  "labels). Results are not comparable with speaker-free ones, and the saved model's pipeline on "
                  "raw audio does not apply it: for studies, not for deployment."},
    )

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"Unknown label scheme {self.scheme!r}; choose one of {', '.join(SCHEMES)}.")
        if self.on_bad_audio not in ("raise", "skip"):
            raise ValueError(f"on_bad_audio must be 'raise' or 'skip', got {self.on_bad_audio!r}")
        if self.projection not in ("pca", "tsne"):
            raise ValueError(f"projection must be 'pca' or 'tsne', got {self.projection!r}")
        if not 0.0 <= self.source_eval_fraction < 1.0:
            raise ValueError(f"source_eval_fraction must be in [0, 1), got {self.source_eval_fraction}")
        self.source_name = _as_list(self.source_name)
        self.source_dataset = _as_list(self.source_dataset)
        n = len(self.source_name)
        if not n:
            raise ValueError("At least one source corpus (source_name / source_dataset) is needed.")
        if len(self.source_dataset) != n:
            raise ValueError(
                f"source_name has {n} entries but source_dataset has {len(self.source_dataset)}: give one dataset "
                "per source corpus."
            )
        for name in _CORPUS_FIELDS[1:]:
            values = _as_list(getattr(self, f"source_{name}"))
            if values is not None:
                values = [_none_if_auto(v) for v in values]
                if len(values) not in (1, n):
                    raise ValueError(f"source_{name} has {len(values)} entries for {n} source corpora (give 1 or {n}).")
            setattr(self, f"source_{name}", values)
        for name in ("target_split", "target_config_name", "target_label_column", "target_speaker_column",
                     "target_utt_id_column", "target_label_map_name"):
            setattr(self, name, _none_if_auto(getattr(self, name)))
        for name in ("source_label_map", "source_load_kwargs", "target_label_map", "target_load_kwargs"):
            setattr(self, name, _parse_mapping(getattr(self, name), name))
        names = [*self.source_name, self.target_name]
        if len(set(names)) != len(names):
            raise ValueError(f"Corpus names must be unique; got sources {self.source_name} and target {self.target_name!r}.")
        for mapping_name in ("source_label_map", "source_load_kwargs"):
            unknown = set(getattr(self, mapping_name) or {}) - set(self.source_name)
            if unknown:
                raise ValueError(f"{mapping_name} is keyed by source corpus name; unknown keys {sorted(unknown)} "
                                 f"(sources: {self.source_name}).")
        for spec in [*self.source_specs(), self.target_spec()]:
            check_corpus_source(spec.name, spec.source, must_exist=False)
            _check_label_map(spec.name, spec.label_map_name, spec.label_map)

    def check_sources(self) -> dict[str, str]:
        """Every corpus source is readable in principle (local paths exist): `{corpus: kind}`, else ValueError."""
        return {spec.name: check_corpus_source(spec.name, spec.source)
                for spec in [*self.source_specs(), self.target_spec()]}

    def _source_value(self, name: str, i: int) -> Any:
        values = getattr(self, f"source_{name}")
        if values is None:
            return _CORPUS_DEFAULTS.get(name)
        value = values[0] if len(values) == 1 else values[i]
        return _CORPUS_DEFAULTS.get(name) if value is None and name in _CORPUS_DEFAULTS else value

    def source_specs(self) -> list[CorpusSpec]:
        specs = []
        for i, name in enumerate(self.source_name):
            specs.append(
                CorpusSpec(
                    name=name,
                    source=self.source_dataset[i],
                    split=self._source_value("split", i),
                    config_name=self._source_value("config_name", i),
                    audio_column=self._source_value("audio_column", i),
                    label_column=self._source_value("label_column", i),
                    speaker_column=self._source_value("speaker_column", i),
                    utt_id_column=self._source_value("utt_id_column", i),
                    label_map_name=self._source_value("label_map_name", i),
                    label_map=(self.source_label_map or {}).get(name),
                    on_bad_audio=self.on_bad_audio,
                    load_kwargs=dict((self.source_load_kwargs or {}).get(name, {})),
                )
            )
        return specs

    def target_spec(self) -> CorpusSpec:
        return CorpusSpec(
            name=self.target_name,
            source=self.target_dataset,
            split=self.target_split,
            config_name=self.target_config_name,
            audio_column=self.target_audio_column or "audio",
            label_column=self.target_label_column,
            speaker_column=self.target_speaker_column,
            utt_id_column=self.target_utt_id_column,
            label_map_name=self.target_label_map_name,
            label_map=self.target_label_map,
            on_bad_audio=self.on_bad_audio,
            load_kwargs=dict(self.target_load_kwargs or {}),
        )


# --- configuration files and command line -------------------------------------------------------------------------


class ParsedArgs(NamedTuple):
    model_args: ModelArguments
    data_args: DataArguments
    training_args: EmoDnaTrainingArguments
    config_file: str | None


def _corpus_block(block: Any, prefix: str, single: bool, where: str) -> dict[str, Any]:
    """`sources:` / `corpora:` (lists) and `target:` (one mapping) YAML blocks → flat `<prefix>_*` fields."""
    allowed = {"name", *_CORPUS_FIELDS, "label_map", "load_kwargs"}
    entries = [block] if single or isinstance(block, dict) else block
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{where}: the {prefix} corpora must be {'a mapping' if single else 'a list of mappings'} "
                         "with 'name', 'dataset' and optional corpus keys.")
    for entry in entries:
        unknown = set(entry) - allowed
        if unknown:
            raise ValueError(f"{where}: unknown corpus key(s) {sorted(unknown)}; allowed: {sorted(allowed)}.")
        if "name" not in entry or "dataset" not in entry:
            raise ValueError(f"{where}: every corpus needs 'name' and 'dataset' (got {sorted(entry)}).")
    if single:
        return {f"{prefix}_{k}": v for k, v in entries[0].items()}
    flat: dict[str, Any] = {f"{prefix}_name": [e["name"] for e in entries]}
    for key in _CORPUS_FIELDS:
        values = [e.get(key) for e in entries]
        if any(v is not None for v in values):
            flat[f"{prefix}_{key}"] = values
    for key in ("label_map", "load_kwargs"):
        per_corpus = {e["name"]: e[key] for e in entries if e.get(key)}
        if per_corpus:
            flat[f"{prefix}_{key}"] = per_corpus
    return flat


_CORPUS_BLOCKS = {"sources": ("source", False), "target": ("target", True), "corpora": ("corpus", False)}


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML or JSON run configuration into flat argument values.

    Keys are argument names. They may be grouped under `model:`, `data:` and `training:` sections, and corpora
    may be written as `sources: [{name, dataset, split, label_column, ...}]` and `target: {...}` blocks
    (`corpora: [...]` for evaluation).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Configuration file {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    values = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    values = values or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: the configuration must be a mapping of argument names to values.")
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("model", "data", "training", "evaluation") and isinstance(value, dict):
            items = value.items()
        else:
            items = [(key, value)]
        for sub_key, sub_value in items:
            if sub_key in _CORPUS_BLOCKS and (sub_key != "target" or isinstance(sub_value, dict)):
                prefix, single = _CORPUS_BLOCKS[sub_key]
                expanded = _corpus_block(sub_value, prefix, single, str(path))
            else:
                expanded = {sub_key: sub_value}
            for name, v in expanded.items():
                if name.endswith("_strategy") and v is False:
                    v = "no"  # YAML 1.1 reads an unquoted `no` as False
                if name in flat:
                    raise ValueError(f"{path}: {name!r} is set twice.")
                flat[name] = v
    return flat


def build_parser() -> Any:
    from transformers import HfArgumentParser

    parser = HfArgumentParser(
        (ModelArguments, DataArguments, EmoDnaTrainingArguments),
        description="Cross-corpus speech emotion recognition with unsupervised domain adaptation (Emo-DNA). "
        "Values come from --config FILE.yaml|json (default: recipes/configs/default.yaml); command-line flags "
        "override them.",
    )
    parser.add_argument("--config", default=None, help="YAML or JSON file with argument values ('none': no file).")
    return parser


def parse_args(argv: list[str] | None = None, *, default_config: str | os.PathLike | None = None) -> ParsedArgs:
    """Parse model, data and training arguments: dataclass defaults < config file < command line.

    `--config FILE` (or a first positional `FILE.yaml`/`.json`) picks the file; without it `default_config`
    is used (`--config none` uses the dataclass defaults only). Unknown keys in the file are an error. When the
    file and the command line leave `report_to` unset, TensorBoard is used if it is installed.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    config_file = known.config
    if config_file is None and rest and not rest[0].startswith("-") and rest[0].lower().endswith(
        (".yaml", ".yml", ".json")
    ):
        config_file = rest.pop(0)
    if config_file is None and default_config is not None:
        config_file = str(default_config)
    if config_file is not None and config_file.strip().lower() in _NONE_STRINGS:
        config_file = None

    parser = build_parser()
    dests = {action.dest for action in parser._actions} - {"help", "config"}
    defaults: dict[str, Any] = {}
    from transformers.integrations import is_tensorboard_available

    if is_tensorboard_available():
        defaults["report_to"] = "tensorboard"
    if config_file is not None:
        values = load_config_file(config_file)
        unknown = sorted(set(values) - dests)
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, sorted(dests), n=2)
                hints.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
            raise ValueError(f"{config_file}: unknown argument(s) {', '.join(hints)}.")
        defaults.update(values)
    parser.set_defaults(**defaults)
    # The parser also knows --config (for --help); its value was taken above and comes back as a namespace.
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=rest)[:3]
    return ParsedArgs(model_args, data_args, training_args, config_file)


# --- data -----------------------------------------------------------------------------------------------------------


def load_data(data_args: DataArguments) -> UDAData:
    """Load and split the corpora of `data_args` (raw waveforms at `sampling_rate`; see `build_uda_data`)."""
    data_args.check_sources()
    data = build_uda_data(
        data_args.source_specs(),
        data_args.target_spec(),
        scheme=data_args.scheme,
        sampling_rate=data_args.sampling_rate,
        max_duration_s=data_args.max_duration_s,
        source_eval_fraction=data_args.source_eval_fraction,
        seed=data_args.split_seed,
        cache_dir=data_args.audio_cache_dir,
        num_proc=data_args.preprocessing_num_workers,
    )
    cap = data_args.max_samples_per_split
    if cap:
        rng = np.random.default_rng(data_args.split_seed)

        def subset(dataset: Dataset, index: np.ndarray | None = None) -> tuple[Dataset, np.ndarray]:
            if index is None:
                index = np.sort(rng.permutation(len(dataset))[:cap])
            return dataset.select(index.tolist()), index

        source_train, _ = subset(data.source_train)
        source_eval, _ = subset(data.source_eval) if len(data.source_eval) else (data.source_eval, None)
        target_eval, index = subset(data.target_eval)
        target_train, _ = subset(data.target_train, index)
        data = dataclasses.replace(data, source_train=source_train, source_eval=source_eval,
                                   target_train=target_train, target_eval=target_eval)
    return data


def _normalize_batch(batch: dict[str, Any], feature_extractor) -> dict[str, Any]:
    values = feature_extractor(list(batch["input_values"]), sampling_rate=feature_extractor.sampling_rate)
    return {"input_values": [np.asarray(v, dtype=np.float32) for v in values["input_values"]]}


def normalize_waveforms(dataset: Dataset, feature_extractor, desc: str) -> Dataset:
    """Apply the saved feature extractor's waveform normalisation, so training sees what the pipeline feeds."""
    if not len(dataset) or not getattr(feature_extractor, "do_normalize", False):
        return dataset
    return dataset.with_format("numpy", columns=["input_values"], output_all_columns=True).map(
        _normalize_batch, batched=True, batch_size=64, fn_kwargs={"feature_extractor": feature_extractor},
        desc=desc,
    ).with_format(None)


def prepare_inputs(data: UDAData, model: EmoDnaForAudioClassification, feature_extractor,
                   cache_features: bool | None = None, batch_size: int = 16,
                   speaker_normalization: bool = False) -> tuple[UDAData, bool]:
    """Normalised waveforms for every split, then (when wanted) cached backbone features.

    `cache_features=None` caches when the cached part is parameter-free or frozen (the tcn front end, a frozen
    SSL backbone): training then skips it every epoch and gives the same logits. The target's train and eval
    rows are the same utterances: they are processed once. `speaker_normalization` standardises the cached
    features per speaker (`standardize_per_speaker`). Returns the new data and whether features were cached.
    """
    from .data import cache_features as compute_cached_features
    from .data import standardize_per_speaker

    source_train = normalize_waveforms(data.source_train, feature_extractor, "Normalising source (train)")
    source_eval = normalize_waveforms(data.source_eval, feature_extractor, "Normalising source (eval)")
    target_eval = normalize_waveforms(data.target_eval, feature_extractor, "Normalising target")
    config = model.config
    cacheable = not config.uses_ssl_backbone or config.freeze_backbone
    if cache_features and not cacheable:
        raise ValueError("cache_features needs a frozen backbone (freeze_backbone=True) or the tcn backbone.")
    cached = cacheable if cache_features is None else bool(cache_features)
    if cached:
        source_train, source_eval, target_eval = (
            compute_cached_features(ds, model, batch_size=batch_size) if len(ds) else ds
            for ds in (source_train, source_eval, target_eval)
        )
    if speaker_normalization:
        if not cached:
            raise ValueError("speaker_normalization works on cached features: use the tcn or opensmile backbone, "
                             "or a frozen SSL backbone, with cache_features.")
        source_train, source_eval, target_eval = (
            standardize_per_speaker(ds) for ds in (source_train, source_eval, target_eval))
    target_train = target_eval.remove_columns("labels")
    return dataclasses.replace(data, source_train=source_train, source_eval=source_eval,
                               target_train=target_train, target_eval=target_eval), cached


# --- model ----------------------------------------------------------------------------------------------------------


def build_model(model_args: ModelArguments, label_names: list[str], corpus_names: list[str],
                sampling_rate: int = 16000) -> EmoDnaForAudioClassification:
    """A fresh model for this label space and these corpora (SSL backbone weights from the checkpoint, if any)."""
    kwargs = model_args.config_kwargs()
    kwargs.update(
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
    if kwargs.get("backbone_type", _CONFIG_DEFAULTS["backbone_type"]) not in ("tcn", "opensmile"):
        logger.warning("No backbone_name_or_path: the %s backbone starts from random weights.", kwargs["backbone_type"])
    return EmoDnaForAudioClassification(EmoDnaConfig(**kwargs))


# --- evaluation with embeddings -------------------------------------------------------------------------------------

# Outputs not gathered at prediction time: the logits and both embeddings are what reports need.
_PREDICTION_IGNORE_KEYS = ["emotion_projections", "corpus_projections", "domain_logits", "corpus_logits"]


class _WithEmbeddings:
    """Collator wrapper that asks the model for its embeddings (`output_embeddings=True`) in every batch."""

    def __init__(self, collator):
        self.collator = collator

    def __call__(self, examples):
        batch = self.collator(examples)
        batch["output_embeddings"] = True
        return batch


@dataclass
class Evaluation:
    """Predictions of one evaluation set, with its metrics (`uar`, `war`, `macro_f1`, `recall`, `loss`, `n`)."""

    name: str
    metrics: dict[str, Any]
    predictions: np.ndarray
    labels: np.ndarray
    corpus_ids: np.ndarray
    emotion_embeddings: np.ndarray
    corpus_embeddings: np.ndarray
    confusion_matrix: np.ndarray


def predict_with_embeddings(trainer: EmoDnaTrainer, dataset: Dataset, name: str,
                            label_names: list[str]) -> Evaluation:
    """One pass of `trainer.predict` (distributed-safe) giving metrics, predictions and both embeddings."""
    from .metrics import confusion_matrix

    collator = trainer.data_collator
    trainer.data_collator = _WithEmbeddings(collator)
    try:
        output = trainer.predict(dataset, ignore_keys=_PREDICTION_IGNORE_KEYS, metric_key_prefix=f"eval_{name}")
    finally:
        trainer.data_collator = collator
    logits, emotion_embeddings, corpus_embeddings = output.predictions
    labels = np.asarray(output.label_ids).reshape(-1)
    predictions = np.asarray(logits).argmax(-1)
    prefix = f"eval_{name}_"
    raw = {k[len(prefix):]: v for k, v in output.metrics.items() if k.startswith(prefix)}
    metrics = {
        "uar": raw["uar"], "war": raw["war"], "macro_f1": raw["macro_f1"],
        "recall": {label: raw[f"recall_{label}"] for label in label_names},
        "loss": raw.get("loss"), "n": int(len(labels)),
    }
    return Evaluation(
        name=name,
        metrics=metrics,
        predictions=predictions,
        labels=labels,
        corpus_ids=np.asarray(list(dataset["corpus_id"]), dtype=np.int64),
        emotion_embeddings=np.asarray(emotion_embeddings),
        corpus_embeddings=np.asarray(corpus_embeddings),
        confusion_matrix=confusion_matrix(predictions, labels, len(label_names)),
    )


def _projection_sample(evaluations: list[Evaluation], max_per_corpus: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"emotion": [], "corpus": [], "labels": [], "corpus_ids": []}
    for evaluation in evaluations:
        for corpus_id in np.unique(evaluation.corpus_ids):
            rows = np.flatnonzero(evaluation.corpus_ids == corpus_id)
            if len(rows) > max_per_corpus:
                rows = np.sort(rng.choice(rows, max_per_corpus, replace=False))
            parts["emotion"].append(evaluation.emotion_embeddings[rows])
            parts["corpus"].append(evaluation.corpus_embeddings[rows])
            parts["labels"].append(evaluation.labels[rows])
            parts["corpus_ids"].append(evaluation.corpus_ids[rows])
    return {k: np.concatenate(v) for k, v in parts.items()}


def analyse_embeddings(evaluations: list[Evaluation], max_projection_samples: int = 300,
                       seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A per-corpus sample of the embeddings and its silhouette scores (see `reporting.embedding_silhouettes`)."""
    sample = _projection_sample(evaluations, max_projection_samples, seed)
    silhouettes = reporting.embedding_silhouettes(sample["emotion"], sample["corpus"], sample["labels"],
                                                  sample["corpus_ids"])
    return sample, dict(silhouettes, n_points=int(len(sample["labels"])))


def write_plots(output_dir: Path, evaluations: list[Evaluation], label_names: list[str], corpus_names: list[str],
                *, titles: dict[str, str], projection: str = "pca", max_projection_samples: int = 300,
                seed: int = 0, figure_title: str | None = None, prefix: str = "") -> dict[str, Any]:
    """Confusion matrices and the embedding projection (file names start with `prefix`); returns the files and
    the embedding analysis."""
    files = {"confusion_matrix": prefix + reporting.CONFUSION_MATRIX_FILE, "embeddings": prefix + reporting.EMBEDDINGS_FILE}
    panels = [(titles[e.name], e.confusion_matrix) for e in evaluations]
    reporting.save_confusion_matrices(output_dir / files["confusion_matrix"], panels, label_names)
    sample, analysis = analyse_embeddings(evaluations, max_projection_samples, seed)
    reporting.save_embedding_projection(
        output_dir / files["embeddings"], sample["emotion"], sample["corpus"], sample["labels"],
        sample["corpus_ids"], label_names, corpus_names, method=projection, seed=seed, silhouettes=analysis,
        title=figure_title,
    )
    return {"files": files, "embedding_analysis": dict(analysis, projection=projection)}


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


# --- one run --------------------------------------------------------------------------------------------------------


def check_model_selection(training_args: EmoDnaTrainingArguments) -> None:
    """Refuse target-label model selection: in UDA the target labels are unknown at training time."""
    metric = training_args.metric_for_best_model
    if not (training_args.load_best_model_at_end or metric):
        return
    if metric and re.match(r"^(eval_)?source_", metric):
        return
    raise ValueError(
        f"metric_for_best_model={metric!r}"
        + (" with load_best_model_at_end" if training_args.load_best_model_at_end else "")
        + ": model selection and early stopping may only use held-out SOURCE metrics (e.g. 'source_uar'); "
        "target labels are unknown in unsupervised domain adaptation and using them would inflate the target "
        "results. Use metric_for_best_model='source_uar', or train for a fixed budget."
    )


def _versions() -> dict[str, str]:
    import datasets
    import transformers

    from . import __version__

    return {"emodna_hf": __version__, "transformers": transformers.__version__, "torch": torch.__version__,
            "datasets": datasets.__version__}


def _corpus_info(spec: CorpusSpec, report: dict) -> dict[str, Any]:
    facts = reporting.corpus_facts(spec.label_map_name or spec.name)
    kind = report.get("source_kind", "")
    return {
        "corpus": spec.name,
        # Local paths stay out of the card (they mean nothing elsewhere and may be private): the corpus name.
        "dataset_id": str(spec.source) if kind in ("hub", "synthetic") else spec.name,
        "location": {"hub": "Hub dataset", "synthetic": "generated by emodna_hf"}.get(kind, f"local files ({kind})"),
        "hub": kind == "hub",
        "source_kind": kind,
        "split": spec.split if kind in ("hub", "disk", "audiofolder") else None,
        "config_name": spec.config_name,
        "language": facts["language"],
        "style": facts["style"],
        "title": facts["title"],
        "mapping": (report.get("labels") or {}).get("mapping", {}),
        "n": report.get("n"),
        "classes": (report.get("labels") or {}).get("classes", {}),
        "dropped": (report.get("labels") or {}).get("dropped", {}),
    }


def _backbone_info(model_args: ModelArguments, config: EmoDnaConfig) -> dict[str, Any]:
    base = model_args.backbone_name_or_path
    if config.backbone_type == "tcn":
        description = (f"light MFCC + bidirectional temporal convolutional network ('tcn', {config.tcn_num_blocks} "
                       f"blocks × {config.tcn_hidden_size} channels), trained from scratch.")
    elif config.backbone_type == "opensmile":
        description = (f"openSMILE {config.opensmile_feature_set} utterance functionals computed by the model from "
                       "the waveform (needs the `opensmile` package, `pip install opensmile`; openSMILE's licence "
                       "covers research and personal use), followed by the trained encoders.")
    elif base:
        frozen = "frozen" if config.freeze_backbone else (
            "fine-tuned (CNN feature encoder frozen)" if config.freeze_feature_encoder else "fully fine-tuned")
        description = f"{config.backbone_type} encoder from `{base}`, {frozen}."
    else:
        description = f"{config.backbone_type} encoder, randomly initialised."
    # base_model metadata must be a Hub model id: not a local folder.
    is_hub_id = bool(base) and not Path(base).expanduser().exists() and bool(_HUB_ID.match(base))
    return {"type": config.backbone_type, "base_model": base if is_hub_id else None, "description": description}


def _training_info(args: EmoDnaTrainingArguments, train_metrics: dict[str, Any], num_processes: int) -> dict[str, Any]:
    batch = args.per_device_train_batch_size * args.gradient_accumulation_steps * num_processes
    if args.max_steps and args.max_steps > 0:
        budget = f"{args.max_steps} steps"
    else:
        budget = f"{args.num_train_epochs:g} epoch{'' if args.num_train_epochs == 1 else 's'}"
    steps = train_metrics.get("global_step")
    scheduler = getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)
    description = (
        f"{budget}{f' ({steps} optimisation steps)' if steps else ''}, batches of {batch} source + {batch} target "
        f"utterances, learning rate {args.learning_rate:g} ({scheduler} schedule), seed {args.seed}; the final "
        "model is kept (no target-label model selection)."
    )
    return {"description": description, "batch_size": batch, "learning_rate": args.learning_rate, "seed": args.seed}


def _summary_metrics(evaluation: Evaluation) -> dict[str, Any]:
    return dict(evaluation.metrics, confusion_matrix=evaluation.confusion_matrix.tolist())


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
    if data is None:
        data_args.check_sources()  # a wrong path fails now, not after other corpora were decoded
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
    model = build_model(model_args, data.label_names, data.corpus_names, data_args.sampling_rate)
    feature_extractor = create_feature_extractor(model.config)
    model.to(args.device)  # feature caching runs the backbone: on the training device
    with args.main_process_first(desc="preparing inputs"):
        inputs, cached = prepare_inputs(data, model, feature_extractor, model_args.cache_features,
                                        batch_size=args.per_device_eval_batch_size,
                                        speaker_normalization=data_args.speaker_normalization)
    logger.info("Training %s on %d source and %d target utterances%s.", model.config.adaptation_method,
                len(inputs.source_train), len(inputs.target_train), " (cached features)" if cached else "")

    eval_sets = {"target": inputs.target_eval}
    if len(inputs.source_eval):
        eval_sets["source"] = inputs.source_eval
    trainer = EmoDnaTrainer(
        model=model, args=args, train_dataset=inputs.source_train, target_dataset=inputs.target_train,
        eval_dataset=eval_sets, processing_class=feature_extractor, callbacks=callbacks,
    )
    train_result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    train_metrics = dict(train_result.metrics, global_step=train_result.global_step)

    logger.info("Evaluating on %s (target%s).", data_args.target_name,
                " and held-out source" if "source" in eval_sets else "")
    evaluations = [predict_with_embeddings(trainer, ds, name, data.label_names) for name, ds in eval_sets.items()]
    by_name = {e.name: e for e in evaluations}

    sources, target = data_args.source_specs(), data_args.target_spec()
    corpora = {spec.name: _corpus_info(spec, data.reports.get(spec.name, {})) for spec in [*sources, target]}
    record: dict[str, Any] = {
        "scenario": {
            "sources": [s.name for s in sources], "target": target.name, "scheme": data_args.scheme,
            "label_names": list(data.label_names), "corpus_names": list(data.corpus_names),
            "protocol": "transductive UDA: the target metrics are computed on the unlabelled target utterances "
                        "used for adaptation; target labels were used for evaluation only."
                        + (" Features were standardised per speaker (speaker ids used; not comparable with "
                           "speaker-free results)." if data_args.speaker_normalization else ""),
        },
        "target": dict(_summary_metrics(by_name["target"]), corpus=target.name),
    }
    if "source" in by_name:
        record["source"] = dict(_summary_metrics(by_name["source"]), corpus=" + ".join(s.name for s in sources))
    record["train"] = {
        "runtime_s": train_metrics.get("train_runtime"), "loss": train_metrics.get("train_loss"),
        "steps": train_result.global_step, "epochs": train_metrics.get("epoch"),
        "cached_features": cached, "speaker_normalization": data_args.speaker_normalization,
    }
    record["data"] = {
        name: {k: info[k] for k in ("source_kind", "n", "classes", "dropped")} for name, info in corpora.items()
    }
    record["data"]["split"] = data.reports.get("split", {})
    record["config"] = {
        "config_file": config_file,
        "command": command,
        "model_args": dataclasses.asdict(model_args),
        "data_args": dataclasses.asdict(data_args),
        "training_args": training_args.to_dict(),
        "model_config": model.config.to_dict(),
    }
    record["versions"] = _versions()

    if write_outputs and trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        trainer.model.save_pretrained(output_dir)
        feature_extractor.save_pretrained(output_dir)
        trainer.save_state()
        titles = {
            "target": f"target: {target.name} — UAR {record['target']['uar']:.1%}",
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
        reporting.write_metrics(output_dir / reporting.METRICS_FILE, record)
        repo_id = push_plan.repo_id if push_plan else (training_args.hub_model_id or str(output_dir))
        card = reporting.make_model_card(
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


def card_info(record: dict[str, Any], corpora: dict[str, dict], model, model_args: ModelArguments,
              args: EmoDnaTrainingArguments, trainer: EmoDnaTrainer, files: dict[str, str], repo_id: str,
              command: str | None, hub_pushed: bool = False) -> dict[str, Any]:
    """The values the model card template reads (see `reporting.make_model_card`)."""
    config = model.config
    scenario = record["scenario"]
    sources = [corpora[name] for name in scenario["sources"]]
    target = corpora[scenario["target"]]
    results = [dict(name=f"{scenario['target']} (target, transductive)", **record["target"])]
    if "source" in record:
        results.append(dict(name=f"{record['source']['corpus']} (held-out source)", **record["source"]))
    languages = sorted({c["language"] for c in [*sources, target] if c["language"]})
    if args.hub_model_id or hub_pushed:
        name = repo_id.rstrip("/").split("/")[-1]
    else:
        method = "" if config.adaptation_method == "emodna" else f"-{config.adaptation_method}"
        name = f"emodna{method}-{'+'.join(scenario['sources'])}-to-{scenario['target']}"
    return {
        "model_name": name,
        "repo_id": repo_id,
        "sources": sources,
        "target": target,
        "scheme": scenario["scheme"],
        "label_names": scenario["label_names"],
        "languages": languages,
        "backbone": _backbone_info(model_args, config),
        "method": objective_class(config.adaptation_method).describe(config),
        "training": _training_info(args, {"global_step": record["train"]["steps"]}, trainer.accelerator.num_processes),
        "results": results,
        "target_metrics": record["target"],
        "embedding_analysis": record.get("embedding_analysis"),
        "files": files,
        "sampling_rate": config.sampling_rate,
        "reproduce_command": command or "# run_experiment(...) with the configuration recorded in metrics.json",
        "versions": record["versions"],
        "extra_tags": [config.adaptation_method, config.backbone_type, scenario["scheme"]],
    }


def format_summary(record: dict[str, Any]) -> str:
    """A few readable lines for the end of a run."""
    scenario = record["scenario"]
    target = record["target"]
    lines = [
        f"{' + '.join(scenario['sources'])} → {scenario['target']} ({scenario['scheme']}): "
        f"{record['config']['model_config'].get('adaptation_method', _CONFIG_DEFAULTS['adaptation_method'])}",
        f"  target {target['corpus']:<12} UAR {target['uar']:.3f}  WAR {target['war']:.3f}  "
        f"macro-F1 {target['macro_f1']:.3f}  ({target['n']} utterances, transductive)",
    ]
    if "source" in record:
        source = record["source"]
        lines.append(f"  source {source['corpus']:<12} UAR {source['uar']:.3f}  WAR {source['war']:.3f}  "
                     f"macro-F1 {source['macro_f1']:.3f}  ({source['n']} held-out utterances)")
    if record.get("output_dir"):
        lines.append(f"  output: {record['output_dir']} (model, README.md, metrics.json, "
                     f"{reporting.CONFUSION_MATRIX_FILE}, {reporting.EMBEDDINGS_FILE})")
    if record.get("hub"):
        lines.append(f"  pushed: https://huggingface.co/{record['hub']['repo_id']}")
    lines.append(f"  wall time {record['wall_time_s']:.0f} s")
    return "\n".join(lines)


def command_line(argv: list[str] | None = None, launcher: str | None = None) -> str:
    """The current command, for the model card (`launcher`: e.g. 'accelerate launch')."""
    argv = list(sys.argv if argv is None else argv)
    script = argv[0] if argv else "recipes/train.py"
    prefix = launcher or "python"
    return " ".join([prefix, shlex.quote(script), *map(shlex.quote, argv[1:])])


# --- evaluation of a saved model ------------------------------------------------------------------------------------


@dataclass
class EvaluationArguments:
    """Evaluate a saved model (folder or Hub id) on one or more corpora (`corpus_*` lists as for sources)."""

    model_name_or_path: str = field(metadata={"help": "Output folder of a run, or a Hub model id."})
    corpus_name: list[str] = field(metadata={"help": "Names of the corpora to evaluate on."})
    corpus_dataset: list[str] = field(
        metadata={"help": "Hub dataset id, local folder/manifest or synthetic:<preset> of each corpus."}
    )
    output_dir: str = field(default="outputs/evaluation", metadata={"help": "Where to write metrics and plots."})
    corpus_split: list[str] = field(default_factory=lambda: ["train"], metadata={"help": "Split of each corpus."})
    corpus_config_name: list[str] | None = field(default=None, metadata={"help": "Hub config of each corpus."})
    corpus_audio_column: list[str] = field(default_factory=lambda: ["audio"], metadata={"help": "Audio column."})
    corpus_label_column: list[str] | None = field(default=None, metadata={"help": "Label column."})
    corpus_speaker_column: list[str] | None = field(default=None, metadata={"help": "Speaker column."})
    corpus_utt_id_column: list[str] | None = field(default=None, metadata={"help": "Utterance-id column."})
    corpus_label_map_name: list[str] | None = field(default=None, metadata={"help": "Built-in label map."})
    corpus_label_map: dict | str | None = field(default=None, metadata={"help": "{corpus: {raw: emotion}}."})
    corpus_load_kwargs: dict | str | None = field(default=None, metadata={"help": "{corpus: {...}} load kwargs."})
    max_duration_s: float | None = field(default=None, metadata={"help": "Centre-crop longer utterances."})
    on_bad_audio: str = field(default="raise", metadata={"help": "'raise' or 'skip' unreadable audio."})
    batch_size: int = field(default=16, metadata={"help": "Utterances per forward pass."})
    revision: str | None = field(default=None, metadata={"help": "Model revision (Hub)."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run the model code stored with the model instead of the installed emodna_hf code."},
    )
    max_projection_samples: int = field(default=300, metadata={"help": "Utterances per corpus in the projection."})
    projection: str = field(default="pca", metadata={"help": "'pca' or 'tsne'."})
    use_cpu: bool = field(default=False, metadata={"help": "Evaluate on the CPU even if a GPU is available."})

    def __post_init__(self):
        # Reuse DataArguments' validation of the corpus lists (as sources; the target is a placeholder).
        self._data = DataArguments(
            **{f"source_{k}": getattr(self, f"corpus_{k}") for k in
               ("name", "dataset", "split", "config_name", "audio_column", "label_column", "speaker_column",
                "utt_id_column", "label_map_name", "label_map", "load_kwargs")},
            target_name="__unused_target__", target_dataset="synthetic:synth-a", target_label_map_name="synthetic",
            on_bad_audio=self.on_bad_audio, projection=self.projection,
        )

    def corpus_specs(self) -> list[CorpusSpec]:
        return self._data.source_specs()


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
    eval_args._data.check_sources()
    model = AutoModelForAudioClassification.from_pretrained(
        eval_args.model_name_or_path, revision=eval_args.revision, trust_remote_code=eval_args.trust_remote_code
    ).eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(eval_args.model_name_or_path, revision=eval_args.revision)
    label_names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    scheme = scheme_of(label_names)
    specs = eval_args.corpus_specs()
    datasets, reports = [], {}
    for corpus_id, spec in enumerate(specs):
        dataset, reports[spec.name] = load_corpus(
            spec, scheme=scheme, sampling_rate=feature_extractor.sampling_rate, max_duration_s=eval_args.max_duration_s
        )
        dataset = dataset.add_column("corpus_id", [corpus_id] * len(dataset), feature=Value("int64"))
        datasets.append(normalize_waveforms(dataset, feature_extractor, f"Normalising {spec.name}"))

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
        "corpora": {e.name: _summary_metrics(e) for e in evaluations},
        "data": {spec.name: {k: v for k, v in _corpus_info(spec, reports[spec.name]).items()
                             if k in ("source_kind", "n", "classes", "dropped", "mapping")} for spec in specs},
        "config": dataclasses.asdict(eval_args),
        "versions": _versions(),
    }
    if trainer.is_world_process_zero():
        output_dir.mkdir(parents=True, exist_ok=True)
        # Files of their own (eval_<corpora>*), so that evaluating into a run's folder never replaces its
        # metrics.json and plots, which the model card refers to.
        prefix = f"eval_{'+'.join(s.name for s in specs)}_"
        titles = {e.name: f"{e.name} — UAR {e.metrics['uar']:.1%}" for e in evaluations}
        plots = write_plots(
            output_dir, evaluations, label_names, [s.name for s in specs], titles=titles,
            projection=eval_args.projection, max_projection_samples=eval_args.max_projection_samples,
            figure_title=f"{eval_args.model_name_or_path} evaluated on {', '.join(s.name for s in specs)}",
            prefix=prefix,
        )
        record["embedding_analysis"] = plots["embedding_analysis"]
        record["files"] = {"metrics": prefix.rstrip("_") + ".json", **plots["files"]}
        record["wall_time_s"] = time.time() - started
        reporting.write_metrics(output_dir / record["files"]["metrics"], record)
    record["output_dir"] = str(output_dir)
    return record
