"""The front-end registry (issue 20): a front end declares in one place how it is built, how waveforms are
normalised for it, whether its features are cached, what an exported graph takes and what the card says; the rest
of the package reads the declaration.

A toy front end (framewise log energies of four bands, a linear layer per frame), registered with one line,
builds, trains, caches, describes itself, exports and saves and loads, without a change anywhere else. (Remote
code ships the files of `emodna_hf/modeling/`; a front end defined in a test cannot travel with it, so the
save/load check here is in-process: the remote-code tests cover the registered front ends.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from factories import tiny_config, toy_corpus
from torch import nn

from emodna_hf import EmoDnaConfig, EmoDnaForAudioClassification, create_feature_extractor
from emodna_hf.modeling.backbones_emodna import BACKBONES
from emodna_hf.modeling.frontend_emodna import FrontEnd


class BandEnergies(nn.Module):
    """Waveform → log energies of four bands per 25 ms frame (10 ms hop), valid frames only; no parameters."""

    output_size = 4

    def __init__(self, config):
        super().__init__()
        self.frame, self.hop = int(0.025 * config.sampling_rate), int(0.010 * config.sampling_rate)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None):
        frames = input_values.float().unfold(-1, self.frame, self.hop)  # (batch, frames, samples)
        power = torch.fft.rfft(frames, dim=-1).abs() ** 2
        bands = torch.stack([band.sum(-1) for band in power.chunk(self.output_size, dim=-1)], dim=-1)
        lengths = attention_mask.sum(-1) if attention_mask is not None else torch.full(
            (input_values.shape[0],), input_values.shape[-1], device=input_values.device)
        valid = torch.div(lengths - self.frame, self.hop, rounding_mode="floor") + 1
        mask = torch.arange(frames.shape[1], device=frames.device)[None] < valid[:, None]
        return torch.log(bands + 1e-6) * mask[..., None], mask


class ToyBackbone(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.front_end = BandEnergies(config)
        self.projection = nn.Linear(BandEnergies.output_size, 8)
        self.num_layers, self.hidden_size = 1, 8

    def encode_features(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        return self.projection(features.to(self.projection.weight.dtype)).unsqueeze(1)


TOY = FrontEnd(
    name="toy-bands",
    build=ToyBackbone,
    describe=lambda config, base: "four band energies per frame (a test front end).",
    cache_fields=("backbone_type", "sampling_rate"),
    normalize_waveform=False,  # read by the feature extractor: the default is True
)


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(BACKBONES, TOY.name, TOY)  # the one registry line


def waves(n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [8000, 6400, 5000][:n]
    values = torch.zeros(n, max(lengths))
    mask = torch.zeros(n, max(lengths), dtype=torch.long)
    rng = np.random.default_rng(0)
    for row, length in enumerate(lengths):
        values[row, :length] = torch.from_numpy(rng.standard_normal(length).astype(np.float32))
        mask[row, :length] = 1
    return values, mask


def test_an_unregistered_front_end_is_refused_naming_the_registered_ones():
    with pytest.raises(ValueError, match="Unknown backbone_type 'toy-bands'; expected one of 'tcn', 'opensmile'"):
        EmoDnaConfig(backbone_type="toy-bands")


def test_a_registered_front_end_builds_and_its_declaration_is_read(toy_registered):
    config = tiny_config(TOY.name)
    model = EmoDnaForAudioClassification(config).eval()
    assert isinstance(model.backbone, ToyBackbone) and not config.uses_ssl_backbone
    assert create_feature_extractor(config).do_normalize is False
    # The card's backbone sentence comes from the declaration.
    from types import SimpleNamespace

    from emodna_hf.card import _backbone_info

    assert _backbone_info(SimpleNamespace(backbone_name_or_path=None), config)["description"] == TOY.describe(
        config, None)
    # Cached features resume the forward pass with the same logits, padding included.
    values, mask = waves()
    features, feature_mask = model.compute_cacheable_features(values, mask)
    with torch.no_grad():
        live = model(input_values=values, attention_mask=mask).logits
        cached = model(input_features=features, feature_mask=feature_mask).logits
        alone = model(input_values=values[2:, :5000], attention_mask=mask[2:, :5000]).logits
    torch.testing.assert_close(cached, live)
    torch.testing.assert_close(alone, live[2:], rtol=1e-5, atol=1e-6)


def test_a_registered_front_end_trains_saves_loads_and_exports(toy_registered, tmp_path):
    from emodna_hf.data import cache_features
    from emodna_hf.export import export_program
    from emodna_hf.trainer import EmoDnaTrainer, EmoDnaTrainingArguments

    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config(TOY.name, pseudo_label_warmup=0.0))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    # The trainer reads the cached features (a parameter-free front end: `cache="always"`).
    source = cache_features(toy_corpus(0, 16, 0.0, seed=1), model)
    target = cache_features(toy_corpus(1, 12, 35.0, seed=2, with_labels=False), model)
    assert "input_features" in source.column_names
    args = EmoDnaTrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, max_steps=2,
                                   learning_rate=3e-3, report_to="none", use_cpu=True, save_strategy="no",
                                   disable_tqdm=True)
    EmoDnaTrainer(model=model, args=args, train_dataset=source, target_dataset=target).train()
    assert not torch.equal(model.backbone.projection.weight, before["backbone.projection.weight"])

    model.eval().save_pretrained(tmp_path / "saved")
    loaded = EmoDnaForAudioClassification.from_pretrained(tmp_path / "saved").eval()
    assert loaded.config.backbone_type == TOY.name
    values, mask = waves()
    with torch.no_grad():
        expected = model(input_values=values, attention_mask=mask).logits
        torch.testing.assert_close(loaded(input_values=values, attention_mask=mask).logits, expected)
        # graph_input="waveform" (the default): the exported program takes the waveform and its mask.
        program = export_program(loaded)
        torch.testing.assert_close(program.module()(input_values=values, attention_mask=mask), expected,
                                   rtol=1e-4, atol=1e-5)


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="graph_input='features'"):
        FrontEnd(name="x", build=ToyBackbone, describe=TOY.describe, cache_fields=(), graph_input="features")
    with pytest.raises(ValueError, match="cache='frozen'"):
        FrontEnd(name="x", build=ToyBackbone, describe=TOY.describe, cache_fields=(), cache="frozen")


def test_every_registered_front_end_declares_what_the_package_reads():
    """The declarations the package had as name comparisons before the registry, kept."""
    assert BACKBONES["opensmile"].graph_input == "features" and not BACKBONES["opensmile"].normalize_waveform
    assert BACKBONES["opensmile"].utterance_level and BACKBONES["opensmile"].extract_in_workers
    assert BACKBONES["tcn"].normalize_waveform and BACKBONES["tcn"].cache == "always" and BACKBONES["tcn"].small
    for name in ("wav2vec2", "hubert", "wavlm", "data2vec-audio"):
        assert BACKBONES[name].ssl and BACKBONES[name].cache == "frozen" and not BACKBONES[name].small
    assert BACKBONES["hubert"].can_cache(tiny_config("hubert", freeze_backbone=True))
    assert not BACKBONES["hubert"].can_cache(tiny_config("hubert", freeze_backbone=False))
