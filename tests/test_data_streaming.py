"""Corpora of any size: Arrow files on disk shard by shard (flat memory, reuse), and streamed corpora that train."""

import dataclasses
import gc

import numpy as np
import pytest
import soundfile as sf
import torch
from datasets import Dataset, Features, IterableDataset, List, Value
from factories import tiny_config, tone

from emodna_hf import EmoDnaForAudioClassification
from emodna_hf.data import CorpusSpec, build_uda_data, load_corpus
from emodna_hf.data.storage import map_to_disk, resolve_cache_dir
from emodna_hf.feature_extraction import create_feature_extractor
from emodna_hf.preparation import prepare_inputs
from emodna_hf.trainer import EmoDnaTrainer, EmoDnaTrainingArguments

EMOTIONS = ["angry", "happy", "neutral", "sad"]


def _rss_file_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssFile")) / 1024


def test_map_to_disk_writes_shards_reuses_them_and_releases_read_pages(tmp_path):
    n, samples = 1200, 16000  # 77 MB of float32 waveforms in an Arrow file
    source = Dataset.from_dict({"x": [np.full(samples, i, np.float32) for i in range(n)]},
                               features=Features({"x": List(Value("float32"))}))
    source.save_to_disk(tmp_path / "source")
    del source
    gc.collect()
    mapped = Dataset.load_from_disk(tmp_path / "source").with_format("numpy")

    def mean(batch):
        return {"m": [float(v.mean()) for v in batch["x"]]}

    before = _rss_file_mb()
    out = map_to_disk(mapped, mean, cache_dir=tmp_path / "cache", name="t", key="k1", desc="t", shard_rows=200,
                      batched=True, remove_columns=["x"]).with_format(None)
    grown = _rss_file_mb() - before
    assert out["m"][:] == [float(i) for i in range(n)]
    assert len(list((tmp_path / "cache").glob("t-k1-*-of-00006.arrow"))) == 6
    # A whole-corpus map leaves all 77 MB resident; shard by shard at most one 13 MB shard stays.
    assert grown < 40, grown
    whole = mapped.map(mean, batched=True, remove_columns=["x"], cache_file_name=str(tmp_path / "whole.arrow")).with_format(None)
    assert _rss_file_mb() - before > 60  # the measurement can see the difference
    assert whole["m"][:] == out["m"][:]

    def fail(batch):
        raise AssertionError("recomputed although cached")

    again = map_to_disk(mapped, fail, cache_dir=tmp_path / "cache", name="t", key="k1", desc="t", shard_rows=200,
                        batched=True, remove_columns=["x"]).with_format(None)
    assert again["m"][:] == out["m"][:]


def test_cache_dir_values(monkeypatch, tmp_path):
    monkeypatch.setenv("EMODNA_HF_CACHE", str(tmp_path))
    assert resolve_cache_dir("auto") == tmp_path and resolve_cache_dir(None) == tmp_path
    assert resolve_cache_dir("none") is None and resolve_cache_dir(tmp_path / "x") == tmp_path / "x"


