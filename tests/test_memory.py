"""Giving back the pages of memory-mapped Arrow files (emodna_hf.data.memory): resident pages go, data stays."""

from __future__ import annotations

import mmap
import sys

import numpy as np
import pytest
from datasets import Dataset

from emodna_hf.data import memory

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/smaps and madvise: Linux")


def resident_kb(path_part: str) -> int:
    """This process's resident kB in mappings whose path contains `path_part` (/proc/self/smaps)."""
    total, current = 0, ""
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
                current = fields[5] if len(fields) > 5 else ""
            elif fields and fields[0] == "Rss:" and path_part in current:
                total += int(fields[1])
    return total


@pytest.fixture
def mapped_dataset(tmp_path):
    """A 2,000-row dataset of 1,000-float rows (8 MB) in an Arrow file, read back memory-mapped."""
    rng = np.random.default_rng(0)
    rows = Dataset.from_dict({"x": list(rng.standard_normal((2000, 1000)).astype(np.float32))})
    rows.map(lambda batch: batch, batched=True, cache_file_name=str(tmp_path / "rows.arrow"))
    return Dataset.from_file(str(tmp_path / "rows.arrow")).with_format("numpy"), tmp_path


@linux_only
def test_release_drops_resident_pages_and_keeps_the_data(mapped_dataset):
    dataset, folder = mapped_dataset
    before = dataset[:]["x"].sum(axis=1)  # reads every page
    assert resident_kb(str(folder)) > 4000
    assert memory.release_mapped_pages() >= 8_000_000
    assert resident_kb(str(folder)) < 200
    np.testing.assert_array_equal(dataset[:]["x"].sum(axis=1), before)  # read again, from the page cache
    assert resident_kb(str(folder)) > 4000


@linux_only
def test_release_leaves_other_mappings_alone(tmp_path):
    path = tmp_path / "other.bin"
    path.write_bytes(np.arange(2**20, dtype=np.float32).tobytes())  # 4 MB
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        total = sum(mapped[i] for i in range(0, len(mapped), 4096))
        resident = resident_kb("other.bin")
        assert resident > 3000
        memory.release_mapped_pages()  # only *.arrow mappings
        assert resident_kb("other.bin") == resident
        assert memory.release_mapped_pages(suffix="other.bin") >= 4 * 2**20
        assert resident_kb("other.bin") < 200
        assert sum(mapped[i] for i in range(0, len(mapped), 4096)) == total


def test_row_counter_releases_every_n_rows(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release_memory", lambda trim=True: calls.append(trim))
    counter = memory.RowCounter(every=512)
    for _ in range(1500):
        counter.count()
    assert len(calls) == 2
    counter.count(600)
    assert calls == [False] * 3  # between steps: mapped pages only, no heap trim


def test_training_rows_are_counted_in_the_dataset_that_reads_them(monkeypatch):
    """Rows read from memory-mapped files are counted (their pages given back every few hundred rows)."""
    from emodna_hf.trainer import UDATrainDataset

    monkeypatch.setattr(UDATrainDataset, "IN_MEMORY_BYTES", 0)  # small columns would be read into memory once
    source = Dataset.from_dict({"input_values": [[0.0] * 4] * 3, "labels": [0, 1, 0], "corpus_id": [0, 0, 0]})
    target = Dataset.from_dict({"input_values": [[0.0] * 4] * 2, "labels": [1, 1], "corpus_id": [1, 1]})
    dataset = UDATrainDataset(source, target)
    rows = [dataset[i] for i in range(len(dataset))]
    assert dataset.rows_read.rows == 5 and "labels" not in rows[-1]


@linux_only
@pytest.mark.parametrize("keep_pages", [False, True])
def test_training_and_evaluation_leave_no_corpus_pages_resident(tmp_path, monkeypatch, keep_pages):
    """A trainer over memory-mapped corpora: after training and evaluation, their pages are no longer resident."""
    import torch
    from factories import tiny_config, toy_corpus

    from emodna_hf import EmoDnaForAudioClassification
    from emodna_hf.trainer import EmoDnaTrainer, EmoDnaTrainingArguments

    if keep_pages:  # the control: without releasing, the pages read stay resident (the test can fail)
        monkeypatch.setenv("EMODNA_HF_KEEP_PAGES", "1")

    def on_disk(dataset: Dataset, name: str) -> Dataset:
        dataset.map(lambda batch: batch, batched=True, batch_size=16, cache_file_name=str(tmp_path / name))
        return Dataset.from_file(str(tmp_path / name))

    source = on_disk(toy_corpus(0, 160, 0.0, seed=1), "source.arrow")  # 0.4 s rows: 10 MB
    target = on_disk(toy_corpus(1, 160, 35.0, seed=2), "target.arrow")
    torch.manual_seed(0)
    args = EmoDnaTrainingArguments(output_dir=str(tmp_path / "out"), max_steps=12, per_device_train_batch_size=8,
                                   per_device_eval_batch_size=16, report_to="none", use_cpu=True, disable_tqdm=True,
                                   save_strategy="no")
    trainer = EmoDnaTrainer(model=EmoDnaForAudioClassification(tiny_config()), args=args, train_dataset=source,
                            target_dataset=target, eval_dataset={"target": target, "source": source})
    trainer.train()
    metrics = trainer.evaluate()
    assert np.isfinite(metrics["eval_target_uar"])
    resident = resident_kb(str(tmp_path))
    if keep_pages:
        assert resident > 6000  # both corpora (8.2 MB) were read whole by the evaluation
    else:
        assert resident < 1000
