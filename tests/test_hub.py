"""Hub upload of a run's output folder, offline: HfApi is patched, nothing leaves the machine."""

import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import pytest
from huggingface_hub import CommitInfo, HfApi, RepoUrl

from emodna_hf import hub

REPO = Path(__file__).resolve().parents[1]


def fake_output_folder(root: Path) -> Path:
    folder = root / "run"
    files = {
        "README.md": "---\nlibrary_name: transformers\n---\n# our card\n",
        "config.json": "{}", "model.safetensors": "weights", "preprocessor_config.json": "{}",
        "configuration_emodna.py": "", "modeling_emodna.py": "", "tcn_emodna.py": "",
        "metrics.json": "{}", "confusion_matrix.png": "png", "embeddings.png": "png", "trainer_state.json": "{}",
        "runs/Nov01/events.out.tfevents.1": "tb",
        "checkpoint-10/model.safetensors": "old", "checkpoint-10/optimizer.pt": "opt",
        "training_args.bin": "pickle",
    }
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(content)
    return folder


def commit_info(repo_id="me/emo"):
    return CommitInfo(commit_url=f"https://huggingface.co/{repo_id}/commit/abc", commit_message="m",
                      commit_description="", oid="abc", pr_url=None)


@pytest.fixture
def patched_api(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with mock.patch.object(HfApi, "create_repo", autospec=True,
                           return_value=RepoUrl("https://huggingface.co/me/emo")) as create_repo, \
         mock.patch.object(HfApi, "create_commit", autospec=True, return_value=commit_info()) as create_commit, \
         mock.patch.object(HfApi, "create_branch", autospec=True) as create_branch:
        yield create_repo, create_commit, create_branch


def test_push_uploads_the_whole_folder_with_our_card(tmp_path, patched_api):
    create_repo, create_commit, _ = patched_api
    folder = fake_output_folder(tmp_path)
    commit = hub.push_output_folder(folder, "me/emo", private=True)

    assert commit.commit_url.endswith("/commit/abc")
    create_repo.assert_called_once()
    assert create_repo.call_args.kwargs["private"] is True and create_repo.call_args.kwargs["exist_ok"] is True
    operations = create_commit.call_args.kwargs["operations"]
    uploaded = {op.path_in_repo: op.path_or_fileobj for op in operations}
    assert set(uploaded) == {
        "README.md", "config.json", "model.safetensors", "preprocessor_config.json", "configuration_emodna.py",
        "modeling_emodna.py", "tcn_emodna.py", "metrics.json", "confusion_matrix.png", "embeddings.png",
        "trainer_state.json", "runs/Nov01/events.out.tfevents.1",
    }
    # Our README, byte for byte: nothing regenerates the card during the push.
    assert uploaded["README.md"] == b"---\nlibrary_name: transformers\n---\n# our card\n"
    assert create_commit.call_args.kwargs["repo_id"] == "me/emo"


def test_push_to_branch_creates_it(tmp_path, patched_api):
    _, create_commit, create_branch = patched_api
    hub.push_output_folder(fake_output_folder(tmp_path), "me/emo", revision="v1")
    assert create_branch.call_args.kwargs["branch"] == "v1"
    assert create_commit.call_args.kwargs["revision"] == "v1"


def test_failed_upload_keeps_the_folder_and_says_how_to_retry(tmp_path, patched_api):
    _, create_commit, _ = patched_api
    create_commit.side_effect = ConnectionError("network down")
    folder = fake_output_folder(tmp_path)
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    with pytest.raises(hub.HubPushError, match="local folder is intact.*push_to_hub.py"):
        hub.push_output_folder(folder, "me/emo")
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_incomplete_folder_is_refused(tmp_path, patched_api):
    folder = fake_output_folder(tmp_path)
    (folder / "README.md").unlink()
    with pytest.raises(hub.HubPushError, match="README.md"):
        hub.push_output_folder(folder, "me/emo")


def test_offline_and_missing_token_fail_before_any_request(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    with mock.patch.object(HfApi, "create_repo", autospec=True) as create_repo:
        with pytest.raises(hub.HubPushError, match="offline"):
            hub.prepare_push("me/emo")
        with pytest.raises(hub.HubPushError, match="offline mode.*run the upload again") as upload:
            hub.check_push_possible("me/emo", after_training=False)
        assert "push_to_hub.py" not in str(upload.value)  # no advice to run the script that is running
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.delenv("HF_TOKEN")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "no_login"))
        with mock.patch("huggingface_hub.get_token", return_value=None):
            with pytest.raises(hub.HubPushError, match="none was found.*pass --hub_token"):
                hub.prepare_push("me/emo")  # after training: train.py's flag
            with pytest.raises(hub.HubPushError, match="none was found.*pass --token"):
                hub.check_push_possible("me/emo", after_training=False)  # push_to_hub.py's flag
        with pytest.raises(hub.HubPushError, match="repository id"):
            hub.check_push_possible(None)
    create_repo.assert_not_called()


