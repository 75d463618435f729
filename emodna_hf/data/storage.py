"""Arrow files on disk for every pass over audio: memory that does not grow with the corpus.

Every pass that reads or writes waveforms (decoding, waveform normalisation, feature caching) is a `Dataset.map`
whose output is an Arrow file in a cache folder, named by a fingerprint of its input and settings, so that a
second run with the same corpora and settings reads the files instead of recomputing them. Datasets read from
such files are memory-mapped: the operating system, not the process, holds their bytes.

One subtlety decides whether memory stays flat: pages of a memory-mapped file that a pass has read count in the
process's resident set (RSS) for as long as the file stays mapped, so one `map` over a whole decoded corpus
leaves the whole corpus resident. `map_to_disk` therefore processes a dataset in shards of `shard_rows` rows,
each read through its own, fresh memory map (a pickle round trip, which is also how `datasets` hands shards to
`num_proc` workers) that is released when the shard is done: at most one shard's pages are resident at a time.
Reading a column of a whole corpus (`read_column`) does the same, shard by shard.

Opening a shard's output reads every record batch's header through the long-lived map of the result, and
training and evaluation read rows through it: those pages are given back by `memory.release_memory` (after every
shard here; every few hundred rows in training and evaluation), which also returns freed heap to the system.
"""

from __future__ import annotations

import gc
import hashlib
import math
import os
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from datasets import Dataset, concatenate_datasets
from datasets import config as datasets_config
from datasets.table import InMemoryTable

from .memory import release_memory

# `cache_dir` values that keep every pass in memory (the behaviour before the disk cache; small corpora, tests).
IN_MEMORY = ("none", "memory")
# Rows per shard: bounds what one pass keeps resident (1000 utterances of 8 s at 16 kHz are 0.5 GB of float32).
SHARD_ROWS = 1000
# Bumped when a pass's output changes for the same inputs and settings (invalidates every cached file).
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """`$EMODNA_HF_CACHE`, else `emodna_hf/` in the 🤗 datasets cache (`$HF_DATASETS_CACHE`)."""
    return Path(os.environ.get("EMODNA_HF_CACHE") or Path(datasets_config.HF_DATASETS_CACHE) / "emodna_hf")


def resolve_cache_dir(cache_dir: str | os.PathLike | None) -> Path | None:
    """The folder for Arrow cache files: `None` or `"auto"` → `default_cache_dir()`; `"none"` → in memory."""
    if cache_dir is None or str(cache_dir) == "auto":
        return default_cache_dir()
    if str(cache_dir).lower() in IN_MEMORY:
        return None
    return Path(cache_dir)


def fingerprint(*parts: Any) -> str:
    """A short stable hash of `parts` (their `repr`) and the cache format."""
    digest = hashlib.sha1(repr((CACHE_FORMAT, *parts)).encode())
    return digest.hexdigest()[:16]


def cached_generation(fingerprint: str, cache_dir: Path | None, generate: Callable[[], Dataset]) -> Dataset:
    """A generated corpus (`generate()`) saved in `cache_dir/generated-<fingerprint>/` and read from there next time.

    `fingerprint` must name everything the samples depend on (the generator's code, preset, seed and sizes, the
    versions of external programs): the generators compute it before generating. The dataset is saved to a
    temporary folder first, then renamed, so a concurrent process never reads half a corpus; the loaded dataset
    keeps `fingerprint` (`Dataset.save_to_disk` stores it), so the caches keyed on it stay valid.
    """
    if cache_dir is None:
        return generate()
    path = cache_dir / f"generated-{fingerprint}"
    if not (path / "state.json").is_file():
        dataset = generate()
        cache_dir.mkdir(parents=True, exist_ok=True)
        partial = cache_dir / f".generated-{fingerprint}-{os.getpid()}"
        dataset.save_to_disk(str(partial))
        try:
            os.rename(partial, path)
        except OSError:  # another process saved it first: keep theirs
            shutil.rmtree(partial, ignore_errors=True)
    dataset = Dataset.load_from_disk(str(path))
    # `load_from_disk` gives the reopened files a fingerprint of their own: restore the generator's, so that what is
    # keyed on it (decoded audio) is the same with and without a cache folder.
    dataset._fingerprint = fingerprint
    return dataset


def _rows(dataset: Dataset, start: int, stop: int) -> Dataset:
    """Rows `start..stop` of `dataset` through a fresh memory map (`_reopened`) of only the files that hold them.

    A dataset with an indices mapping (a `select` of the rows of a split, say) keeps the whole table under its
    indices, so a contiguous `select` of it still pickles, reopens and reads the headers of every file of the
    corpus: per shard, work and memory in proportion to the corpus (~30 MB at 25k rows). The shard's table is
    sliced to the span of rows its indices reach instead (the whole table when they are shuffled).
    """
    shard = dataset.select(range(start, stop))
    if shard._indices is None or not len(shard):
        return _reopened(shard)
    rows = shard._indices.column(0).to_numpy().astype(np.int64)
    low, high = int(rows.min()), int(rows.max()) + 1
    spanned = Dataset(dataset.data.slice(low, high - low), info=dataset.info.copy(), split=dataset.split,
                      indices_table=InMemoryTable(pa.table({"indices": pa.array(rows - low, pa.uint64())})),
                      fingerprint=shard._fingerprint)
    form = dataset.format
    spanned = spanned.with_format(form["type"], columns=form["columns"],
                                  output_all_columns=form["output_all_columns"], **form["format_kwargs"])
    return _reopened(spanned)


