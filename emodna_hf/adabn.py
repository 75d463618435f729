"""AdaBN (Li et al., 2016, "Revisiting batch normalization for practical domain adaptation"): source-free
adaptation without gradients.

The normalisation statistics that a model learnt on its source are re-estimated on the unlabelled target, weights
untouched:

* our `EmoDnaForAudioClassification`: the corpus normalisation's **target** statistics (the row that inference
  standardises with) become the target corpus's mean and population variance of the pooled features,
  `μ_T = (1/N) Σ_i x_i`, `σ²_T = (1/N) Σ_i (x_i − μ_T)²`, over every target utterance;
* BatchNorm layers (any model): their running mean and variance are reset and re-accumulated over the whole target
  as cumulative averages (`momentum=None`), the model in eval mode except the BatchNorm layers, so that dropout
  does not disturb the statistics.

A procedure, not an `AdaptationObjective`: nothing is optimised (and `adaptation_method="adabn"` of
`recipes/train.py`'s benchmarks is source-only training with corpus normalisation, which this re-estimation
reproduces for any saved model). A model with neither has nothing to re-estimate: a clear error says so (a plain
wav2vec 2.0 classifier has LayerNorm/GroupNorm only, which keep no statistics; use TENT or SHOT there).
"""

from __future__ import annotations

from typing import Any

import torch
from datasets import Dataset
from torch import nn

from .data.collator import UDADataCollator
from .source_free import model_inputs, target_rows


def batch_norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def adapt_normalization_statistics(model: nn.Module, dataset: Dataset, collator=None, batch_size: int = 16,
                                   device: torch.device | str | None = None) -> dict[str, Any]:
    """Re-estimate `model`'s normalisation statistics on the target `dataset` (labels never read), in place.

    Returns `{"adapted": [what was re-estimated], "rows": N}`; ValueError when the model has nothing to re-estimate.
    """
    corpus_normalization = getattr(model, "corpus_normalization", None)
    batch_norms = batch_norm_layers(model)
    if corpus_normalization is None and not batch_norms:
        raise ValueError(
            f"AdaBN re-estimates normalisation statistics, and {type(model).__name__} keeps none (no BatchNorm running "
            "statistics, no corpus normalisation): it cannot be adapted by adabn; use --adaptation_method tent or "
            "shot.")
    collator = collator or UDADataCollator()
    rows = target_rows(dataset)
    device = device or next(model.parameters()).device
    was_training = model.training
    adapted = []

    def batches():
        for start in range(0, len(rows), batch_size):
            batch = collator([rows[i] for i in range(start, min(len(rows), start + batch_size))])
            yield {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}

    try:
        model.eval()
        if corpus_normalization is not None:
            sums = squares = None
            for batch in batches():
                pooled = model.pooled_features(**model_inputs(model, batch, "pooled_features")).double()
                sums = pooled.sum(0) if sums is None else sums + pooled.sum(0)
                squares = (pooled ** 2).sum(0) if squares is None else squares + (pooled ** 2).sum(0)
            mean = sums / len(rows)
            variance = (squares / len(rows) - mean ** 2).clamp(min=0.0)
            corpus_normalization.running_mean[-1].copy_(mean.float())
            corpus_normalization.running_var[-1].copy_(variance.float())
            adapted.append("corpus normalisation: target statistics")
        if batch_norms:
            momenta = [m.momentum for m in batch_norms]
            for module in batch_norms:
                module.reset_running_stats()
                module.momentum = None  # cumulative average over every target batch
                module.train()
            try:
                for batch in batches():
                    model(**model_inputs(model, batch))
            finally:
                for module, momentum in zip(batch_norms, momenta, strict=True):
                    module.momentum = momentum
            adapted.append(f"BatchNorm running statistics ({len(batch_norms)} layers)")
    finally:
        model.train(was_training)
    return {"adapted": adapted, "rows": len(rows)}