def write_corpus(folder, n_speakers=4, per_class=2, shift=0.0, seed=0) -> str:
    """Tones whose pitch encodes the emotion, as wav files listed in a Parquet file (a local dataset that
    `load_dataset("parquet", ..., streaming=True)` streams, as it would a Hub dataset)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = {"audio": [], "emotion": [], "speaker": []}
    for s in range(n_speakers):
        for e, emotion in enumerate(EMOTIONS):
            for k in range(per_class):
                path = folder / f"s{s}-{emotion}-{k}.wav"
                sf.write(path, tone(0.4, frequency=140 + 70 * e + shift, seed=seed * 1000 + s * 10 + k), 16000)
                rows["audio"].append(str(path))
                rows["emotion"].append(emotion)
                rows["speaker"].append(f"spk{s}")
    Dataset.from_dict(rows).to_parquet(folder / "corpus.parquet")
    return str(folder / "corpus.parquet")


def spec(name, parquet, streaming=True, **kwargs) -> CorpusSpec:
    kwargs.setdefault("label_map_name", "synthetic")
    return CorpusSpec(name=name, source="parquet", load_kwargs={"data_files": parquet}, streaming=streaming,
                      **kwargs)


def test_a_streamed_corpus_gives_the_rows_of_the_map_style_one(tmp_path):
    parquet = write_corpus(tmp_path / "c")
    loaded, report = load_corpus(spec("c", parquet, streaming=False), max_duration_s=0.3)
    streamed, stream_report = load_corpus(spec("c", parquet), max_duration_s=0.3)
    assert isinstance(streamed, IterableDataset) and stream_report["streamed"] and stream_report["n"] is None
    assert streamed.column_names == loaded.column_names
    rows = {row["utt_id"]: row for row in streamed}
    assert len(rows) == len(loaded) == 32
    for row in loaded:
        other = rows[row["utt_id"]]
        assert (other["labels"], other["speaker"], other["corpus"]) == (row["labels"], row["speaker"], row["corpus"])
        np.testing.assert_array_equal(other["input_values"], row["input_values"])


@pytest.mark.parametrize("layout", ["manifest", "audiofolder", "parquet file"])
def test_a_local_corpus_streams_without_torchcodec_and_gives_the_map_style_rows(tmp_path, layout):
    """A CSV manifest path, an audiofolder and a .parquet path stream as they load map-style: files listed as the
    map-style path lists them, decoded with soundfile (no torchcodec, no ffmpeg), the same ids and rows."""
    parquet = write_corpus(tmp_path / "c")
    rows = Dataset.from_parquet(parquet)
    if layout == "manifest":
        source = tmp_path / "c" / "manifest.csv"
        source.write_text("file_name,emotion,speaker\n" + "".join(
            f"{path.rsplit('/', 1)[1]},{emotion},{speaker}\n"
            for path, emotion, speaker in zip(rows["audio"], rows["emotion"], rows["speaker"], strict=True)))
    elif layout == "audiofolder":
        source = tmp_path / "folder"
        for path, emotion in zip(rows["audio"], rows["emotion"], strict=True):
            (source / emotion).mkdir(parents=True, exist_ok=True)
            (source / emotion / path.rsplit("/", 1)[1]).write_bytes(open(path, "rb").read())
    else:
        source = parquet
    corpus = CorpusSpec("c", str(source), label_map_name="synthetic")
    loaded, _ = load_corpus(corpus, max_duration_s=0.3)
    streamed, report = load_corpus(dataclasses.replace(corpus, streaming=True), max_duration_s=0.3)
    assert isinstance(streamed, IterableDataset) and report["streamed"]
    by_id = {row["utt_id"]: row for row in streamed}
    assert len(by_id) == len(loaded) == 32
    for row in loaded:
        other = by_id[row["utt_id"]]
        assert (other["labels"], other["speaker"]) == (row["labels"], row["speaker"])
        np.testing.assert_array_equal(other["input_values"], row["input_values"])


def test_a_streamed_label_the_scheme_cannot_hold_is_dropped_and_an_unknown_one_raises(tmp_path):
    parquet = write_corpus(tmp_path / "c", n_speakers=1, per_class=1)
    streamed, _ = load_corpus(spec("c", parquet, label_map={"angry": "fear"}))
    assert sorted(row["labels"] for row in streamed) == [1, 2, 3]  # fear has no categorical4 class
    with pytest.raises(ValueError, match="unknown raw label"):
        list(load_corpus(spec("c", parquet, label_map_name="emodb"))[0])  # no "angry" there


def _trainer(tmp_path, data, **overrides) -> EmoDnaTrainer:
    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config(num_corpora=2, pseudo_label_warmup=0.0))
    inputs, cached = prepare_inputs(data, model, create_feature_extractor(model.config), batch_size=8)
    assert cached and isinstance(inputs.target_train, IterableDataset)
    args = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=4, learning_rate=3e-3,
                logging_steps=2, report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True,
                shuffle_buffer_size=8)
    args.update(overrides)
    return EmoDnaTrainer(model=model, args=EmoDnaTrainingArguments(**args), train_dataset=inputs.source_train,
                         target_dataset=inputs.target_train, eval_dataset={"target": inputs.target_eval})


@pytest.fixture
def streamed_data(tmp_path):
    source = write_corpus(tmp_path / "source", seed=1)
    target = write_corpus(tmp_path / "target", shift=35.0, seed=2)
    return build_uda_data([spec("synth-s", source)], spec("synth-t", target), max_duration_s=0.4,
                          source_eval_fraction=0.25)


def test_a_streamed_source_and_target_train_in_mixed_batches_and_evaluate(tmp_path, streamed_data):
    assert streamed_data.target_labelled
    trainer = _trainer(tmp_path, streamed_data)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["corpus_ids"].tolist() == [0] * 4 + [1] * 4
    assert batch["labels"][:4].ge(0).all() and batch["labels"][4:].eq(-100).all()  # no target label in training
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    assert trainer.state.global_step == 4
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert any("loss_class_alignment" in row for row in trainer.state.log_history)
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_target_uar"] <= 1.0


def test_streamed_training_needs_max_steps(tmp_path, streamed_data):
    with pytest.raises(ValueError, match="max_steps"):
        _trainer(tmp_path, streamed_data, max_steps=-1, num_train_epochs=1)


@pytest.mark.slow
def test_streamed_target_labels_are_never_read(tmp_path):
    source = write_corpus(tmp_path / "source", seed=1)
    target = write_corpus(tmp_path / "target", shift=35.0, seed=2)
    weights = []
    # The same target with its labels, with wrong labels, and without labels: training must not tell them apart.
    for label_map in (None, {"angry": "happy", "happy": "sad", "sad": "neutral", "neutral": "angry"}, "none"):
        target_spec = (spec("synth-t", target, label_column="none") if label_map == "none"
                       else spec("synth-t", target, label_map=label_map))
        data = build_uda_data([spec("synth-s", source)], target_spec, max_duration_s=0.4, source_eval_fraction=0.0)
        trainer = _trainer(tmp_path, data)
        trainer.train()
        weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
    for other in weights[1:]:
        for name, tensor in weights[0].items():
            torch.testing.assert_close(other[name], tensor, rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("shards", [4, 3])  # 4: whole shards per process; 3: every other row of the stream
def test_each_training_process_reads_its_own_disjoint_part_of_each_corpus(shards):
    from emodna_hf.data.stream_batches import for_process

    rows = Dataset.from_dict({"utt_id": [f"u{i}" for i in range(12)]})
    for side in (rows.to_iterable_dataset(num_shards=shards), rows):
        parts = [[row["utt_id"] for row in for_process(side, rank, 2)] for rank in range(2)]
        assert not set(parts[0]) & set(parts[1])
        assert sorted(parts[0] + parts[1]) == sorted(rows["utt_id"][:]) and len(parts[0]) == len(parts[1]) == 6
    assert for_process(rows, 0, 1) is rows
