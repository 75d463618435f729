"""Cache the parameter-free or frozen part of the model's forward pass as an `input_features` column.

For the `tcn` backbone that is the MFCC front end; for a frozen SSL backbone, all its hidden layers. Training on
the cached column skips that work at every epoch and gives the same logits (`UDADataCollator` pads it).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from datasets import Array2D, Dataset, List, Value

from .collator import UDADataCollator


def cache_features(
    dataset: Dataset, model, *, batch_size: int = 16, keep_input_values: bool = False
) -> Dataset:
    """Add `input_features` = `model.compute_cacheable_features(input_values)` to every row.

    Each row keeps only its valid frames: `(frames, features)` for `tcn` (stored as a variable-length
    `Array2D`), `(layers, frames, hidden)` for SSL backbones (nested lists). `input_values` is dropped unless
    `keep_input_values`, because the collator prefers waveforms when both are present. The model runs in eval
    mode on its own device, without gradients, and is returned to its previous mode.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        probe = _compute(model, [np.asarray(dataset[0]["input_values"], np.float32)], device)[0]
        if probe.ndim == 2:
            feature = Array2D(shape=(None, probe.shape[1]), dtype="float32")
        else:
            feature = List(List(List(Value("float32"))))
        features = dataset.features.copy()
        features["input_features"] = feature
        remove = [] if keep_input_values else ["input_values"]
        for name in remove:
            del features[name]
        return (
            dataset.with_format("numpy", columns=["input_values"], output_all_columns=True)
            .map(
                lambda batch: {"input_features": _compute(model, list(batch["input_values"]), device)},
                batched=True,
                batch_size=batch_size,
                remove_columns=remove,
                features=features,
                # Hashing the closure would pickle the whole model; the config and weights identify the work.
                new_fingerprint=_fingerprint(dataset, model, keep_input_values),
                desc="Caching backbone features",
            )
            .with_format(None)
        )
    finally:
        model.train(was_training)


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


def _fingerprint(dataset: Dataset, model, keep_input_values: bool) -> str:
    digest = hashlib.sha1(f"{dataset._fingerprint}{keep_input_values}".encode())
    digest.update(model.config.to_json_string().encode())
    # Only the cached part's weights: the freshly initialised heads must not invalidate a feature cache.
    cached_part = model.backbone if model.config.uses_ssl_backbone else model.backbone.front_end
    with torch.no_grad():
        for name, parameter in cached_part.named_parameters():
            digest.update(f"{name}{parameter.double().sum().item():.12e}".encode())
    return digest.hexdigest()[:16]