def test_repo_creation_failure_is_reported_before_training(monkeypatch, patched_api):
    create_repo, _, _ = patched_api
    create_repo.side_effect = PermissionError("403 Forbidden")
    with pytest.raises(hub.HubPushError, match="Nothing was trained"):
        hub.prepare_push("someone-else/emo")


def test_push_script_dry_run_lists_files(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("recipe_push_to_hub", REPO / "recipes" / "push_to_hub.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main([str(fake_output_folder(tmp_path)), "me/emo", "--dry_run"])
    listed = capsys.readouterr().out.split()
    assert "README.md" in listed and "model.safetensors" in listed and "runs/Nov01/events.out.tfevents.1" in listed
    assert not any(name.startswith("checkpoint-") or name == "training_args.bin" for name in listed)


@pytest.mark.slow
def test_offline_push_request_fails_before_training(tmp_path):
    """`HF_HUB_OFFLINE=1 ... --push_to_hub`: a clear error at once; an existing output folder is left alone."""
    output = tmp_path / "out"
    output.mkdir()
    (output / "README.md").write_text("previous run")
    env = {"HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_fake", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    started = time.time()
    completed = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "train.py"), "--output_dir", str(output), "--push_to_hub",
         "--hub_model_id", "me/emo", "--overwrite_output_dir", "true"],  # past the folder check, to the Hub's
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )
    assert completed.returncode != 0
    assert "offline mode" in completed.stderr and "Nothing was trained" in completed.stderr
    assert "Decoding" not in completed.stderr + completed.stdout  # no corpus was even loaded
    assert [p.name for p in output.iterdir()] == ["README.md"] and (output / "README.md").read_text() == "previous run"
    assert time.time() - started < 120


def test_uploaded_text_names_no_local_path_and_binary_files_holding_one_stay_local(tmp_path, patched_api, caplog):
    import json

    _, create_commit, _ = patched_api
    folder = fake_output_folder(tmp_path)
    corpus = tmp_path / "data" / "my corpus"  # a space in the path
    (folder / "metrics.json").write_text(json.dumps({"config": {
        "data_args": {"source_name": ["emodb"], "source_dataset": [str(corpus / "manifest.csv")],
                      "target_name": "mine", "target_dataset": "someone/mine"},
        "training_args": {"output_dir": str(folder), "logging_dir": str(folder / "runs" / "Nov01")},
        "command": f"python {Path.cwd()}/recipes/train.py --source_dataset '{corpus}/manifest.csv'",
        "cache": "/var/cache/emodna/x.arrow", "url": "https://huggingface.co/datasets/someone/mine"}}))
    (folder / "README.md").write_text(f'model="{folder}"\nskipped `{corpus}/a.wav` (bad); UAR / WAR 1/3\n')
    (folder / "runs/Nov01/events.out.tfevents.2").write_bytes(b"\x00args" + str(folder).encode() + b"\x01")
    hub.push_output_folder(folder, "me/emo")

    uploads = {op.path_in_repo: op.path_or_fileobj for op in create_commit.call_args.kwargs["operations"]}
    metrics = json.loads(uploads["metrics.json"])["config"]
    assert metrics["data_args"]["source_dataset"] == ["<emodb>/manifest.csv"]
    assert metrics["data_args"]["target_dataset"] == "someone/mine"  # a Hub id is kept
    assert metrics["training_args"] == {"output_dir": "<output_dir>", "logging_dir": "<output_dir>/runs/Nov01"}
    assert metrics["command"] == "python ./recipes/train.py --source_dataset '<emodb>/manifest.csv'"
    assert metrics["cache"] == "<local>/x.arrow" and metrics["url"] == "https://huggingface.co/datasets/someone/mine"
    assert uploads["README.md"] == b'model="me/emo"\nskipped `<emodb>/a.wav` (bad); UAR / WAR 1/3\n'
    assert "runs/Nov01/events.out.tfevents.2" not in uploads and "runs/Nov01/events.out.tfevents.1" in uploads
    assert "Not uploading runs/Nov01/events.out.tfevents.2" in caplog.text
    assert (folder / "metrics.json").read_text().count(str(corpus)) == 2  # the local files are unchanged
