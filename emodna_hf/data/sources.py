"""Where a corpus comes from: a `Dataset`, a generated corpus, a CSV/JSON-lines manifest, an audiofolder, a saved
dataset, a Parquet file or the Hub, opened as a `Dataset` (or, with `streaming`, an `IterableDataset`) with an audio
column of paths, bytes or arrays. `loading.load_corpus` turns it into the common layout."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from .spec import FILE_COLUMNS, GENERATED_PREFIX, CorpusSpec
from .synthetic import make_synthetic_corpus

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".aif", ".aiff", ".au", ".w64", ".caf"}
)
_SPLIT_DIRS = frozenset({"train", "test", "validation", "valid", "dev", "eval"})


def _open_source(spec: CorpusSpec, cache_dir: Path | None = None) -> tuple[Dataset, str]:
    """The corpus as a `Dataset` with an audio column, and which kind of source it came from (a generated corpus
    is saved in `cache_dir`, when given, and read from there next time)."""
    source = spec.source
    if isinstance(source, Dataset):
        return source, "dataset"
    if isinstance(source, DatasetDict):
        return _pick_split(source, spec), "dataset"
    text = os.fspath(source)
    if text.startswith(GENERATED_PREFIX):
        preset = text.removeprefix(GENERATED_PREFIX)
        return make_synthetic_corpus(preset, cache_dir=cache_dir, **spec.load_kwargs), "synthetic"
    path = Path(text)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".csv", ".tsv"):
            return _manifest(path, _read_csv(path), spec), "csv"
        if suffix in (".jsonl", ".json"):
            return _manifest(path, _read_jsonl(path), spec), "jsonl"
        if suffix == ".parquet":
            return Dataset.from_parquet(str(path)), "parquet"
        raise ValueError(
            f"Corpus {spec.name!r}: cannot read {path} (expected .csv, .tsv, .jsonl or .parquet)"
        )
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            loaded = load_from_disk(str(path))
            return (_pick_split(loaded, spec) if isinstance(loaded, DatasetDict) else loaded), "disk"
        return _audiofolder(path, spec), "audiofolder"
    loaded = load_dataset(text, spec.config_name, split=spec.split, **spec.load_kwargs)
    if not isinstance(loaded, Dataset):
        raise ValueError(
            f"Corpus {spec.name!r}: load_dataset({text!r}) returned {type(loaded).__name__}; set split"
        )
    return loaded, "hub"


def _pick_split(datasets: DatasetDict, spec: CorpusSpec) -> Dataset:
    if spec.split not in datasets:
        raise ValueError(f"Corpus {spec.name!r}: no split {spec.split!r}; available: {list(datasets)}")
    return datasets[spec.split]


def _read_text(path: Path) -> str:
    """A manifest's text as UTF-8 (a byte-order mark, as spreadsheet programs write, is dropped)."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not UTF-8 text (byte {error.start}: {error.object[error.start:error.start + 4]!r}); save "
            "it as UTF-8, e.g. `iconv -f latin1 -t utf-8 old.csv > new.csv`."
        ) from None


def _read_csv(path: Path) -> list[dict[str, str]]:
    lines = _read_text(path).splitlines(keepends=True)
    return list(csv.DictReader(lines, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {number}: not a JSON object ({error.msg})") from None
    return rows


def _manifest(path: Path, rows: list[dict[str, Any]], spec: CorpusSpec) -> Dataset:
    """Rows of a manifest, their file column resolved against the manifest's folder into `audio` paths."""
    if not rows:
        raise ValueError(f"Corpus {spec.name!r}: manifest {path} has no rows")
    candidates = (spec.audio_column, *FILE_COLUMNS)
    file_column = next((c for c in candidates if c in rows[0]), None)
    if file_column is None:
        raise ValueError(f"Corpus {spec.name!r}: manifest {path} has no file column (tried {candidates})")
    _check_inside(spec, path, path.parent, path.parent, [row.get(file_column) for row in rows])
    return _rows_to_dataset(rows, file_column, path.parent)


def _check_inside(spec: CorpusSpec, listing: Path, folder: Path, base: Path, names: list[Any]) -> None:
    """Refuse file names (relative to `folder`) that lead outside the corpus folder `base` (`../x.wav`, absolute
    paths) unless `spec.allow_paths_outside_corpus`: a downloaded corpus's metadata must not make training read
    arbitrary local files. The check is on the names alone (nothing is opened or looked up), so the error says
    nothing about whether such a file exists. Symbolic links inside the folder are the corpus owner's choice and
    are followed."""
    if spec.allow_paths_outside_corpus:
        return
    root, start = os.path.abspath(base), os.path.abspath(folder)
    for number, name in enumerate(names, start=1):
        if name is None or str(name) == "":
            continue
        candidate = os.path.normpath(os.path.join(start, str(name)))
        if os.path.commonpath([root, candidate]) != root:
            raise ValueError(
                f"Corpus {spec.name!r}: {listing}, row {number}: file name {str(name)!r} points outside the corpus "
                f"folder {root}; it was not read. Fix the path, or pass --allow_paths_outside_corpus true if the "
                "manifest deliberately lists files elsewhere (e.g. absolute paths)."
            )


def _rows_to_dataset(rows: list[dict[str, Any]], file_column: str, base: Path) -> Dataset:
    """Audio paths made absolute in `audio`, `_rel_path` kept for ids; other columns as they are."""
    columns = {k: [row.get(k) for row in rows] for k in rows[0] if k not in (file_column, "audio")}
    relative = [str(row[file_column]) for row in rows]
    columns["audio"] = [str((base / p).resolve()) for p in relative]
    columns["_rel_path"] = relative
    return Dataset.from_dict(columns)


def _audiofolder(root: Path, spec: CorpusSpec) -> Dataset:
    """The 🤗 audiofolder convention: metadata files with `file_name`, else the parent folder is the label."""
    if spec.split and (root / spec.split).is_dir():
        root = root / spec.split
    elif any((root / d).is_dir() for d in _SPLIT_DIRS):
        found = sorted(d for d in _SPLIT_DIRS if (root / d).is_dir())
        raise ValueError(f"Corpus {spec.name!r}: {root} has split folders {found} but no {spec.split!r}")
    metadata = sorted(p for p in root.rglob("metadata.*") if p.suffix in (".csv", ".jsonl"))
    if metadata:
        rows = []
        for meta in metadata:
            meta_rows = _read_csv(meta) if meta.suffix == ".csv" else _read_jsonl(meta)
            if any("file_name" not in row for row in meta_rows):
                raise ValueError(f"Corpus {spec.name!r}: {meta} needs a 'file_name' column")
            # Each metadata file's names are relative to its folder; none may leave the corpus root.
            _check_inside(spec, meta, meta.parent, root, [row["file_name"] for row in meta_rows])
            for row in meta_rows:
                # file_name is relative to its metadata file; ids become relative to the root
                rows.append({**row, "file_name": os.path.relpath(meta.parent / row["file_name"], root)})
        if not rows:
            raise ValueError(f"Corpus {spec.name!r}: the metadata files under {root} have no rows")
        return _rows_to_dataset(rows, "file_name", root)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in AUDIO_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise ValueError(f"Corpus {spec.name!r}: no audio files ({sorted(AUDIO_EXTENSIONS)}) under {root}")
    rows = [{"file_name": str(p.relative_to(root))} for p in files]
    if all(p.parent != root for p in files):
        for row, p in zip(rows, files, strict=True):
            row["label"] = p.parent.name
    return _rows_to_dataset(rows, "file_name", root)
