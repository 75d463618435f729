"""Trainable parts that adaptation methods own: an MLP head, gradient reversal, a corpus discriminator behind it.

These were modules of `EmoDnaForAudioClassification` before; they are training-only, so they live with the
methods that train them (as tllib's `DomainAdversarialLoss` owns its discriminator) and never reach a saved model.
`EmoDnaTrainer` optimises, synchronises across processes and checkpoints every parameter and buffer of an objective.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden_states: Tensor, coefficient: float) -> Tensor:
        ctx.coefficient = coefficient
        return hidden_states.view_as(hidden_states)

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return -ctx.coefficient * grad_output, None


def gradient_reversal(hidden_states: Tensor, coefficient: float = 1.0) -> Tensor:
    """Identity forwards; multiplies the gradient by `-coefficient` backwards (Ganin & Lempitsky, 2015)."""
    return _GradientReversal.apply(hidden_states, coefficient)


def mlp(input_size: int, hidden_size: int, output_size: int, dropout: float) -> nn.Sequential:
    """Linear → ReLU → Dropout → Linear (PyTorch's default Kaiming-uniform initialisation, as the model's heads)."""
    return nn.Sequential(
        nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_size, output_size)
    )


def weight_dtype(module: nn.Module) -> torch.dtype:
    """The dtype of `module`'s first floating-point parameter (float32 without one)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)


class CorpusDiscriminator(nn.Module):
    """`D(GRL_λ(x))`: an MLP over `input_size` features, predicting the corpus (`num_corpora` logits), behind a
    gradient reversal layer, so that minimising its loss trains `D` while the reversed gradient makes the features
    it reads corpus-invariant (DANN; CDAN feeds it the multilinear map instead of the embedding)."""

    def __init__(self, input_size: int, hidden_size: int, num_corpora: int, dropout: float):
        super().__init__()
        self.net = mlp(input_size, hidden_size, num_corpora, dropout)

    def forward(self, features: Tensor, coefficient: float) -> Tensor:
        features = gradient_reversal(features, coefficient)
        return self.net(features.to(weight_dtype(self.net)))
