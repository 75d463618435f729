"""Sharing a run's output folder on the 🤗 Hub, model card included.

`PreTrainedModel.push_to_hub` would upload the weights and config but *replace* our README.md with a generic
card (transformers writes its own card during the push), and it leaves out metrics.json and the plots. We
upload the whole folder instead, as one `HfApi.create_commit` of every file (the list is built here with the
same pattern filter `upload_folder` uses, so exactly what is committed is known and testable).

A push is checked before any training starts (:func:`prepare_push`): offline mode or a missing token fail at
once, and the repository is created up front, so a bad repo id or token cannot waste a training run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .shareable import shareable_files

logger = logging.getLogger(__name__)

# Never uploaded: intermediate checkpoints (optimizer states), pickled arguments, caches, and the per-utterance
# predictions (they name the user's utterances and speakers: the user's to keep, not the model's to share).
DEFAULT_IGNORE_PATTERNS = [
    "*predictions.parquet",
    "checkpoint-*",
    "checkpoint-*/**",
    "**/checkpoint-*/**",
    "training_args.bin",
    ".cache/**",
    "**/__pycache__/**",
    "*.pyc",
    "*.lock",
]
REQUIRED_FILES = ("config.json", "model.safetensors", "README.md")


class HubPushError(RuntimeError):
    """A push to the Hub cannot happen (offline, no token, no permission) or failed."""


@dataclass
class PushPlan:
    """What :func:`prepare_push` checked: the full repo id, and the options to push with."""

    repo_id: str
    token: str | None = None
    private: bool | None = None
    revision: str | None = None


def _offline() -> bool:
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return bool(constants.HF_HUB_OFFLINE) or value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def check_push_possible(repo_id: str | None, *, token: str | None = None, after_training: bool = True) -> None:
    """Fail with a clear message if a push to `repo_id` cannot work; touches no network.

    `after_training`: the push follows a training run (`recipes/train.py --push_to_hub`); False for an upload of
    an existing folder (`recipes/push_to_hub.py`, whose token flag is `--token`).
    """
    if not repo_id:
        raise HubPushError("push_to_hub needs a repository id: pass --hub_model_id <user-or-org>/<name>.")
    if _offline():
        if not after_training:
            raise HubPushError(f"Cannot upload to {repo_id!r}: the Hub is in offline mode (HF_HUB_OFFLINE=1 or "
                               "TRANSFORMERS_OFFLINE=1). Unset it and run the upload again.")
        raise HubPushError(
            f"push_to_hub was requested (repo {repo_id!r}) but the Hub is in offline mode (HF_HUB_OFFLINE=1 or "
            "TRANSFORMERS_OFFLINE=1), so the upload would fail after training. Nothing was trained and nothing "
            "was written. Either unset HF_HUB_OFFLINE, or train without --push_to_hub and upload the output "
            "folder later with `python recipes/push_to_hub.py OUTPUT_DIR REPO_ID`."
        )
    from huggingface_hub import get_token

    if token is None and get_token() is None:
        raise HubPushError(
            f"Pushing to {repo_id!r} needs a Hugging Face token and none was found. Run `hf auth login`, set "
            f"HF_TOKEN, or pass {'--hub_token' if after_training else '--token'}."
        )


def prepare_push(
    repo_id: str | None, *, token: str | None = None, private: bool | None = None, revision: str | None = None
) -> PushPlan:
    """Check that pushing can work and create the repository (and branch) now, before any training."""
    check_push_possible(repo_id, token=token)
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, exist_ok=True, private=private, repo_type="model")
        full_id = getattr(url, "repo_id", None) or repo_id
        if revision:
            api.create_branch(full_id, branch=revision, exist_ok=True)
    except Exception as error:  # noqa: BLE001 - any Hub failure here means: do not start training
        raise HubPushError(
            f"Could not create or access the Hub repository {repo_id!r} ({type(error).__name__}: {error}). "
            "Nothing was trained. Check the repo id, your token's write permission and the network."
        ) from error
    return PushPlan(repo_id=full_id, token=token, private=private, revision=revision)


def files_to_upload(folder: str | Path, ignore_patterns: list[str] | None = None) -> list[str]:
    """The files of `folder` (POSIX paths relative to it) that a push uploads, sorted."""
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(folder)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    patterns = DEFAULT_IGNORE_PATTERNS + [".git/**", ".git", *(ignore_patterns or [])]
    return list(filter_repo_objects(names, ignore_patterns=patterns))


def push_output_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    create_pr: bool = False,
    create_repo: bool = True,
    ignore_patterns: list[str] | None = None,
):
    """Upload a run's output folder (model, remote code, feature extractor, README.md, metrics, plots), its text
    files without the machine's paths (`emodna_hf.shareable`).

    Returns the `CommitInfo`. The folder is only read: a failed upload leaves it intact and raises
    :class:`HubPushError` naming the folder, so the upload can be retried with the same call.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise HubPushError(f"{folder} is not a complete emodna_hf output folder: missing {missing}.")
    check_push_possible(repo_id, token=token, after_training=False)
    api = HfApi(token=token)
    try:
        if create_repo:
            url = api.create_repo(repo_id, exist_ok=True, private=private, repo_type="model")
            repo_id = getattr(url, "repo_id", None) or repo_id
            if revision:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
        # Text files with the machine's paths rewritten (corpus-relative, `<output_dir>`, the repo id in the
        # card's usage snippet); see emodna_hf.shareable. The local files are left as they are.
        uploads = shareable_files(folder, files_to_upload(folder, ignore_patterns), repo_id)
        operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=content)
                      for name, content in uploads.items()]
        commit = api.create_commit(
            repo_id=repo_id,
            operations=operations,
            commit_message=commit_message or "Upload Emo-DNA model, model card, metrics and plots",
            repo_type="model",
            revision=revision,
            create_pr=create_pr,
        )
    except Exception as error:  # noqa: BLE001
        raise HubPushError(
            f"Uploading {folder} to {repo_id!r} failed ({type(error).__name__}: {error}). The local folder is "
            f"intact; retry with `python recipes/push_to_hub.py {folder} {repo_id}`."
        ) from error
    logger.info("Pushed %s to https://huggingface.co/%s", folder, repo_id)
    return commit
