"""Features computed once per utterance: a content-addressed store shared by every split, role and direction.

A front end's features (openSMILE functionals, MFCC frames, a frozen SSL encoder's hidden states) depend on the
waveform it is given and on the front end's settings and weights, and on nothing else: not on the corpus's
labels or label scheme, not on whether the corpus is a source (split into train and held-out) or a target (all
of it), not on which direction of a benchmark it is used in. The store is keyed accordingly:

* a **front-end key** names the store's folder (`store-<key>/` in the cache folder): the front end's config
  fields, weights and library versions (`features._front_end_key`);
* a **content key** names each entry: the SHA-1 of the utterance's waveform as the front end receives it
  (float32 samples after decoding, resampling, cropping and waveform normalisation), so an identical utterance
  is one entry whichever corpus, split or role it comes from.

`FeatureStore.features_for(dataset)` hashes the dataset's waveforms (shard by shard), computes the features of
the waveforms the store lacks and appends them as new part files (`part-<key>-*.arrow`, written shard by shard
by `storage.map_to_disk`, so memory stays flat in corpus size), then gathers every row's features from the
store into the dataset's own layout (a copy written to the cache folder, named by the dataset's fingerprint:
features are small next to the work of computing them). Part files are only ever added, under names unique to
their content, and `datasets` writes each through a temporary file: concurrent processes can share a store
(at worst both compute the same entry, and the first one read wins).

`STORE_COUNTS` counts, in this process, the rows whose features were computed and those read from the store
(`experiment.run_experiment` records them in metrics.json; `benchmarks/feature_cache.py` measures them).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, Features, Value, concatenate_datasets

from .memory import release_memory
from .storage import SHARD_ROWS, _rows, map_to_disk

logger = logging.getLogger(__name__)

# Rows whose features were computed ("computed") or read from a store ("reused") by this process.
STORE_COUNTS: Counter[str] = Counter()
KEY_COLUMN = "content_key"


def content_keys(dataset: Dataset, column: str = "input_values", shard_rows: int = SHARD_ROWS) -> list[str]:
    """The SHA-1 (hex) of each row's waveform as float32 bytes, read shard by shard through fresh memory maps."""
    keys: list[str] = []
    for start in range(0, len(dataset), shard_rows):
        shard = _rows(dataset.with_format("numpy", columns=[column]), start, min(len(dataset), start + shard_rows))
        for wave in shard[:][column]:
            keys.append(hashlib.sha1(np.ascontiguousarray(wave, dtype=np.float32).tobytes()).hexdigest())
        del shard
    return keys


class FeatureStore:
    """The features of one front end, by utterance content, in `root/store-<front_end_key>/`.

    Args:
        root: the cache folder (`storage.resolve_cache_dir`).
        front_end_key: what determines the features besides the waveform (see the module docstring).
        feature: the `datasets` feature type of one row's features (e.g. `Array2D((None, 88), "float32")`).
    """

    def __init__(self, root: str | os.PathLike, front_end_key: str, feature: Any):
        self.folder = Path(root) / f"store-{front_end_key}"
        self.front_end_key = front_end_key
        self.feature = feature

    def parts(self) -> list[Path]:
        """The store's finished part files (temporary files of a write in progress have no `.arrow` name)."""
        return sorted(self.folder.glob("part-*.arrow")) if self.folder.is_dir() else []

    def _open(self) -> tuple[Dataset | None, dict[str, int]]:
        """The store as one memory-mapped dataset and the row of each content key (first occurrence wins)."""
        parts = [Dataset.from_file(str(path)) for path in self.parts()]
        if not parts:
            return None, {}
        store = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
        position: dict[str, int] = {}
        for row, key in enumerate(store.with_format(None)[KEY_COLUMN]):
            position.setdefault(key, row)
        release_memory()  # the key column's pages and every part's record-batch headers
        return store, position

    def features_for(
        self,
        dataset: Dataset,
        compute: Callable[[list[np.ndarray]], list[np.ndarray]],
        *,
        output_name: str,
        keep_input_values: bool = False,
        batch_size: int = 16,
        num_proc: int | None = None,
        desc: str = "Computing features",
    ) -> Dataset:
        """`dataset` with an `input_features` column: each row's features, computed once per waveform content.

        Args:
            dataset: rows with an `input_values` waveform column (and any others, kept as they are).
            compute: waveforms (float32 arrays) → their features (arrays of the store's feature type).
            output_name: a readable prefix of the gathered output's files.
            keep_input_values: keep the waveform column in the output.
            batch_size: rows per `compute` call.
            num_proc: worker processes for computing missing features (`Dataset.map(num_proc=...)`).
        """
        keys = content_keys(dataset)
        store, position = self._open()
        missing = sorted({key: row for row, key in enumerate(keys) if key not in position}.items())
        if missing:
            rows = [row for _, row in missing]
            todo = dataset.select(rows).select_columns(["input_values"])
            todo = todo.add_column(KEY_COLUMN, [key for key, _ in missing])
            # Unique to this content: two processes adding the same rows write the same names, through temporary
            # files, so neither reads the other's half-written file.
            part_key = hashlib.sha1("".join(key for key, _ in missing).encode()).hexdigest()[:16]
            features = Features({KEY_COLUMN: Value("string"), "input_features": self.feature})
            self.folder.mkdir(parents=True, exist_ok=True)
            map_to_disk(
                todo.with_format("numpy", columns=["input_values"], output_all_columns=True),
                lambda batch: {"input_features": compute(list(batch["input_values"])),
                               KEY_COLUMN: list(batch[KEY_COLUMN])},
                cache_dir=self.folder, name="part", key=part_key, desc=desc,
                num_proc=num_proc, batched=True, batch_size=batch_size,
                remove_columns=["input_values"], features=features,
            )
            store, position = self._open()
        STORE_COUNTS["computed"] += len(missing)
        STORE_COUNTS["reused"] += len(keys) - len(missing)
        logger.info("%s: features of %d utterances computed, %d read from the store (%s).", output_name,
                    len(missing), len(keys) - len(missing), self.folder)
        return self._gather(dataset, store, [position[key] for key in keys], output_name, keep_input_values)

    def _gather(self, dataset: Dataset, store: Dataset, rows: list[int], output_name: str,
                keep_input_values: bool) -> Dataset:
        """Each row of `dataset` with the store's features at `rows` (in order), written next to the store."""
        features = dataset.features.copy()
        features["input_features"] = self.feature
        remove = [] if keep_input_values else ["input_values"]
        for name in remove:
            del features[name]
        source = dataset if keep_input_values else dataset.remove_columns(remove)
        key = hashlib.sha1(f"{dataset._fingerprint}-{self.front_end_key}-{keep_input_values}".encode())
        key.update(np.asarray(rows, np.int64).tobytes())  # the store's layout (a part added later moves rows)
        return map_to_disk(
            source, _Gather(store, rows), cache_dir=self.folder.parent, name=f"{output_name}-features",
            key=key.hexdigest()[:16], desc="Reading features from the store", batched=True, batch_size=256,
            with_indices=True, features=features,
        )


class _Gather:
    """The `Dataset.map` function of `FeatureStore._gather` (a class: picklable, with the store's rows)."""

    def __init__(self, store: Dataset, rows: list[int]):
        self.store = store.select_columns(["input_features"]).with_format("numpy")
        self.rows = rows

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        values = self.store[[self.rows[i] for i in indices]]["input_features"]
        return {"input_features": list(values)}
