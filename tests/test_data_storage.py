"""Readers of memory-mapped corpora shard by shard: `read_column` and the per-speaker statistics."""

import gc

import numpy as np
from datasets import Dataset, Features, List, Value

from emodna_hf.data.labels import column_values
from emodna_hf.data.storage import read_column


def _rss_file_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssFile")) / 1024


def _saved(tmp_path, n=1200, samples=16000) -> Dataset:
    """77 MB of float32 rows in an Arrow file, memory-mapped."""
    rows = Dataset.from_dict({"x": [np.full(samples, i, np.float32) for i in range(n)], "id": [f"u{i}" for i in range(n)]},
                             features=Features({"x": List(Value("float32")), "id": Value("string")}))
    rows.save_to_disk(tmp_path / "rows")
    del rows
    gc.collect()
    return Dataset.load_from_disk(tmp_path / "rows").with_format("numpy")


def test_read_column_follows_the_row_order_and_releases_its_pages(tmp_path):
    dataset = _saved(tmp_path, n=1000, samples=4000)
    shuffled = dataset.shuffle(seed=0).select(range(900))
    order = shuffled._indices.column(0).to_pylist()  # the shuffled row numbers, without reading the file
    expected = [f"u{i}" for i in order]
    before = _rss_file_mb()
    assert read_column(shuffled, "id", shard_rows=100) == expected
    assert column_values(shuffled, "id") == expected
    assert _rss_file_mb() - before < 8


def test_per_speaker_statistics_merged_across_shards_equal_those_of_all_frames(tmp_path, monkeypatch):
    from datasets import Array2D

    from emodna_hf.data import speakers as speaker_module

    monkeypatch.setattr(speaker_module, "SHARD_ROWS", 3)  # statistics over 4 shards of 11 rows, speakers split across them
    rng = np.random.default_rng(0)
    rows = [rng.normal(loc, scale, size=(int(rng.integers(1, 5)), 3)).astype(np.float32)
            for loc, scale in [(5, 1)] * 6 + [(-3, 0.1)] * 5]
    speakers = ["a:1", "a:2"] * 5 + ["a:1"]
    dataset = Dataset.from_dict({"input_features": rows, "speaker": speakers, "labels": [0] * 11})
    dataset = dataset.cast_column("input_features", Array2D(shape=(None, 3), dtype="float32"))
    dataset.save_to_disk(tmp_path / "rows")
    mapped = Dataset.load_from_disk(tmp_path / "rows")
    out = speaker_module.standardize_per_speaker(mapped, cache_dir=tmp_path / "cache")
    assert out.cache_files and len(list((tmp_path / "cache").glob("per-speaker-*.arrow"))) == 1  # written to disk
    assert out["speaker"] == speakers and out["labels"] == [0] * 11
    for speaker in ("a:1", "a:2"):
        index = [i for i, s in enumerate(speakers) if s == speaker]
        pooled = np.concatenate([rows[i] for i in index]).astype(np.float64)
        mean, std = pooled.mean(0), pooled.std(0) + 1e-5
        for i in index:
            np.testing.assert_allclose(np.asarray(out[i]["input_features"]), (rows[i] - mean) / std, rtol=1e-5,
                                       atol=1e-5)


def test_a_shard_of_a_split_opens_only_the_files_its_rows_live_in(tmp_path):
    """A split (`select` of sorted rows) of a corpus in many files: each shard maps the files of its rows only,
    with the same rows, columns and format; shuffled indices fall back to the whole table."""
    from datasets import concatenate_datasets

    from emodna_hf.data.storage import _rows, map_to_disk

    parts = []
    for part in range(5):  # five files of 100 rows: the shards of a decoded corpus
        rows = Dataset.from_dict({"x": [np.full(8, 100 * part + i, np.float32) for i in range(100)],
                                  "id": [f"u{100 * part + i}" for i in range(100)]})
        rows.map(lambda batch: batch, batched=True, cache_file_name=str(tmp_path / f"part{part}.arrow"))
        parts.append(Dataset.from_file(str(tmp_path / f"part{part}.arrow")))
    corpus = concatenate_datasets(parts).add_column("corpus_id", [1] * 500)  # an in-memory column, as in assembly
    kept = [i for i in range(500) if i % 7]  # a split: sorted rows, every file
    split = corpus.select(kept).with_format("numpy", columns=["x", "id"])
    shard = _rows(split, 100, 200)
    assert len(shard.cache_files) <= 2 < len(split.cache_files)
    assert shard.format == split.format
    assert list(shard["id"]) == [f"u{i}" for i in kept[100:200]]
    np.testing.assert_array_equal(np.asarray(shard["x"][:])[:, 0], np.array(kept[100:200], np.float32))
    shuffled = corpus.shuffle(seed=0)
    assert _rows(shuffled, 0, 10)["id"] == shuffled["id"][:10]

    out = map_to_disk(split, lambda batch: {"y": [float(x[0]) + 0.5 for x in batch["x"]]}, cache_dir=tmp_path / "c",
                      name="t", key="k", desc="t", shard_rows=64, batched=True).with_format(None)
    assert list(out["y"][:]) == [i + 0.5 for i in kept] and list(out["corpus_id"][:]) == [1] * len(kept)
