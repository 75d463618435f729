"""Mixed source/target training batches when a corpus is streamed (`IterableDataset`): the streaming counterpart of
`trainer.SourceTargetBatchSampler`, which needs random access and a length."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from datasets import Dataset, IterableDataset
from datasets.distributed import split_dataset_by_node

from .streaming import is_streamed


class SourceTargetStream(torch.utils.data.IterableDataset):
    """Rows in batch order, without end: `rows_per_corpus` source rows, then as many target rows, and again.

    A `DataLoader` with `batch_size = 2 * rows_per_corpus` turns them into the same mixed batches as the sampler.
    Each side is cycled: when a pass over it ends, it is reshuffled and read again, so the smaller corpus repeats
    rather than ends training (`max_steps` decides when training ends). Streams are shuffled by
    `IterableDataset.shuffle`: their shards' order and a buffer of `shuffle_buffer_size` rows; a map-style side is
    shuffled whole. With several dataloader workers each worker reads its own part of both sides (a stream's shards
    are divided between workers: it needs at least as many shards as workers, see `IterableDataset.reshard`) and
    yields whole batches.
    """

    def __init__(self, source: Dataset | IterableDataset, target: Dataset | IterableDataset, rows_per_corpus: int,
                 seed: int = 0, shuffle_buffer_size: int = 1000):
        if rows_per_corpus < 1:
            raise ValueError(f"rows_per_corpus must be positive, got {rows_per_corpus}")
        self.source, self.target = source, target
        self.rows_per_corpus, self.seed, self.shuffle_buffer_size = rows_per_corpus, seed, shuffle_buffer_size

    def min_shards(self) -> int | None:
        """The fewest shards of a streamed side (at most this many dataloader workers get data), None if none."""
        shards = [side.num_shards for side in (self.source, self.target) if is_streamed(side)]
        return min(shards) if shards else None

    def _passes(self, side: Dataset | IterableDataset, which: int) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        for epoch in range(2**62):
            seed = int(np.random.default_rng([self.seed, which, epoch]).integers(2**31))
            if is_streamed(side):  # datasets divides a stream's shards between dataloader workers itself
                rows = side.shuffle(seed=seed, buffer_size=self.shuffle_buffer_size)
            else:
                rows = side.shuffle(seed=seed)
                if info is not None and info.num_workers > 1:
                    rows = rows.shard(num_shards=info.num_workers, index=info.id)
            count = 0
            for row in rows:
                count += 1
                yield row
            if not count:
                role = "source" if which == 0 else "target"
                raise ValueError(f"The {role} corpus yielded no rows" + (
                    f" in dataloader worker {info.id}: use at most as many workers as it has shards" if info else ""))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        source, target = self._passes(self.source, 0), self._passes(self.target, 1)
        while True:
            for _ in range(self.rows_per_corpus):
                yield next(source)
            for _ in range(self.rows_per_corpus):
                yield next(target)


def for_process(side: Dataset | IterableDataset, rank: int, world_size: int) -> Dataset | IterableDataset:
    """This process's part of one side when training runs in `world_size` processes (`accelerate launch`).

    A stream is split by `datasets.distributed.split_dataset_by_node`: whole shards when `world_size` divides their
    number, else every `world_size`-th row (each process then reads the whole stream and keeps its rows). A
    map-style side keeps every `world_size`-th row. The parts are disjoint; each process builds its own mixed batches.
    """
    if world_size <= 1:
        return side
    if is_streamed(side):
        return split_dataset_by_node(side, rank=rank, world_size=world_size)
    return side.shard(num_shards=world_size, index=rank)
