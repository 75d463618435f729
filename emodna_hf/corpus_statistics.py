"""Statistics of the training corpora that the trainer sets before training (issue 19's base network).

* `source_class_weights`: inverse-frequency class weights of the source cross-entropy (`class_balanced_loss`);
* `set_corpus_statistics`: each corpus's whole-corpus mean and variance of the pooled features, set in the corpus
  normalisation (`corpus_statistics="dataset"`): the classical per-corpus standardisation.
"""

from __future__ import annotations

import numpy as np
import torch
from datasets import Dataset

from .data.labels import column_values
from .data.streaming import is_streamed


def source_class_weights(source: Dataset, num_labels: int) -> torch.Tensor:
    """`n / (num_labels * n_c)` for each class `c` with `n_c` of the `n` source rows (1 for absent classes): the
    weights under which every class weighs as much in the source loss (scikit-learn's "balanced")."""
    counts = np.bincount(np.asarray(column_values(source, "labels"), dtype=np.int64), minlength=num_labels)
    weights = np.where(counts > 0, counts.sum() / (num_labels * np.maximum(counts, 1)), 1.0)
    return torch.tensor(weights, dtype=torch.float32)


@torch.no_grad()
def set_corpus_statistics(model, rows, collator, batch_size: int = 256) -> None:
    """Each corpus's mean and (population) variance of the pooled features over all its training rows, set in the
    model's corpus normalisation (`corpus_statistics="dataset"`): the classical per-corpus standardisation (or,
    without per-corpus normalisation, the source corpora's statistics). Computed in every process from the whole
    corpora, so processes agree and a resumed run gets the same values."""
    if is_streamed(rows.source) or is_streamed(rows.target):
        raise ValueError("corpus_statistics='dataset' needs whole corpora, not streams: use 'batch'.")
    normalization = model.corpus_normalization
    groups = normalization.running_mean.shape[0]
    target_id = model.config.num_corpora - 1
    sums = torch.zeros(groups, normalization.running_mean.shape[1], dtype=torch.float64)
    squares, counts = torch.zeros_like(sums), torch.zeros(groups, dtype=torch.float64)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for start in range(0, len(rows), batch_size):
            batch = collator(rows.__getitems__(list(range(start, min(len(rows), start + batch_size)))))
            corpus_ids = batch.get("corpus_ids")
            if corpus_ids is None:
                corpus_ids = torch.full((len(batch["labels"]),), target_id)
            features = model.pooled_features(**{k: v.to(device) for k, v in batch.items()
                                                if k in ("input_values", "attention_mask", "input_features",
                                                         "feature_mask", "speaker_mean", "speaker_std")}
                                             ).double().cpu()
            group = corpus_ids if normalization.per_corpus else torch.zeros_like(corpus_ids)
            keep = torch.ones_like(group, dtype=torch.bool) if normalization.per_corpus else corpus_ids != target_id
            sums.index_add_(0, group[keep], features[keep])
            squares.index_add_(0, group[keep], features[keep] ** 2)
            counts.index_add_(0, group[keep], torch.ones(int(keep.sum()), dtype=torch.float64))
    finally:
        model.train(was_training)
    if (counts == 0).any():
        raise ValueError(f"corpus_statistics='dataset': no training rows for corpus group(s) "
                         f"{torch.nonzero(counts == 0).flatten().tolist()}.")
    means = sums / counts[:, None]
    variances = (squares / counts[:, None] - means ** 2).clamp(min=0.0)
    normalization.set_statistics(means.float(), variances.float())
