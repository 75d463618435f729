"""What a front end (backbone) declares, in one place: the schema of `backbones_emodna.BACKBONES`.

Everything outside the model that depends on the front end reads its declaration instead of its name: the saved
feature extractor (waveform normalisation), feature caching (whether, and what the cache depends on), export (the
graph's inputs), the model card, the recipes' thread and checkpoint choices. A new front end is one file in this
folder (its `nn.Module` and a `FrontEnd`) plus one line in `backbones_emodna.py`.

Shipped as remote code: imports nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class FrontEnd:
    """One front end of `EmoDnaForAudioClassification` (`config.backbone_type == name`).

    Attributes:
        name: the `backbone_type`.
        build: `config -> nn.Module`, stored as `model.backbone`. A non-SSL backbone exposes `front_end` (waveform
            `(batch, samples)` + mask → features `(batch, frames, size)` + frame mask: the part that is cached),
            `encode_features` (features → layers `(batch, layers, frames, hidden)`), `num_layers` and
            `hidden_size`. An SSL encoder (`ssl=True`) is a transformers model whose hidden states are the layers.
        describe: `(config, base checkpoint or None) -> str`, the model card's sentence about the front end.
        cache_fields: the config fields the cached features depend on (with the cached part's weights).
        ssl: a wav2vec2-family encoder from transformers: `config.backbone_config`, hidden states as layers,
            pretrained checkpoints (`from_backbone_pretrained`), freezing.
        normalize_waveform: whether the feature extractor standardises each waveform (zero mean, unit variance).
        cache: "always" (the front end has no trainable parameters) or "frozen" (only with `freeze_backbone`).
        graph_input: what an exported graph takes: "waveform" (the front end is in the graph) or "features" (the
            front end runs outside the graph, as `emodna_hf.export.onnx_inputs` computes it).
        utterance_level: one feature vector per utterance (a single frame): pooling is the identity, and the
            features do not change in training, so whole-corpus statistics (`corpus_statistics="dataset"`) and
            source standardisation apply.
        small: a model small enough that one torch thread is fastest (the recipes set it).
        extract_in_workers: features are computed outside torch on one core per utterance: cache them with
            worker processes.
    """

    name: str
    build: Callable[[Any], Any]
    describe: Callable[[Any, str | None], str]
    cache_fields: tuple[str, ...]
    ssl: bool = False
    normalize_waveform: bool = True
    cache: Literal["always", "frozen"] = "always"
    graph_input: Literal["waveform", "features"] = "waveform"
    utterance_level: bool = False
    small: bool = False
    extract_in_workers: bool = False

    def __post_init__(self):
        if self.graph_input == "features" and not (self.utterance_level and self.cache == "always"):
            raise ValueError(f"Front end {self.name!r}: graph_input='features' (the front end outside the exported "
                             "graph) needs an utterance-level front end without trainable parameters.")
        if self.cache == "frozen" and not self.ssl:
            raise ValueError(f"Front end {self.name!r}: cache='frozen' is for SSL encoders (freeze_backbone).")

    def can_cache(self, config: Any) -> bool:
        """Whether this model's front-end features can be computed once and cached (`compute_cacheable_features`)."""
        return self.cache == "always" or bool(config.freeze_backbone)

    def dims(self, config: Any, backbone: Any) -> tuple[int, int]:
        """`(layers, hidden size)` of what the backbone hands to the layer sum."""
        if self.ssl:
            return config.backbone_config.num_hidden_layers + 1, config.backbone_config.hidden_size
        return backbone.num_layers, backbone.hidden_size