def _reopened(dataset: Dataset) -> Dataset:
    """The same rows through a fresh memory map of the same files: its resident pages go when it is dropped.

    A memory-mapped `Dataset` pickles as its file names and the operations replayed on them (no data), so the
    round trip costs a file open. In-memory tables would be copied: those are returned as they are.
    """
    if not dataset.cache_files:
        return dataset
    return pickle.loads(pickle.dumps(dataset))


def map_to_disk(
    dataset: Dataset,
    function: Callable,
    *,
    cache_dir: Path | None,
    name: str,
    key: str,
    desc: str,
    shard_rows: int = SHARD_ROWS,
    num_proc: int | None = None,
    **map_kwargs: Any,
) -> Dataset:
    """`dataset.map(function, **map_kwargs)` written to `cache_dir/<name>-<key>-<shard>-of-<shards>.arrow`.

    Args:
        cache_dir: the folder (see `resolve_cache_dir`); `None` maps in memory, in one pass, as `Dataset.map` does
            for an in-memory dataset.
        name: a readable prefix of the file names (corpus and pass).
        key: the fingerprint of the input and every setting that changes the output: equal keys reuse the files
            (in memory, the result's fingerprint; "" lets `datasets` hash the function and its arguments).
        shard_rows: rows per shard (see the module docstring); each shard is one file.
        num_proc: worker processes per shard (`Dataset.map(num_proc=...)`); the shard is split between them.
        map_kwargs: the other `Dataset.map` arguments (`batched`, `batch_size`, `features`, `fn_kwargs`, ...).
            With `with_indices=True` the function receives row indices of the whole `dataset`, not of a shard.

    Returns:
        The mapped dataset, memory-mapped from its files (a concatenation of the shards' datasets).
    """
    if cache_dir is None or not len(dataset):
        return dataset.map(function, num_proc=_workers(num_proc, len(dataset)), desc=desc,
                           new_fingerprint=key or None, **map_kwargs)
    cache_dir.mkdir(parents=True, exist_ok=True)
    shards = max(1, math.ceil(len(dataset) / shard_rows))
    parts = []
    for index in range(shards):
        start = index * shard_rows
        shard = _rows(dataset, start, min(len(dataset), start + shard_rows))
        parts.append(
            shard.map(
                _Offset(function, start) if map_kwargs.get("with_indices") else function,
                cache_file_name=str(cache_dir / f"{name}-{key}-{index:05d}-of-{shards:05d}.arrow"),
                new_fingerprint=f"{key}-{index}-{shards}",
                num_proc=_workers(num_proc, len(shard)),
                desc=desc if shards == 1 else f"{desc} [{index + 1}/{shards}]",
                **map_kwargs,
            )
        )
        del shard
        if shards > 1:  # a one-shard pass maps at most `shard_rows` rows: not worth a full collection (~0.5 s)
            gc.collect()  # a dataset can sit in a reference cycle: unmap its pages now, not at some later one
        release_memory()  # the result's record-batch headers, read when it was opened; the pass's freed heap
    return parts[0] if shards == 1 else concatenate_datasets(parts)


class _Offset:
    """`function` called with indices of the whole dataset: a shard's indices start at 0, so `start` is added."""

    def __init__(self, function: Callable, start: int):
        self.function, self.start = function, start

    def __call__(self, batch: Any, indices: Any, *args: Any, **kwargs: Any) -> Any:
        shifted = [i + self.start for i in indices] if isinstance(indices, list) else indices + self.start
        return self.function(batch, shifted, *args, **kwargs)


def _workers(num_proc: int | None, rows: int) -> int | None:
    """`num_proc` as `Dataset.map` accepts it: no more workers than rows, none for one."""
    if not num_proc or num_proc <= 1 or rows <= 1:
        return None
    return min(num_proc, rows)


def read_column(dataset: Dataset, name: str, shard_rows: int = SHARD_ROWS) -> list:
    """One column as a list in the dataset's row order, read shard by shard through fresh memory maps.

    Reading a small column still faults in the pages around it in every record batch (a column of ids touched
    ~100 MB of a 50k-row decoded corpus): shard by shard, those pages go with each shard's map.
    """
    dataset = dataset.with_format(None)
    if not dataset.cache_files or len(dataset) <= shard_rows:
        return dataset[name][:]
    values: list = []
    for start in range(0, len(dataset), shard_rows):
        values += _rows(dataset, start, min(len(dataset), start + shard_rows))[name][:]
    return values
