"""TENT (Wang et al., 2021, "Fully test-time adaptation by entropy minimization").

Only the affine parameters (scale γ, shift β) of the normalisation layers train, by minimising the mean entropy of
the target predictions

    L_TENT = (1/B) Σ_i H(p_i),    H(p) = −Σ_k p_k log(p_k + ε),    p_i = softmax(z_i),

and BatchNorm layers standardise with the statistics of the current target batch (training mode). Unlike the paper,
which then drops the running statistics, they keep tracking the target batches' statistics, so that the saved model,
which a user loads in eval mode, standardises with target statistics too. LayerNorm and GroupNorm (wav2vec 2.0's layers and feature encoder, our TCN blocks) have
no running statistics: their γ, β are what adapts. Everything else is frozen, so the update is small and cheap and
works on a stream of test batches as well as on a corpus (test-time adaptation).

A model without any normalisation parameters cannot be adapted by TENT: `configure_model` says so.
"""

from __future__ import annotations

from torch import nn

from .base import AdaptationObjective, ObjectiveBatch
from .shot import entropy

NORMALIZATION_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def normalization_parameters(model: nn.Module, exclude: nn.Module | None = None) -> list[tuple[str, nn.Parameter]]:
    """`(name, parameter)` of every affine weight/bias of a BatchNorm/LayerNorm/GroupNorm layer of `model`, except
    those inside `exclude` (a frozen backbone whose features are cached)."""
    excluded = {id(p) for p in exclude.parameters()} if exclude is not None else set()
    found = []
    for module_name, module in model.named_modules():
        if isinstance(module, NORMALIZATION_LAYERS):
            for name, parameter in module.named_parameters(recurse=False):
                if name in ("weight", "bias") and id(parameter) not in excluded:
                    found.append((f"{module_name}.{name}", parameter))
    return found


def mean_entropy_loss(logits) -> object:
    """`(1/B) Σ_i H(softmax(z_i))` of logits `(B, C)`."""
    return entropy(logits.float().softmax(-1)).mean()


class TentObjective(AdaptationObjective):
    """`L_TENT` on target-only batches, updating only normalisation affine parameters (`configure_model`)."""

    name = "tent"
    title = "TENT (test-time entropy minimisation on normalisation parameters)"
    description = ("Source-free / test-time: only the normalisation layers' scales and shifts are trained, to "
                   "minimise the entropy of the predictions on the unlabelled target; BatchNorm uses target batch "
                   "statistics (Wang et al., 2021).")
    batches = "target"

    def configure_model(self, model: nn.Module, classifier: nn.Module) -> None:
        """Freeze everything but the normalisation layers' affine parameters (BatchNorm: batch statistics, as the
        trainer keeps the model in training mode)."""
        frozen_backbone = getattr(model, "backbone", None) if getattr(model.config, "freeze_backbone", False) \
            else None
        parameters = normalization_parameters(model, exclude=frozen_backbone)
        if not parameters:
            raise ValueError(
                f"TENT adapts normalisation layers' scales and shifts, and {type(model).__name__} has none that "
                "train (no BatchNorm, LayerNorm or GroupNorm with affine parameters"
                + (" outside its frozen backbone" if frozen_backbone is not None else "")
                + "): use --adaptation_method shot (or adabn where it has normalisation statistics).")
        model.requires_grad_(False)
        for _, parameter in parameters:
            parameter.requires_grad_(True)

    def loss_terms(self, batch: ObjectiveBatch):
        return {"entropy": (mean_entropy_loss(batch.outputs.logits), 1.0)}, {}
