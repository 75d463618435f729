"""Adaptation methods as objectives (tllib style): one file per method, one registry.

Every method is an :class:`~emodna_hf.objectives.base.AdaptationObjective`: it turns the outputs of one forward
pass over a mixed source/target batch into its loss terms (the source cross-entropy, `"classification"`, among
them; `EmoDnaTrainer` sums them), the statistics worth logging, and a description of itself for the model card.
It may own trainable parts (a discriminator, a corpus branch: `parts.py`), which the trainer optimises and
checkpoints and which never reach the saved model. The model config's
`adaptation_method` names the registry entry.

Adding a method = one new file in this folder with an `AdaptationObjective` subclass + one line in `REGISTRY`.
"""

from __future__ import annotations

import importlib

from .base import AdaptationObjective, ObjectiveBatch

# adaptation_method -> "module:Class" in this package (imported when used).
REGISTRY: dict[str, str] = {
    "emodna": "emodna:EmoDnaObjective",
    "source_only": "source_only:SourceOnlyObjective",
    "dann": "dann:DomainAdversarialObjective",
    "mmd": "mmd:MultiKernelMMDObjective",
    "shot": "shot:ShotObjective",
    "tent": "tent:TentObjective",
    "cdan": "cdan:ConditionalAdversarialObjective",
    "mcc": "mcc:MinimumClassConfusionObjective",
}


def objective_class(name: str) -> type[AdaptationObjective]:
    """The objective class registered as `name` (a clear error listing the registered methods otherwise)."""
    if name not in REGISTRY:
        raise ValueError(f"Unknown adaptation_method {name!r}; expected one of {', '.join(map(repr, REGISTRY))}.")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(f".{module}", __name__), cls)


def build_objective(config, **kwargs) -> AdaptationObjective:
    """The objective of `config.adaptation_method`, built for `config` (kwargs: see `AdaptationObjective`)."""
    return objective_class(config.adaptation_method)(config, **kwargs)


__all__ = ["REGISTRY", "AdaptationObjective", "ObjectiveBatch", "build_objective", "objective_class"]
