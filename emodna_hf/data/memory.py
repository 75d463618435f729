"""Giving back memory that reading a memory-mapped corpus leaves resident: what keeps peak RSS flat in corpus size.

Two things grow a process's resident set (RSS) while it reads Arrow files, although it holds no more data:

- **Pages of memory-mapped files.** A page of a mapped file that the process has touched counts in its RSS for
  as long as the file stays mapped, and the kernel maps the pages *around* each touched one too (fault-around,
  64 kB): opening a decoded corpus of 50k utterances written in 32-row record batches touches every batch's header
  and leaves ~100 MB resident; an epoch of training over cached tcn features leaves every row's pages resident.
  `release_mapped_pages` tells the kernel (`madvise(MADV_DONTNEED)`) that the process no longer needs the resident
  pages of its read-only `.arrow` mappings. The mappings stay valid: a later read faults the page in again, from
  the page cache (no disk read while the kernel keeps it). Only read-only mappings are touched, whose pages cannot
  hold anything the file does not (a private mapping that was never writable has no modified pages).
- **Freed heap.** glibc keeps freed memory (per-shard `Dataset.map` bookkeeping, worker pools' threads' arenas)
  resident for reuse; `trim_heap` (`malloc_trim(0)`) returns whole free pages to the system.

`release_memory` does both. It is called after every shard of a pass (`storage.map_to_disk`) and after each
evaluation. The mapped pages alone are released every `RELEASE_EVERY_ROWS` rows that training reads (in whichever
process reads them, dataloader workers included) and as many evaluation rows (`ReleaseMemoryCallback`, in the
main process). Measured effects: docs/benchmarks.md, "Scale". Outside Linux (no `/proc/self/maps`, no glibc) both
are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import lru_cache

from transformers import TrainerCallback

MADV_DONTNEED = 4  # <sys/mman.h> on Linux
RELEASE_EVERY_ROWS = 512


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    return libc


def release_mapped_pages(suffix: str = ".arrow") -> int:
    """Drop this process's resident pages of its read-only mappings of `*<suffix>` files; returns the bytes advised.

    The mappings' address ranges come from `/proc/self/maps` (`start-end perms offset dev inode path`); a
    writable mapping is never touched. Returns 0 where this is not Linux.
    """
    libc = _libc()
    if libc is None:
        return 0
    try:
        with open("/proc/self/maps") as maps:
            text = maps.read()
    except OSError:
        return 0
    advised = 0
    # A process with torch loaded has ~2,000 mappings, few of them Arrow files: filter before parsing.
    for line in (line for line in text.splitlines() if suffix in line):
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or "w" in fields[1]:
            continue
        path = fields[5].removesuffix(" (deleted)")  # splitlines() already took the newline
        if not path.endswith(suffix):
            continue
        start, end = (int(address, 16) for address in fields[0].split("-"))
        if libc.madvise(start, end - start, MADV_DONTNEED) == 0:
            advised += end - start
    return advised


def trim_heap() -> None:
    """`malloc_trim(0)`: return the free pages of every glibc malloc arena to the system (glibc only)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def release_memory(trim: bool = True) -> None:
    """`release_mapped_pages()` and (with `trim`) `trim_heap()`: what reading Arrow files left resident, given back.

    Between training steps `trim=False`: the heap that a step frees, the next one takes again, and trimming it
    would only make the next step fault its pages in afresh.
    """
    if os.environ.get("EMODNA_HF_KEEP_PAGES"):  # to measure what releasing buys (benchmarks/scale.py)
        return
    release_mapped_pages()
    if trim:
        trim_heap()


class RowCounter:
    """Calls `release_memory` every `every` rows read (one counter per process: each dataloader worker has its own)."""

    def __init__(self, every: int = RELEASE_EVERY_ROWS):
        self.every, self.rows = every, 0

    def count(self, rows: int = 1) -> None:
        self.rows += rows
        if self.rows >= self.every:
            self.rows = 0
            release_memory(trim=False)


class ReleaseMemoryCallback(TrainerCallback):
    """`release_memory` every `every` evaluation rows (counted in batches of `per_device_eval_batch_size`), after
    each evaluation and at the end of every epoch."""

    def __init__(self, every: int = RELEASE_EVERY_ROWS):
        self.rows = RowCounter(every)

    def on_prediction_step(self, args, state, control, **kwargs):
        self.rows.count(args.per_device_eval_batch_size)

    def on_evaluate(self, args, state, control, **kwargs):
        release_memory()

    def on_epoch_end(self, args, state, control, **kwargs):
        release_memory()
