"""Batching of variable-length utterances (waveforms or cached backbone features) for model and trainer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class UDADataCollator:
    """Pads examples into a batch of tensors.

    - `input_values` (1-D waveforms) → `input_values` `(batch, samples)` zero-padded + `attention_mask`
      (long);
    - or `input_features` (cached features `(frames, features)` or `(layers, frames, hidden)`) →
      `input_features` padded along the frame axis + `feature_mask` `(batch, frames)` (bool);
    - `labels` → long, `-100` for examples without one (key absent or None: unlabelled target rows);
    - `corpus_id` → `corpus_ids` (long), when present;
    - `speaker_mean`, `speaker_std` (a speaker's statistics of the cached features, `data.speakers`) → float
      `(batch, features)`, when present.
    Other columns (speaker, file names, ...) are not model inputs and are dropped.

    Args:
        pad_to_multiple_of: round the padded length up to a multiple of this (stable shapes for compiled
            kernels).
    """

    pad_to_multiple_of: int | None = None

    def _padded_length(self, lengths: list[int]) -> int:
        length = max(lengths)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        return length

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("Cannot collate an empty list of examples.")
        batch: dict[str, torch.Tensor] = {}
        if "input_values" in examples[0]:
            waves = [np.asarray(e["input_values"], dtype=np.float32) for e in examples]
            for wave, example in zip(waves, examples, strict=True):
                if wave.ndim != 1:
                    raise ValueError(
                        f"input_values must be 1-D mono waveforms; example {example.get('utt_id', '?')} has "
                        f"shape {wave.shape}."
                    )
            length = self._padded_length([len(w) for w in waves])
            # Padding in numpy: rows from numpy-formatted datasets are read-only views that torch warns about.
            values = np.zeros((len(waves), length), dtype=np.float32)
            mask = np.zeros((len(waves), length), dtype=np.int64)
            for i, wave in enumerate(waves):
                values[i, : len(wave)] = wave
                mask[i, : len(wave)] = 1
            batch["input_values"], batch["attention_mask"] = torch.from_numpy(values), torch.from_numpy(mask)
        elif "input_features" in examples[0]:
            features = [np.asarray(e["input_features"], dtype=np.float32) for e in examples]
            time_axis = features[0].ndim - 2  # frames are the second-to-last axis in both layouts
            length = self._padded_length([f.shape[time_axis] for f in features])
            shape = list(features[0].shape)
            shape[time_axis] = length
            padded = np.zeros((len(features), *shape), dtype=np.float32)
            mask = np.zeros((len(features), length), dtype=bool)
            for i, feature in enumerate(features):
                frames = feature.shape[time_axis]
                index = (i, *[slice(None)] * time_axis, slice(0, frames))
                padded[index] = feature
                mask[i, :frames] = True
            batch["input_features"], batch["feature_mask"] = torch.from_numpy(padded), torch.from_numpy(mask)
        else:
            raise ValueError(
                f"Examples need 'input_values' or 'input_features'; got keys {sorted(examples[0])}."
            )
        labels = [e.get("labels") for e in examples]
        batch["labels"] = torch.tensor([-100 if y is None else int(y) for y in labels], dtype=torch.long)
        with_corpus = sum("corpus_id" in e for e in examples)
        if with_corpus not in (0, len(examples)):
            # A silent default would mislabel rows as a corpus; mixed batches mean a dataset lost its column.
            raise ValueError(f"Only {with_corpus} of {len(examples)} examples have a 'corpus_id'.")
        if with_corpus:
            batch["corpus_ids"] = torch.tensor([int(e["corpus_id"]) for e in examples], dtype=torch.long)
        for name in ("speaker_mean", "speaker_std"):
            present = sum(e.get(name) is not None for e in examples)
            if present not in (0, len(examples)):
                raise ValueError(f"Only {present} of {len(examples)} examples have a {name!r}.")
            if present:
                batch[name] = torch.from_numpy(np.stack([np.asarray(e[name], dtype=np.float32) for e in examples]))
        return batch
