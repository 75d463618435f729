"""What a push uploads names Hub ids and paths relative to a corpus, never the machine's own paths.

A run's folder is written for its user: metrics.json keeps the full configuration (corpus manifests, output and
cache folders, the command as typed) so that the run can be repeated on that machine, and the model card quotes
the output folder in its usage snippet. Uploaded as they are, these files would publish home folders, user names
and the layout of private data. :func:`shareable_files` gives the bytes to upload instead: in every text file each
absolute path is rewritten (a corpus folder → `<corpus>`, the output folder → `<output_dir>`, the working folder →
`.`, the home folder → `~`, anything else → `<local>/<file name>`), and the card's usage snippet names the
repository. A binary file that still holds such a path (a TensorBoard log records the training arguments) is
left out, with a warning, rather than uploaded.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = {".md", ".json", ".txt", ".yaml", ".yml", ".csv", ".tsv"}
# Files uploaded without a scan: the model's code (ours, no paths) and weights, graphs and images (no text).
UNSCANNED_SUFFIXES = {".py", ".safetensors", ".bin", ".onnx", ".pt", ".pth", ".pte", ".png", ".jpg"}
# An absolute POSIX path of two segments or more: a "/" not preceded by a word character, ".", "~", ":" (URLs) or
# another "/", then segments without spaces, quotes or brackets.
_SEGMENT = r"[^\s\"'`<>|;,()\[\]{}\\/]+"
_ABSOLUTE = re.compile(rf"(?<![\w.~:/<>-])/{_SEGMENT}(?:/{_SEGMENT})+/?")


def _corpus_roots(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(folder, `<name>`) for every local corpus named in a metrics record's configuration."""
    config = record.get("config") or {}
    pairs: list[tuple[str, Any]] = []
    data_args = config.get("data_args") or {}
    pairs += list(zip(data_args.get("source_name") or [], data_args.get("source_dataset") or [], strict=False))
    if data_args.get("target_name"):
        pairs.append((data_args["target_name"], data_args.get("target_dataset")))
    pairs += list(zip(config.get("corpus_name") or [], config.get("corpus_dataset") or [], strict=False))  # evaluate_model
    roots = []
    for name, dataset in pairs:
        if not isinstance(dataset, str) or ":" in dataset.split("/")[0]:
            continue  # a Hub id, a synthetic:... preset or a hf:// URL
        path = Path(dataset).expanduser()
        if not path.is_absolute():
            continue
        root = path if path.is_dir() or not path.suffix else path.parent
        roots += [(str(root), f"<{name}>"), (str(root.resolve()), f"<{name}>")]
    return roots


def local_path_rules(folder: str | Path) -> list[tuple[str, str]]:
    """(absolute path prefix, replacement) pairs for `folder`'s files, the longest prefix first."""
    folder = Path(folder)
    rules: list[tuple[str, str]] = []
    for record_file in [folder / "metrics.json", *sorted(folder.glob("eval_*.json"))]:
        try:
            rules += _corpus_roots(json.loads(record_file.read_text(encoding="utf-8")))
        except (OSError, ValueError, AttributeError):
            continue
    rules += [(str(folder.absolute()), "<output_dir>"), (str(folder.resolve()), "<output_dir>"),
              (os.getcwd(), "."), (str(Path.home()), "~")]
    rules = [(prefix.rstrip("/"), replacement) for prefix, replacement in rules if prefix.rstrip("/")]
    return sorted(set(rules), key=lambda rule: -len(rule[0]))


def redact(text: str, rules: list[tuple[str, str]]) -> str:
    """`text` with every absolute path rewritten: a known prefix by its rule (`rules`, longest first; prefixes may
    hold spaces), any other path to `<local>/<its file name>`."""
    for prefix, replacement in rules:
        text = re.sub(rf"(?<![\w.~:/<>-]){re.escape(prefix)}(?=/|[^\w.-]|$)", lambda _, r=replacement: r, text)
    return _ABSOLUTE.sub(lambda match: "<local>/" + match.group(0).rstrip("/").rsplit("/", 1)[-1], text)


def _output_dir_as_written(folder: Path) -> str | None:
    try:
        record = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        return (record.get("config") or {}).get("training_args", {}).get("output_dir")
    except (OSError, ValueError, AttributeError):
        return None


def shareable_files(folder: str | Path, names: list[str], repo_id: str) -> dict[str, bytes | str]:
    """What to upload for each of `names` (files of `folder`): redacted bytes for text files, the file's path for
    the others; names left out (a binary file holding a local path) are missing from the result."""
    folder = Path(folder)
    rules = local_path_rules(folder)
    written = _output_dir_as_written(folder)
    uploads: dict[str, bytes | str] = {}
    for name in names:
        path = folder / name
        suffix = path.suffix.lower()
        if suffix in TEXT_SUFFIXES:
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None:
                if name == "README.md":
                    # The usage snippet loads the model from where the run wrote it: from the repository now.
                    for local in {written, str(folder), str(folder.absolute()), str(folder.resolve())} - {None}:
                        text = text.replace(f'"{local}"', f'"{repo_id}"')
                uploads[name] = redact(text, rules).encode("utf-8")
                continue
        if suffix not in UNSCANNED_SUFFIXES and path.stat().st_size <= 64 * 2**20:
            content = path.read_bytes()
            leaked = [prefix for prefix, _ in rules if prefix.encode() in content]
            if leaked:
                logger.warning("Not uploading %s: it holds local paths (%s) and is not a text file to rewrite.",
                               name, leaked[0])
                continue
        uploads[name] = str(path)
    return uploads
