"""Cache the parameter-free or frozen part of the model's forward pass as an `input_features` column.

For the `tcn` backbone that is the MFCC front end; for a frozen SSL backbone, all its hidden layers. Training on
the cached column skips that work at every epoch and gives the same logits (`UDADataCollator` pads it).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections import OrderedDict

import numpy as np
import torch
from datasets import Array2D, Dataset, IterableDataset, List, Value

from ..modeling.backbones_emodna import front_end
from .collator import UDADataCollator
from .feature_store import STORE_COUNTS, FeatureStore
from .storage import CACHE_FORMAT, map_to_disk, resolve_cache_dir
from .streaming import is_streamed

# Datasets cached in this process, by fingerprint: the runs of a benchmark (methods × seeds on one direction)
# share their corpora, and recomputing e.g. openSMILE functionals would dominate their cost. Arrow tables in
# memory are shared, not copied.
_MEMO: OrderedDict[str, Dataset] = OrderedDict()
_MEMO_SIZE = 16


def cache_features(
    dataset: Dataset,
    model,
    *,
    batch_size: int = 16,
    keep_input_values: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
) -> Dataset:
    """Add `input_features` = `model.compute_cacheable_features(input_values)` to every row.

    Each row keeps only its valid frames: `(frames, features)` for `tcn` and `opensmile` (stored as a
    variable-length `Array2D`), `(layers, frames, hidden)` for SSL backbones (nested lists). `input_values` is
    dropped unless `keep_input_values`, because the collator prefers waveforms when both are present. The model
    runs in eval mode on its own device, without gradients, and is returned to its previous mode.

    With a `cache_dir` (`"auto"`: `storage.default_cache_dir()`) features live in a content-addressed store
    there (`feature_store.FeatureStore`: one entry per waveform content and front end, whatever the split, role,
    label scheme or direction), so each utterance's features are computed once; the rows' features are then
    gathered into Arrow files named by the dataset's fingerprint. `num_proc` worker processes compute missing
    features (CPU models only: a CUDA context does not survive the fork); `None` picks
    `default_feature_workers(model)`. Without a `cache_dir` the features are computed in memory.
    """
    if is_streamed(dataset):
        return _stream_features(dataset, model, batch_size, keep_input_values)
    front_end_key = _front_end_key(model)
    fingerprint = hashlib.sha1(f"{dataset._fingerprint}{keep_input_values}{front_end_key}".encode()).hexdigest()[:16]
    if fingerprint in _MEMO:
        _MEMO.move_to_end(fingerprint)
        STORE_COUNTS["reused"] += len(dataset)
        return _MEMO[fingerprint]
    device = next(model.parameters()).device
    workers = (num_proc if num_proc is not None else default_feature_workers(model)) if device.type == "cpu" else None
    folder = resolve_cache_dir(cache_dir) if cache_dir is not None else None
    was_training = model.training
    model.eval()
    try:
        features, remove = _output_features(dataset, model, device, keep_input_values)
        if folder is not None:
            store = FeatureStore(folder, front_end_key, features["input_features"])
            cached = store.features_for(
                dataset, lambda waves: _compute(model, waves, device), output_name="cached",
                keep_input_values=keep_input_values, batch_size=batch_size, num_proc=workers,
                desc=f"Computing {model.config.backbone_type} features",
            )
        else:
            cached = map_to_disk(
                dataset.with_format("numpy", columns=["input_values"], output_all_columns=True),
                lambda batch: {"input_features": _compute(model, list(batch["input_values"]), device)},
                cache_dir=None, name="features",
                # Hashing the closure would pickle the whole model; the config and weights identify the work.
                key=fingerprint, desc="Caching backbone features", num_proc=workers, batched=True,
                batch_size=batch_size, remove_columns=remove, features=features,
            )
            STORE_COUNTS["computed"] += len(dataset)
        cached = cached.with_format(None)
        _MEMO[fingerprint] = cached
        if len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
        return cached
    finally:
        model.train(was_training)


def default_feature_workers(model) -> int:
    """Worker processes for computing features when none are asked for: one per available core (at most 8) for
    front ends computed outside torch on one core per utterance (`FrontEnd.extract_in_workers`: openSMILE's C++
    extraction); 1 for torch front ends, which use the cores already."""
    if not front_end(model.config.backbone_type).extract_in_workers:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores))


def _output_features(dataset, model, device: torch.device, keep_input_values: bool):
    """The features of the cached dataset and the columns it drops. The layout depends on the model alone: it is
    probed on half a second of noise (not on a row, which would be one more extraction)."""
    noise = 0.1 * np.random.default_rng(0).standard_normal(model.config.sampling_rate // 2).astype(np.float32)
    probe = _compute(model, [noise], device)[0]
    if probe.ndim == 2:
        feature = Array2D(shape=(None, probe.shape[1]), dtype="float32")
    else:
        feature = List(List(List(Value("float32"))))
    features = dataset.features.copy()
    features["input_features"] = feature
    remove = [] if keep_input_values else ["input_values"]
    for name in remove:
        del features[name]
    return features, remove


def _stream_features(stream: IterableDataset, model, batch_size: int, keep_input_values: bool) -> IterableDataset:
    """A streamed corpus's features, computed as it is read (nothing is stored; the model stays in eval mode for
    this, which is why a stream's features need a frozen or parameter-free cached part, as caching does)."""
    device = next(model.parameters()).device

    def compute(batch: dict[str, list]) -> dict[str, list]:
        was_training = model.training
        model.eval()
        try:
            return {"input_features": _compute(model, [np.asarray(w, np.float32) for w in batch["input_values"]],
                                               device)}
        finally:
            model.train(was_training)

    features, remove = _output_features(stream, model, device, keep_input_values)
    return stream.map(compute, batched=True, batch_size=batch_size, remove_columns=remove, features=features)


def _compute(model, waves: list[np.ndarray], device: torch.device) -> list[np.ndarray]:
    batch = UDADataCollator()([{"input_values": np.asarray(w, np.float32)} for w in waves])
    with torch.no_grad():
        features, mask = model.compute_cacheable_features(
            batch["input_values"].to(device), batch["attention_mask"].to(device)
        )
    frames = mask.sum(1).tolist()
    # Frames are the second-to-last axis in both layouts: (frames, features) and (layers, frames, hidden).
    return [
        row.narrow(row.dim() - 2, 0, n).float().cpu().numpy() for row, n in zip(features, frames, strict=True)
    ]


def _front_end_key(model) -> str:
    """What determines the cached part's output besides the waveform: its config fields, weights and buffers,
    and the versions of the libraries that compute it (openSMILE's functionals and torch's MFCC kernels may
    change between releases)."""
    versions = [getattr(sys.modules.get(name), "__version__", None) for name in ("opensmile", "torch")]
    digest = hashlib.sha1(f"{versions}{CACHE_FORMAT}".encode())
    config = model.config.to_dict()
    # The config fields that decide what the cached part computes (`FrontEnd.cache_fields`; the heads' and the
    # method's do not): a model with other heads, or another backbone's unused settings, reads the same store.
    fields = front_end(model.config.backbone_type).cache_fields
    digest.update(repr([(name, config.get(name)) for name in fields]).encode())
    # Only the cached part's weights and buffers: the freshly initialised heads must not invalidate a cache.
    cached_part = model.backbone if model.config.uses_ssl_backbone else model.backbone.front_end
    with torch.no_grad():
        for name, tensor in [*cached_part.named_parameters(), *cached_part.named_buffers()]:
            digest.update(f"{name}{tensor.double().sum().item():.12e}".encode())
    return digest.hexdigest()[:16]
