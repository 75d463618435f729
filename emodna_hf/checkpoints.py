"""Resuming a run: which checkpoint `--resume_from_checkpoint` names, and whether its files are whole.

transformers' convention: `--resume_from_checkpoint true` resumes from the latest `checkpoint-*` folder of
`output_dir`, a path from that folder. Its files are checked before training starts, so that a checkpoint cut short
(a full disk, a copy interrupted) is reported as that file, not as a deserialisation traceback from deep inside
`Trainer.train`.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers.trainer_utils import get_last_checkpoint

_TRUE = {"true", "yes", "1", "last", "latest"}
_FALSE = {"", "false", "no", "0", "none", "null"}


def resolve_checkpoint(value: str | bool | None, output_dir: str | os.PathLike) -> str | None:
    """The checkpoint folder to resume from (checked with `check_checkpoint`), or None to start afresh.

    `value`: None/"false" (start afresh), True/"true" (the latest `checkpoint-*` folder of `output_dir`), or a
    checkpoint folder. Raises ValueError when there is none, or a file of it is unreadable.
    """
    if value is None or value is False or (isinstance(value, str) and value.strip().lower() in _FALSE):
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in _TRUE):
        folder = get_last_checkpoint(str(output_dir)) if Path(output_dir).is_dir() else None
        if folder is None:
            raise ValueError(
                f"--resume_from_checkpoint true: {output_dir} holds no checkpoint-* folder to resume from "
                "(checkpoints are written with --save_strategy steps or epoch). Name a checkpoint folder, or drop "
                "the option to start afresh."
            )
    else:
        folder = str(Path(value).expanduser())
        if not Path(folder).is_dir():
            raise ValueError(f"--resume_from_checkpoint: {folder} is not a checkpoint folder.")
    check_checkpoint(folder)
    return folder


def check_checkpoint(folder: str | os.PathLike) -> None:
    """A ValueError naming the first file of a checkpoint folder that is cut short or corrupt: safetensors files
    (their header must cover the file), torch's zip archives (`*.pt`, `*.pth`, `*.bin`) and JSON files."""
    folder = Path(folder)
    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), "pt") as handle:
                    handle.keys()
            elif path.suffix in (".pt", ".pth", ".bin"):
                with zipfile.ZipFile(path):
                    pass
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except (SafetensorError, zipfile.BadZipFile, ValueError, OSError) as error:
            raise ValueError(
                f"Checkpoint {folder}: {path.name} is unreadable ({error}); the checkpoint was probably cut short "
                "(a full disk, an interrupted copy). Resume from an earlier checkpoint-* folder, or start afresh."
            ) from None
