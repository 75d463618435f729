"""Tiny random-weight configs and generated audio shared by the tests (nothing is fetched from the Hub)."""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from emodna_hf import EmoDnaConfig

LABELS = ["angry", "happy", "neutral", "sad"]
SSL_TYPES = ["wav2vec2", "hubert", "wavlm", "data2vec-audio"]


def tiny_ssl_backbone_config(model_type: str) -> dict:
    """A two-layer SSL encoder with layer-norm feature extraction (exact under padding with an attention mask)."""
    return dict(
        model_type=model_type,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        feat_proj_dropout=0.0,
        layerdrop=0.0,
        mask_time_prob=0.0,
    )


def tiny_config(backbone_type: str = "tcn", labels: list[str] = LABELS, **overrides) -> EmoDnaConfig:
    kwargs = dict(
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        tcn_hidden_size=16,
        tcn_num_blocks=3,
        attention_hidden_size=16,
        encoder_hidden_size=32,
        embedding_size=16,
        projection_size=8,
        discriminator_hidden_size=16,
    )
    if backbone_type in SSL_TYPES:
        kwargs["backbone_config"] = tiny_ssl_backbone_config(backbone_type)
    kwargs.update(overrides)
    return EmoDnaConfig(backbone_type=backbone_type, **kwargs)


def tone(seconds: float = 1.0, frequency: float = 220.0, sampling_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """A harmonic tone with a little noise: a stand-in for a voiced utterance."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    wave = sum(np.sin(2 * np.pi * frequency * k * t) / k for k in range(1, 6))
    return (0.3 * wave + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def toy_corpus(corpus_id: int, n: int, shift: float, seed: int, with_labels: bool = True) -> Dataset:
    """Tones whose pitch encodes the label; `shift` moves every pitch (a corpus difference)."""
    rows = {"input_values": [], "corpus_id": [], "labels": []}
    for i in range(n):
        label = i % 4
        rows["input_values"].append(tone(0.4, frequency=140 + 70 * label + shift, seed=seed * 1000 + i))
        rows["corpus_id"].append(corpus_id)
        rows["labels"].append(label)
    if not with_labels:
        del rows["labels"]
    return Dataset.from_dict(rows)
