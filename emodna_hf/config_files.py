"""Run configuration from YAML/JSON files and the command line: `load_config_file`, `parse_args`.

`parse_args` is `HfArgumentParser` over `ModelArguments`, `DataArguments` and
:class:`~emodna_hf.trainer.EmoDnaTrainingArguments`, with values from a configuration file that the command line
overrides.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from .arguments import _CORPUS_FIELDS, _NONE_STRINGS, DataArguments, ModelArguments
from .trainer import EmoDnaTrainingArguments


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


_MANIFEST_STEMS = {"manifest", "metadata", "data", "index", "train", "test", "all"}


def corpus_name_from_source(source: str) -> str:
    """A readable name for a corpus given only by its source: `synthetic:synth-b` → `synth-b`, a folder → its
    name, a manifest → its file name (or its folder's, for generic names such as `manifest.csv`), a Hub id → its
    last part."""
    if source.startswith("synthetic:"):
        return source.split(":", 1)[1]
    path = Path(source).expanduser()
    if path.exists():
        path = path.resolve()
        if path.is_file():
            return path.parent.name if path.stem.lower() in _MANIFEST_STEMS else path.stem
        return path.name
    return source.rstrip("/").split("/")[-1]


def _flag_values(argv: list[str], flag: str) -> list[str] | None:
    """The values given to `flag` on the command line (`--flag a b` or `--flag=a`), or None if it is absent."""
    for i, arg in enumerate(argv):
        if arg == flag:
            values = []
            for value in argv[i + 1:]:
                if value.startswith("--"):
                    break
                values.append(value)
            return values
        if arg.startswith(flag + "="):
            return [arg.split("=", 1)[1]]
    return None


def _names_of_command_line_corpora(argv: list[str]) -> dict[str, Any]:
    """Corpora given on the command line by dataset only are named after their source, not after the config
    file's corpora (which would make a user's corpus inherit the demo corpus's name, label map and card facts)."""
    names: dict[str, Any] = {}
    sources = _flag_values(argv, "--source_dataset")
    if sources and _flag_values(argv, "--source_name") is None:
        names["source_name"] = [corpus_name_from_source(source) for source in sources]
    target = _flag_values(argv, "--target_dataset")
    if target and _flag_values(argv, "--target_name") is None:
        names["target_name"] = corpus_name_from_source(target[0])
    return names


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
    defaults.update(_names_of_command_line_corpora(rest))
    parser.set_defaults(**defaults)
    # The parser also knows --config (for --help); its value was taken above and comes back as a namespace.
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=rest)[:3]
    return ParsedArgs(model_args, data_args, training_args, config_file)
