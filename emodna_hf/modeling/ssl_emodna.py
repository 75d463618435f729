"""The self-supervised front ends: wav2vec2-family encoders from transformers (wav2vec2, HuBERT, WavLM,
data2vec-audio), whose hidden states (all layers) are the backbone's layers.

A new family that exposes `hidden_states` and `_get_feature_vector_attention_mask` is one more name in
`SSL_BACKBONE_TYPES`. Shipped as remote code: imports transformers and this folder only.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoModel

from .frontend_emodna import FrontEnd

# wav2vec2-family encoders that expose ``hidden_states`` and ``_get_feature_vector_attention_mask``.
SSL_BACKBONE_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio")


def build_ssl_encoder(config: Any):
    """The encoder of `config.backbone_config`, randomly initialised (`from_backbone_pretrained` loads weights)."""
    if config.use_weighted_layer_sum and getattr(config.backbone_config, "layerdrop", 0.0):
        # LayerDrop skips whole layers in training, so the encoder returns fewer hidden states than the
        # layer sum has weights (a crash at a random step): the sum over layers is our regulariser.
        config.backbone_config.layerdrop = 0.0
    return AutoModel.from_config(config.backbone_config)


def describe_ssl(config: Any, base: str | None) -> str:
    if not base:
        return f"{config.backbone_type} encoder, randomly initialised."
    frozen = "frozen" if config.freeze_backbone else (
        "fine-tuned (CNN feature encoder frozen)" if config.freeze_feature_encoder else "fully fine-tuned")
    return f"{config.backbone_type} encoder from `{base}`, {frozen}."


SSL_FRONT_ENDS = tuple(
    FrontEnd(
        name=name,
        build=build_ssl_encoder,
        describe=describe_ssl,
        cache_fields=("backbone_type", "backbone_config", "sampling_rate", "freeze_backbone"),
        ssl=True,
        cache="frozen",
    )
    for name in SSL_BACKBONE_TYPES
)
