"""The content-addressed feature store: each utterance's features are computed once per front end, whatever the
split, role, label scheme or direction that reads them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Array2D, Dataset
from factories import tiny_config, tone

from emodna_hf import EmoDnaForAudioClassification
from emodna_hf.data import cache_features
from emodna_hf.data.feature_store import STORE_COUNTS, FeatureStore, content_keys

REPO = Path(__file__).resolve().parents[1]


def _corpus(n: int, labels_offset: int = 0) -> Dataset:
    waves = [tone(0.3 + 0.05 * (i % 3), 150.0 + 20 * i, seed=i) for i in range(n)]
    return Dataset.from_dict({"input_values": waves, "labels": [(i + labels_offset) % 4 for i in range(n)],
                              "utt_id": [f"u{i}" for i in range(n)]})


def _counting_mean(calls: list[int]):
    def compute(waves):
        calls.append(len(waves))
        return [np.asarray([[float(np.mean(w)), float(len(w))]], np.float32) for w in waves]
    return compute


def test_store_computes_each_waveform_once_across_splits_and_label_schemes(tmp_path):
    corpus = _corpus(10)
    store = FeatureStore(tmp_path, "front-end", Array2D((None, 2), "float32"))
    calls: list[int] = []
    compute = _counting_mean(calls)
    split = corpus.select([7, 2, 5])  # a source split: an indices mapping, rows out of order
    first = store.features_for(split, compute, output_name="split")
    assert sum(calls) == 3
    # The whole corpus (the target role) under another label scheme: only the 7 new waveforms are computed.
    relabelled = _corpus(10, labels_offset=1)
    whole = store.features_for(relabelled, compute, output_name="whole", batch_size=4)
    assert sum(calls) == 10
    # A third reader of the same content computes nothing.
    again = store.features_for(corpus.select(range(10)), compute, output_name="again")
    assert sum(calls) == 10
    # Each row gets its own waveform's features, in the dataset's order; other columns are kept as they are.
    for dataset, cached in ((split, first), (relabelled, whole), (corpus, again)):
        assert cached["utt_id"] == dataset["utt_id"] and cached["labels"] == dataset["labels"]
        assert "input_values" not in cached.column_names
        for wave, features in zip(dataset["input_values"], cached["input_features"], strict=True):
            np.testing.assert_allclose(features, [[np.mean(np.float32(wave)), len(wave)]], rtol=1e-6)
    # One entry per content: the parts hold 10 keys.
    keys = [k for part in store.parts() for k in Dataset.from_file(str(part))["content_key"]]
    assert sorted(keys) == sorted(set(content_keys(corpus)))


def test_content_keys_follow_the_samples_not_the_rows():
    a = _corpus(3)
    b = Dataset.from_dict({"input_values": [np.asarray(w, np.float32) for w in a["input_values"]][::-1]})
    assert content_keys(a) == content_keys(b)[::-1]
    changed = Dataset.from_dict({"input_values": [np.asarray(a["input_values"][0], np.float32) * 1.0001]})
    assert content_keys(changed)[0] != content_keys(a)[0]


def test_another_front_end_setting_is_another_store(tmp_path):
    """A front end with other settings (here: MFCC count) must not read the first one's entries."""
    dataset = _corpus(4)
    counts = []
    for n_mfcc in (13, 13, 20):
        torch.manual_seed(0)
        model = EmoDnaForAudioClassification(tiny_config("tcn", n_mfcc=n_mfcc))
        before = STORE_COUNTS["computed"]
        cached = cache_features(dataset.select(range(4)), model, cache_dir=tmp_path)
        counts.append(STORE_COUNTS["computed"] - before)
        assert np.asarray(cached[0]["input_features"]).shape[-1] == n_mfcc
    assert counts == [4, 0, 4]


def test_store_features_give_the_waveform_logits(tmp_path):
    """Through the store (split first, then the whole corpus reusing it) the model's logits are unchanged."""
    from emodna_hf.data import UDADataCollator

    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config("opensmile")).eval()
    dataset = _corpus(6)
    cache_features(dataset.select([1, 4]), model, cache_dir=tmp_path)
    cached = cache_features(dataset, model, cache_dir=tmp_path)
    collate = UDADataCollator()
    with torch.no_grad():
        batch = collate([cached[i] for i in range(6)])
        from_store = model(input_features=batch["input_features"], feature_mask=batch["feature_mask"]).logits
        waves = collate([{"input_values": np.asarray(w, np.float32)} for w in dataset["input_values"]])
        from_waves = model(input_values=waves["input_values"], attention_mask=waves["attention_mask"]).logits
    torch.testing.assert_close(from_store, from_waves, rtol=1e-5, atol=1e-5)


# Counts openSMILE's extractions in the recipe's process and its forked workers (one byte per utterance).
_COUNTING_RUNNER = """
import os, runpy, sys
import opensmile
counter = sys.argv.pop(1)
original = opensmile.Smile.process_signal
def counted(self, *args, **kwargs):
    fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, b"x"); os.close(fd)
    return original(self, *args, **kwargs)
opensmile.Smile.process_signal = counted
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _audio_folder(folder: Path, preset: str) -> None:
    from emodna_hf.data import make_synthetic_corpus

    for i, row in enumerate(make_synthetic_corpus(preset, n_per_class_per_speaker=2, n_speakers=5)):
        label_folder = folder / row["emotion"]
        label_folder.mkdir(parents=True, exist_ok=True)
        sf.write(label_folder / f"{row['speaker']}_{i:03d}.wav", np.asarray(row["audio"]["array"]),
                 row["audio"]["sampling_rate"])


@pytest.mark.slow
def test_the_reverse_direction_extracts_almost_nothing(tmp_path):
    """The issue's check: with an empty cache, A → B and then B → A on two audio folders; the second run makes
    fewer than a tenth of the first run's openSMILE extractions."""
    folders = {"synth-a": tmp_path / "a", "synth-b": tmp_path / "b"}
    for name, folder in folders.items():
        _audio_folder(folder, name)
    runner = tmp_path / "count.py"
    runner.write_text(_COUNTING_RUNNER)
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home"), "PATH": "/usr/bin:/bin",
           "OMP_NUM_THREADS": "1", "EMODNA_HF_CACHE": str(tmp_path / "cache")}
    extractions, records = [], []
    for index, (source, target) in enumerate([("synth-a", "synth-b"), ("synth-b", "synth-a")]):
        counter, output = tmp_path / f"count{index}", tmp_path / f"out{index}"
        completed = subprocess.run(
            [sys.executable, str(runner), str(counter), str(REPO / "recipes" / "train.py"),
             "--source_name", source, "--source_dataset", str(folders[source]), "--target_name", target,
             "--target_dataset", str(folders[target]), "--max_duration_s", "1.0", "--max_steps", "2",
             "--per_device_train_batch_size", "4", "--output_dir", str(output), "--disable_tqdm", "true"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
        )
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        extractions.append(counter.stat().st_size if counter.exists() else 0)
        records.append(json.loads((output / "metrics.json").read_text())["train"]["features"])
    total = 2 * 4 * 2 * 5  # both corpora: 4 classes x 2 utterances x 5 speakers each
    # The first run extracts every utterance of both corpora (plus the held-out source, a part of A) once; the
    # model's inference on the final report may add a few more (it scores raw audio for the embedding plots).
    print("openSMILE extractions per run:", extractions)
    assert extractions[0] >= total
    assert extractions[1] < extractions[0] / 10, extractions
    assert records[0]["computed"] == total and records[1]["computed"] == 0
    assert records[1]["reused"] == total
