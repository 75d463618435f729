"""A run on the user's own corpora (local folders, an unlabelled target): what it leaves for the user (per-utterance
predictions, an evaluation of an unlabelled corpus) and what a push shares (no path of this machine)."""

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
from huggingface_hub import CommitInfo, HfApi, RepoUrl
from test_recipes import TINY_ARGS, _env, _load_script

REPO = Path(__file__).resolve().parents[1]
TEXT_SUFFIXES = (".md", ".json", ".txt", ".yaml", ".csv")


def _write_corpus(folder: Path, preset: str, n_speakers: int, labelled: bool) -> None:
    from emodna_hf.data import make_synthetic_corpus

    folder.mkdir(parents=True)
    rows = ["file_name,speaker" + (",emotion" if labelled else "")]
    for i, row in enumerate(make_synthetic_corpus(preset, n_per_class_per_speaker=1, n_speakers=n_speakers)):
        sf.write(folder / f"utt{i:03d}.wav", np.asarray(row["audio"]["array"]), row["audio"]["sampling_rate"])
        rows.append(f"utt{i:03d}.wav,{row['speaker']}" + (f",{row['emotion']}" if labelled else ""))
    (folder / "metadata.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    """recipes/train.py from a labelled local folder to an unlabelled local folder (with one unreadable file,
    skipped), every path absolute, as a user would type them."""
    tmp_path = tmp_path_factory.mktemp("sharing")
    source, target, output = tmp_path / "corpora" / "my-source", tmp_path / "corpora" / "my-target", tmp_path / "out"
    _write_corpus(source, "synth-a", 6, labelled=True)
    _write_corpus(target, "synth-b", 4, labelled=False)
    (target / "broken.wav").write_bytes(b"not audio at all")
    with open(target / "metadata.csv", "a") as manifest:
        manifest.write("broken.wav,spk99\n")
    args = [arg for arg in TINY_ARGS if "load_kwargs" not in arg and not arg.startswith(("{", "n_per"))]
    completed = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "train.py"), "--output_dir", str(output), "--source_name", "my-source",
         "--source_dataset", str(source), "--target_name", "my-target", "--target_dataset", str(target),
         "--on_bad_audio", "skip", *args],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return tmp_path, source, target, output


@pytest.fixture
def patched_api(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    commit = CommitInfo(commit_url="https://huggingface.co/me/emo/commit/abc", commit_message="m",
                        commit_description="", oid="abc", pr_url=None)
    with mock.patch.object(HfApi, "create_repo", autospec=True, return_value=RepoUrl("https://huggingface.co/me/emo")), \
         mock.patch.object(HfApi, "create_commit", autospec=True, return_value=commit) as create_commit:
        yield create_commit


def _uploaded(create_commit) -> dict[str, bytes]:
    operations = create_commit.call_args.kwargs["operations"]
    return {op.path_in_repo: op.path_or_fileobj if isinstance(op.path_or_fileobj, bytes)
            else Path(op.path_or_fileobj).read_bytes() for op in operations}


@pytest.mark.slow
def test_a_push_shares_no_local_path(local_run, patched_api):
    tmp_path, source, target, output = local_run
    local_card = (output / "README.md").read_text()
    assert str(output) in local_card and str(tmp_path) in (output / "metrics.json").read_text()  # locally: kept
    push_to_hub = _load_script("push_to_hub")
    push_to_hub.main([str(output), "me/emo"])

    uploaded = _uploaded(patched_api)
    assert {"README.md", "metrics.json", "config.json", "model.safetensors", "pipeline_emodna.py"} <= set(uploaded)
    assert not any(name.endswith("predictions.parquet") for name in uploaded)  # the user's, not shared
    forbidden = {str(tmp_path), str(tmp_path.resolve()), str(Path.home()), os.getcwd(), str(REPO)}
    for name, content in uploaded.items():
        if name.endswith(TEXT_SUFFIXES):
            text = content.decode("utf-8")
            for path in forbidden:
                assert path not in text, f"{name} holds the local path {path}"
    card = uploaded["README.md"].decode()
    assert 'pipeline("audio-classification", model="me/emo", trust_remote_code=True)' in card
    assert "--target_dataset '<my-target>'" in card or "--target_dataset <my-target>" in card  # reproduce command
    assert "recipes/train.py" in card
    metrics = json.loads(uploaded["metrics.json"])
    assert metrics["config"]["data_args"]["source_dataset"] == ["<my-source>"]
    assert metrics["config"]["training_args"]["output_dir"] == "<output_dir>"
    # The unreadable file is named relative to its corpus, in the card and in metrics.json.
    assert list(metrics["data"]["my-target"]["skipped_audio"]) == ["broken"]
    assert "broken.wav" in json.dumps(metrics["data"]["my-target"]["skipped_audio"])
    assert "`broken`" in card


@pytest.mark.slow
def test_training_writes_the_target_predictions(local_run):
    from datasets import load_dataset

    _, _, target, output = local_run
    predictions = load_dataset("parquet", data_files=str(output / "predictions.parquet"))["train"]
    labels = ["angry", "happy", "neutral", "sad"]
    assert predictions.column_names == ["corpus", "utt_id", "speaker", "predicted_label", "confidence",
                                        *[f"probability_{label}" for label in labels], "label"]
    metrics = json.loads((output / "metrics.json").read_text())
    assert len(predictions) == metrics["target"]["n"] == 16  # the unreadable file is skipped
    assert set(predictions["utt_id"]) == {f"utt{i:03d}" for i in range(16)}  # relative to the corpus folder
    assert set(predictions["speaker"]) == {f"spk{i:02d}" for i in range(4)}
    assert set(predictions["corpus"]) == {"my-target"} and set(predictions["label"]) == {None}
    probabilities = np.array([predictions[f"probability_{label}"] for label in labels]).T
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    assert [labels[i] for i in probabilities.argmax(1)] == predictions["predicted_label"]
    shares = {label: predictions["predicted_label"].count(label) / 16 for label in labels}
    assert shares == pytest.approx(metrics["target"]["predicted_distribution"])
    # The embedding plot colours these unlabelled points by prediction: the card says so.
    assert "coloured by the class the model predicts" in " ".join((output / "README.md").read_text().split())


@pytest.mark.slow
def test_evaluate_model_on_an_unlabelled_corpus(local_run):
    from datasets import load_dataset

    tmp_path, source, target, output = local_run
    evaluation = tmp_path / "evaluation"
    completed = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "evaluate_model.py"), "--model_name_or_path", str(output),
         "--corpus_name", "my-target", "my-source", "--corpus_dataset", str(target), str(source),
         "--on_bad_audio", "skip", "--max_duration_s", "0.8", "--output_dir", str(evaluation), "--use_cpu"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "my-target      unlabelled: predicted" in completed.stdout
    record = json.loads((evaluation / "eval_my-target+my-source.json").read_text())
    unlabelled, labelled = record["corpora"]["my-target"], record["corpora"]["my-source"]
    assert unlabelled["labelled"] is False and "uar" not in unlabelled and unlabelled["confusion_matrix"] is None
    assert sum(unlabelled["predicted_distribution"].values()) == pytest.approx(1.0)
    assert {"target_im", "target_snd"} <= set(unlabelled["selection"])  # the label-free criteria
    assert labelled["labelled"] is True and 0 <= labelled["uar"] <= 1
    # The same target utterances as the training run's own evaluation: the same predictions.
    trained = load_dataset("parquet", data_files=str(output / "predictions.parquet"))["train"]
    table = load_dataset("parquet", data_files=str(evaluation / record["files"]["predictions"]))["train"]
    rows = table.filter(lambda row: row["corpus"] == "my-target")
    assert dict(zip(rows["utt_id"], rows["predicted_label"], strict=True)) == \
        dict(zip(trained["utt_id"], trained["predicted_label"], strict=True))
    assert set(rows["label"]) == {None}
    source_rows = table.filter(lambda row: row["corpus"] == "my-source")
    assert len(source_rows) == labelled["n"] and None not in source_rows["label"]
    assert np.mean([p == t for p, t in zip(source_rows["predicted_label"], source_rows["label"], strict=True)]) \
        == pytest.approx(labelled["war"])
