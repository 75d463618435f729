"""recipes/train.py with streamed corpora (a local Parquet dataset loaded with `streaming=True` stands in for the Hub):
trains for max_steps, evaluates the head of each stream, writes metrics.json and a card that say so."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_data_streaming import write_corpus

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_recipe_trains_on_streamed_corpora_and_evaluates_the_head_of_each_stream(tmp_path):
    source = write_corpus(tmp_path / "source", seed=1)  # 32 utterances each
    target = write_corpus(tmp_path / "target", shift=35.0, seed=2)
    output, cache = tmp_path / "out", tmp_path / "cache"
    command = [
        sys.executable, str(REPO / "recipes" / "train.py"), "--output_dir", str(output), "--audio_cache_dir", str(cache),
        "--source_name", "synth-s", "--source_dataset", "parquet", "--source_label_map_name", "synthetic",
        "--source_load_kwargs", json.dumps({"synth-s": {"data_files": source}}), "--source_streaming", "true",
        "--target_name", "synth-t", "--target_dataset", "parquet", "--target_label_map_name", "synthetic",
        "--target_load_kwargs", json.dumps({"data_files": target}), "--target_streaming", "true",
        "--max_eval_samples", "12", "--max_steps", "3", "--eval_strategy", "steps", "--eval_steps", "2",
        "--per_device_train_batch_size", "4", "--max_duration_s", "0.4", "--max_projection_samples", "40",
        "--config_overrides", "tcn_hidden_size=16,tcn_num_blocks=2", "--disable_tqdm", "true",
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), OMP_NUM_THREADS="1")
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    assert "a stream of source and a stream of target utterances" in completed.stdout + completed.stderr

    record = json.loads((output / "metrics.json").read_text())
    assert record["train"]["steps"] == 3
    assert record["scenario"]["streamed"] == {"target": True, "source": True}
    assert record["target"]["n"] == 12 and 0.0 <= record["target"]["uar"] <= 1.0  # the first 12 of 32
    assert "evaluated on its first 12 utterances" in record["scenario"]["protocol"]
    assert 0 < record["source"]["n"] <= 12
    assert record["data"]["synth-t"]["source_kind"] == "stream" and record["data"]["synth-t"]["n"] is None
    evaluations = [row for row in json.loads((output / "trainer_state.json").read_text())["log_history"]
                   if "eval_target_uar" in row]
    assert [row["step"] for row in evaluations] == [2, 3]  # evaluated during training too
    card = (output / "README.md").read_text()
    assert "the target corpus was streamed" in card and "its first 12 utterances" in card
    # The evaluated heads lived in a temporary folder of the cache, gone with the process; streams cache nothing.
    assert not list(cache.iterdir())


@pytest.mark.slow
def test_a_streamed_local_audiofolder_target_trains_and_evaluates_without_torchcodec(tmp_path):
    """An unlabelled local folder of wav files, streamed: decoded by soundfile from training to the final
    evaluation (`datasets`' own audiofolder stream needed torchcodec there)."""
    import soundfile as sf

    from emodna_hf.data import make_synthetic_corpus

    target = tmp_path / "my-target"
    target.mkdir()
    for i, row in enumerate(make_synthetic_corpus("synth-b", n_per_class_per_speaker=1, n_speakers=3)):
        sf.write(target / f"utt{i:03d}.wav", row["audio"]["array"], row["audio"]["sampling_rate"])
    output = tmp_path / "out"
    command = [
        sys.executable, str(REPO / "recipes" / "train.py"), "--output_dir", str(output),
        "--audio_cache_dir", str(tmp_path / "cache"), "--target_name", "mine", "--target_dataset", str(target),
        "--target_streaming", "true", "--max_eval_samples", "6", "--max_steps", "2",
        "--source_load_kwargs", '{"synth-a": {"n_per_class_per_speaker": 1, "n_speakers": 6}}',
        "--per_device_train_batch_size", "4", "--max_duration_s", "0.4", "--max_projection_samples", "20",
        "--backbone_type", "tcn", "--corpus_statistics", "batch", "--config_overrides", "tcn_hidden_size=16,tcn_num_blocks=2",
        "--disable_tqdm", "true",
    ]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), OMP_NUM_THREADS="1")
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    record = json.loads((output / "metrics.json").read_text())
    assert record["scenario"]["streamed"]["target"] and record["target"]["n"] == 6
    assert record["target"]["labelled"] is False
