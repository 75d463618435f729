"""Layers between the backbone and the encoders: layer sum, masked pooling, corpus normalisation; and the rule
that keeps their numerically delicate parts in float32 when the model's weights are bfloat16 or float16.

Half precision (`from_pretrained(..., dtype=torch.bfloat16)`, `model.to(torch.float16)`): weights run in the
half dtype, but statistics (pooled means and variances, the per-corpus running statistics of the standardisation,
the MFCC front end's window and filterbank) are computed and kept in float32: a bfloat16 mantissa has 8 bits, so
`x - mean` of a feature around 30 would be quantised to steps of 0.125, and `E[x^2] - E[x]^2` would cancel to noise.
Each stage casts its input to the dtype of its own weights, so float32 statistics meet half-precision layers
only at those casts.

Shipped as remote code: imports torch only.
"""

from __future__ import annotations

import torch
from torch import nn


class Float32Buffers:
    """Mixin for modules whose floating-point buffers stay float32 under a dtype cast of the model.

    `module.to(torch.bfloat16)` / `.half()` cast the parameters and move every buffer (device casts still apply);
    `from_pretrained(dtype=...)` keeps them float32 too, because they are created with an explicit float32 dtype
    (transformers keeps a loaded tensor in the dtype of the module's own buffer when that differs from `dtype`).
    """

    def _apply(self, fn, recurse: bool = True):
        originals = {name: buffer for name, buffer in self._buffers.items() if buffer is not None}
        super()._apply(fn, recurse)
        for name, original in originals.items():
            moved = self._buffers[name]
            if original.dtype == torch.float32 and moved.dtype in (torch.bfloat16, torch.float16):
                # Rebuilt from the float32 original (not moved.float(): that would keep the rounding).
                self._buffers[name] = original.to(device=moved.device)
        return self


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` in float32 if it is bfloat16 or float16 (float32 and float64 are left as they are)."""
    return tensor.float() if tensor.dtype in (torch.bfloat16, torch.float16) else tensor


def weight_dtype(module: nn.Module) -> torch.dtype:
    """The dtype a module's inputs must have: that of its first floating-point parameter (float32 if none)."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


class WeightedLayerSum(nn.Module):
    """Softmax-weighted sum over backbone layers `(batch, layers, frames, hidden)` → `(batch, frames, hidden)`."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.layer_weights = nn.Parameter(torch.zeros(num_layers))

    def forward(self, layers: torch.Tensor) -> torch.Tensor:
        # In the layers' dtype: float32 openSMILE functionals stay float32 under a half-precision model.
        weights = torch.softmax(self.layer_weights.float(), dim=0).to(layers.dtype)
        # A broadcast sum, not einsum: einsum's reshapes give torch.export a guard on the frame count that its
        # symbolic solver cannot prove (16 * (n + 1) % (n + 1) == 0), so dynamic lengths would fail to export.
        return (weights[None, :, None, None] * layers).sum(1)


class MaskedMeanPooling(nn.Module):
    """Mean over valid frames: `(batch, frames, hidden)`, mask `(batch, frames)` → float32 `(batch, hidden)`."""

    def __init__(self, hidden_size: int, config):
        super().__init__()
        self.output_size = hidden_size

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        hidden_states = upcast(hidden_states)
        weights = frame_mask.unsqueeze(-1).to(hidden_states.dtype)
        return (hidden_states * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class AttentiveStatisticsPooling(nn.Module):
    """Attentive mean and standard deviation over valid frames (Okabe et al., 2018) → float32 `(batch, 2 * hidden)`.

    The scorer runs in its weights' dtype; the softmax, mean and variance in float32.
    """

    def __init__(self, hidden_size: int, config):
        super().__init__()
        self.scorer = nn.Sequential(
            nn.Linear(hidden_size, config.attention_hidden_size),
            nn.Tanh(),
            nn.Linear(config.attention_hidden_size, 1),
        )
        self.output_size = 2 * hidden_size

    def forward(self, hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        scores = upcast(self.scorer(hidden_states.to(weight_dtype(self.scorer))).squeeze(-1))
        scores = scores.masked_fill(~frame_mask, torch.finfo(scores.dtype).min)
        attention = torch.softmax(scores, dim=-1).unsqueeze(-1)
        hidden_states = upcast(hidden_states)
        mean = (attention * hidden_states).sum(1)
        variance = (attention * hidden_states.pow(2)).sum(1) - mean.pow(2)
        return torch.cat([mean, torch.sqrt(variance.clamp(min=1e-5))], dim=-1)


POOLING_CLASSES = {"mean": MaskedMeanPooling, "attentive_stats": AttentiveStatisticsPooling}


class CorpusNormalization(Float32Buffers, nn.Module):
    """Standardises pooled features with the statistics of their own corpus (AdaBN / domain-specific BN).

    In training, the rows of each corpus in the batch are standardised with that corpus's batch mean and variance
    (Chang et al., 2019), which aligns the first two moments of every corpus by construction, and each corpus's
    running statistics are tracked (`running_mean`, `running_var`: `(num_corpora, features)`). In evaluation a row
    is standardised with the running statistics of its corpus when `corpus_ids` are given (e.g. the held-out
    source, judged under its own statistics), and with the **target**'s (`corpus_id == num_corpora - 1`) when they
    are not, which is inference: the adapted model is meant for the target corpus (AdaBN, Li et al., 2016).

    With `per_corpus=False` every row is standardised with the statistics of the *source* rows (all corpora but
    the target), tracked in one row of running statistics: the classical source-fitted standardisation, for
    baselines on features whose raw scales differ (openSMILE functionals).

    The running statistics stay float32 whatever the model's dtype ([`Float32Buffers`]); evaluation standardises
    in float32 and returns float32 `(batch, features)`.
    """

    def __init__(self, num_features: int, target_corpus_id: int, momentum: float = 0.1, eps: float = 1e-5,
                 per_corpus: bool = True):
        super().__init__()
        self.target_corpus_id, self.momentum, self.eps = target_corpus_id, momentum, eps
        self.per_corpus = per_corpus
        groups = target_corpus_id + 1 if per_corpus else 1
        # Explicit float32: from_pretrained(dtype=bfloat16) builds modules under a bfloat16 default dtype.
        self.register_buffer("running_mean", torch.zeros(groups, num_features, dtype=torch.float32))
        self.register_buffer("running_var", torch.ones(groups, num_features, dtype=torch.float32))
        # Set by `set_statistics` (whole-corpus statistics): training then standardises with the running statistics
        # too. Not saved: inference always uses them.
        self.register_buffer("fixed", torch.tensor(False), persistent=False)

    @torch.no_grad()
    def set_statistics(self, means: torch.Tensor, variances: torch.Tensor) -> None:
        """Use these `(groups, features)` statistics in training and at inference, instead of batch statistics."""
        self.running_mean.copy_(means)
        self.running_var.copy_(variances)
        self.fixed.fill_(True)

    def _groups(self, corpus_ids: torch.Tensor) -> torch.Tensor:
        """One-hot `(batch, groups)` of the statistics each row is standardised with."""
        if self.per_corpus:
            return nn.functional.one_hot(corpus_ids, self.target_corpus_id + 1)
        return (corpus_ids != self.target_corpus_id)[:, None]  # the source rows give everyone's statistics

    def forward(self, features: torch.Tensor, corpus_ids: torch.Tensor | None = None) -> torch.Tensor:
        if corpus_ids is not None:
            corpus_ids = corpus_ids.to(features.device)
        if not self.training or bool(self.fixed):
            features = upcast(features)
            if corpus_ids is None or not self.per_corpus:
                row = -1 if self.per_corpus else 0
                return (features - self.running_mean[row]) / torch.sqrt(self.running_var[row] + self.eps)
            return (features - self.running_mean[corpus_ids]) / torch.sqrt(self.running_var[corpus_ids] + self.eps)
        if corpus_ids is None:  # one corpus: plain batch statistics
            corpus_ids = torch.full(features.shape[:1], self.target_corpus_id, device=features.device)
        # Statistics in float32 whatever the autocast dtype: the running buffers are float32, and bf16 sums of
        # squares lose the small variances that matter.
        with torch.autocast(device_type=features.device.type, enabled=False):
            return self._normalize_train(features.float(), corpus_ids).to(features.dtype)

    def _normalize_train(self, features: torch.Tensor, corpus_ids: torch.Tensor) -> torch.Tensor:
        # One-hot group statistics: every group in one pass, no Python loop over corpora or host sync.
        groups = self._groups(corpus_ids).to(features.dtype)  # (B, G)
        rows = groups.sum(0)
        counts = rows.clamp(min=1.0)[:, None]
        means = groups.T @ features / counts
        # Two-pass variance: E[x^2] - E[x]^2 cancels badly in float32 when features have large means. (Rows
        # outside every group, the target rows in source mode, are centred on 0 here but weigh 0 in the sum.)
        variances = groups.T @ (features - groups @ means).pow(2) / counts
        if self.per_corpus:
            normalized = (features - groups @ means) / torch.sqrt(groups @ variances + self.eps)
        else:
            normalized = (features - means[0]) / torch.sqrt(variances[0] + self.eps)
        with torch.no_grad():
            # Groups with at least two rows in the batch move their running statistics (unbiased variance).
            moving = (rows > 1).to(features.dtype)[:, None] * self.momentum
            unbiased = variances * (rows / (rows - 1).clamp(min=1.0))[:, None]
            self.running_mean.lerp_(means.detach(), moving)
            self.running_var.lerp_(unbiased.detach(), moving)
        return normalized
