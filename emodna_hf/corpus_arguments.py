"""Corpus arguments: one schema for the corpora a run or an evaluation names, and its validation in one place.

A corpus is a :class:`~emodna_hf.data.CorpusSpec`. Arguments describe corpora as *parallel lists* of
`<prefix>_<field>` values (`source_name`, `source_dataset`, ... in `DataArguments`; `corpus_name`, ... in
`EvaluationArguments`; a single value applies to every corpus) or, for the one target, `target_<field>` scalars;
YAML `sources:`/`target:` blocks are flattened into them by `emodna_hf.config_files`. `normalise_corpus_lists` and
`corpus_specs` turn the lists into specs, `check_specs` validates specs at parse time (sources that can be read in
principle, label maps that exist) and `check_sources` at run time (local paths exist; no source/target overlap).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .data import CorpusSpec, get_label_map

_NONE_STRINGS = {"", "none", "null", "auto"}


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


def _as_list(value: Any) -> list | None:
    if value is None:
        return None
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _none_if_auto(value: Any) -> Any:
    return None if isinstance(value, str) and value.strip().lower() in _NONE_STRINGS else value


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?$")


_FILE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def looks_like_local_path(source: str) -> bool:
    """True when `source` (of a corpus or a model) can only be a local path, existing or mistyped, not a Hub id:
    it starts with '.', '/' or '~', names a data file, has several '/' or a '\\', or its parent folder exists
    ("data/emodb" with a local "data" folder is a typo'd path, not the Hub dataset "data/emodb")."""
    path = Path(source).expanduser()
    return (
        source.startswith((".", "/", "~")) or source.lower().endswith(_FILE_SUFFIXES) or source.count("/") > 1
        or "\\" in source or ("/" in source and path.parent.is_dir() and str(path.parent) not in ("", "."))
    )


def check_corpus_source(name: str, source: str, *, must_exist: bool = True) -> str:
    """How `source` will be read ("synthetic", "local" or "hub"); a clear ValueError when it cannot be.

    With `must_exist=False` (parse time) a path that does not exist yet passes; `DataArguments.check_sources`
    (run time, before any loading) requires it.
    """
    from .data.synthetic import preset_names

    presets = preset_names()  # every generator family
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
    if Path(source).expanduser().exists():
        return "local"
    looks_like_path = looks_like_local_path(source)
    if looks_like_path and not must_exist:
        return "local"
    if looks_like_path or not _HUB_ID.match(source):
        raise ValueError(
            f"Corpus {name!r}: dataset source {source!r} is neither an existing local file or folder, nor "
            "'synthetic:<preset>' (presets: " + ", ".join(presets) + "), nor a Hub dataset id "
            "('name' or 'owner/name'). Fix the path or the id."
        )
    return "hub"


def _manifest_files(path: Path) -> set[Path]:
    """The resolved audio files a CSV/TSV/JSONL manifest lists (empty for other files or unreadable ones)."""
    from .data.sources import _read_csv, _read_jsonl
    from .data.spec import FILE_COLUMNS

    suffix = path.suffix.lower()
    try:
        rows = _read_csv(path) if suffix in (".csv", ".tsv") else _read_jsonl(path) if suffix in (".jsonl", ".json") \
            else []
    except ValueError:
        return set()  # loading will report it, naming the file
    column = next((c for c in FILE_COLUMNS if rows and c in rows[0]), None)
    return {(path.parent / str(row[column])).resolve() for row in rows if column and row.get(column)}


def _check_no_overlap(source: CorpusSpec, target: CorpusSpec) -> None:
    """Refuse a target that shares audio with a source: the same or nested folders, the same manifest, manifests
    listing the same files, or a manifest listing files inside the other corpus's folder. Its labelled utterances
    would leak into training and inflate every target score."""
    if not all(isinstance(s.source, str) and Path(s.source).expanduser().exists() for s in (source, target)):
        return  # Hub ids, synthetic presets and in-memory datasets: nothing on disk to compare
    a, b = (Path(s.source).expanduser().resolve() for s in (source, target))
    if a.is_dir() and b.is_dir():
        overlap = a.is_relative_to(b) or b.is_relative_to(a)
    elif a.is_file() and b.is_file():
        overlap = a == b or bool(_manifest_files(a) & _manifest_files(b))
    else:  # a manifest, and a folder: the manifest inside the folder, or listing files inside it
        folder, manifest = (a, b) if a.is_dir() else (b, a)
        overlap = manifest.is_relative_to(folder) or any(f.is_relative_to(folder) for f in _manifest_files(manifest))
    if overlap:
        raise ValueError(
            f"Target {target.name!r} ({target.source}) shares audio with source {source.name!r} ({source.source}): "
            "the same or nested folders, or manifests listing the same files, would put target utterances, with "
            "their labels, into training. Use separate corpora, or pass --allow_source_target_overlap true for a "
            "deliberate in-domain experiment."
        )


def _check_label_map(name: str, label_map_name: str | None, label_map: dict | None) -> None:
    """A label_map_name that is set must name a built-in map (a corpus without one uses the generic names)."""
    if label_map or not label_map_name:
        return
    try:
        get_label_map(label_map_name)
    except KeyError:
        from .data import CORPUS_LABEL_MAPS

        raise ValueError(
            f"Corpus {name!r}: no built-in label map {label_map_name!r} (known: "
            f"{', '.join(sorted(CORPUS_LABEL_MAPS))}). Name one of them, or give a label_map (raw label -> emotion)."
        ) from None


_CORPUS_FIELDS = ("dataset", "split", "config_name", "audio_column", "label_column", "speaker_column",
                  "utt_id_column", "label_map_name")


_CORPUS_DEFAULTS = {"split": "train", "audio_column": "audio"}


# Mapping fields, keyed by corpus name in the parallel lists.
_MAPPING_FIELDS = ("label_map", "load_kwargs")


def normalise_corpus_lists(args: Any, prefix: str, role: str = "") -> None:
    """Normalise `args`' parallel `<prefix>_*` corpus lists in place and check their shapes.

    Names and datasets become lists of equal length (at least one corpus); every other field a list of 1 or N
    values ('none'/'auto' entries = not set); `<prefix>_label_map` / `<prefix>_load_kwargs` mappings (YAML, JSON or
    `key=value` text) keyed by corpus names (unique names: `check_specs`). `role` ("source") names the corpora in
    messages.
    """
    corpus, corpora = (f"{role} corpus", f"{role} corpora") if role else ("corpus", "corpora")
    names, datasets = _as_list(getattr(args, f"{prefix}_name")), _as_list(getattr(args, f"{prefix}_dataset"))
    if not names:
        raise ValueError(f"At least one {corpus} ({prefix}_name / {prefix}_dataset) is needed.")
    if len(datasets or []) != len(names):
        raise ValueError(f"{prefix}_name has {len(names)} entries but {prefix}_dataset has {len(datasets or [])}: "
                         f"give one dataset per {corpus}.")
    setattr(args, f"{prefix}_name", names)
    setattr(args, f"{prefix}_dataset", datasets)
    for name in _CORPUS_FIELDS[1:]:
        values = _as_list(getattr(args, f"{prefix}_{name}"))
        if values is not None:
            values = [_none_if_auto(v) for v in values]
            if len(values) not in (1, len(names)):
                raise ValueError(f"{prefix}_{name} has {len(values)} entries for {len(names)} {corpora} (give 1 or "
                                 f"{len(names)}).")
        setattr(args, f"{prefix}_{name}", values)
    for name in _MAPPING_FIELDS:
        mapping = _parse_mapping(getattr(args, f"{prefix}_{name}"), f"{prefix}_{name}")
        unknown = set(mapping or {}) - set(names)
        if unknown:
            raise ValueError(f"{prefix}_{name} is keyed by {corpus} name; unknown keys {sorted(unknown)} "
                             f"(corpora: {names}).")
        setattr(args, f"{prefix}_{name}", mapping)


def corpus_specs(args: Any, prefix: str, on_bad_audio: str) -> list[CorpusSpec]:
    """The `CorpusSpec`s of `args`' normalised `<prefix>_*` lists (see `normalise_corpus_lists`)."""

    def value(name: str, i: int) -> Any:
        values = getattr(args, f"{prefix}_{name}")
        picked = None if values is None else values[0] if len(values) == 1 else values[i]
        return _CORPUS_DEFAULTS.get(name) if picked is None else picked

    return [
        CorpusSpec(
            name=corpus, source=getattr(args, f"{prefix}_dataset")[i],
            **{name: value(name, i) for name in _CORPUS_FIELDS[1:]},
            label_map=(getattr(args, f"{prefix}_label_map") or {}).get(corpus),
            on_bad_audio=on_bad_audio,
            load_kwargs=dict((getattr(args, f"{prefix}_load_kwargs") or {}).get(corpus, {})),
            allow_paths_outside_corpus=bool(getattr(args, "allow_paths_outside_corpus", False)),
        )
        for i, corpus in enumerate(getattr(args, f"{prefix}_name"))
    ]


def check_specs(specs: Sequence[CorpusSpec]) -> None:
    """Parse-time checks of corpora: unique names, sources readable in principle, label maps that exist."""
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"Corpus names must be unique; got {names}.")
    for spec in specs:
        check_corpus_source(spec.name, spec.source, must_exist=False)
        _check_label_map(spec.name, spec.label_map_name, spec.label_map)


def check_sources(specs: Sequence[CorpusSpec], target: CorpusSpec | None = None,
                  allow_overlap: bool = False) -> dict[str, str]:
    """Run-time checks (before any loading): every source is readable (local paths exist) and, given a `target`,
    it shares no audio with a spec unless `allow_overlap`. Returns `{corpus: kind}`; ValueError otherwise."""
    every = [*specs, *([target] if target is not None else [])]
    kinds = {spec.name: check_corpus_source(spec.name, spec.source) for spec in every}
    if target is not None and not allow_overlap:
        for spec in specs:
            _check_no_overlap(spec, target)
    return kinds
