"""Half-precision weights (bfloat16, float16) for every backbone: delicate statistics stay float32 inside, logits
stay within a stated tolerance of float32."""

import pytest
import torch
from factories import SSL_TYPES, tiny_config
from transformers import AutoModelForAudioClassification, pipeline

from emodna_hf import EmoDnaForAudioClassification, create_feature_extractor
from emodna_hf.export import padded_batch

ALL_BACKBONES = ["tcn", "opensmile", *SSL_TYPES]
# Stated tolerance: max |logit - float32 logit| <= TOLERANCE * max(1, max |float32 logit|). bfloat16 keeps
# 8 mantissa bits (relative rounding 2^-9 = 0.2%), float16 11 bits (0.03%). Measured on these tiny models:
# at most 2.8e-3 (bfloat16) and 3.8e-4 (float16), the openSMILE backbone being the largest.
TOLERANCE = {torch.bfloat16: 1e-2, torch.float16: 2e-3}


def _model(backbone_type):
    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config(backbone_type)).eval()
    if backbone_type == "opensmile":  # standardisation statistics of real functionals (as a trained model has)
        functionals, _ = model.compute_cacheable_features(*padded_batch([16000, 12000, 9000, 14000], seed=5))
        model.corpus_normalization.running_mean[:] = functionals[:, 0].mean(0)
        model.corpus_normalization.running_var[:] = functionals[:, 0].var(0) + 1e-3
    return model


def _inputs():
    input_values, attention_mask = padded_batch([16000, 9000, 12345], seed=2)
    return {"input_values": input_values, "attention_mask": attention_mask}


def _max_error(logits: torch.Tensor, reference: torch.Tensor) -> float:
    return float((logits.float() - reference).abs().max() / reference.abs().max().clamp(min=1.0))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("backbone_type", ALL_BACKBONES)
def test_half_precision_weights_give_float32_logits_within_tolerance(tmp_path, backbone_type, dtype):
    model = _model(backbone_type)
    inputs = _inputs()
    with torch.no_grad():
        reference = model(**inputs).logits
    model.save_pretrained(tmp_path)
    loaded = AutoModelForAudioClassification.from_pretrained(tmp_path, dtype=dtype).eval()
    cast = _model(backbone_type).to(dtype)
    for half in (loaded, cast):
        assert half.dtype == dtype
        # Front-end constants and normalisation statistics are kept in float32 (never rounded to half).
        buffers = dict(half.named_buffers())
        assert buffers and all(b.dtype == torch.float32 for b in buffers.values() if b.is_floating_point())
        torch.testing.assert_close(buffers["corpus_normalization.running_mean"],
                                   model.corpus_normalization.running_mean, rtol=0, atol=0)
        with torch.no_grad():
            logits = half(**inputs).logits
        assert logits.dtype == dtype
        error = _max_error(logits, reference)
        assert error <= TOLERANCE[dtype], f"{backbone_type} {dtype}: {error:.3g}"
        # ...and half precision is really used: the logits are not the float32 ones.
        assert error > 0


def test_stft_statistics_are_float32_not_half():
    """The MFCC front end runs in float32 under a bfloat16 model: its features equal the float32 model's."""
    model = _model("tcn")
    inputs = _inputs()
    features, mask = model.compute_cacheable_features(**inputs)
    half_features, half_mask = _model("tcn").to(torch.bfloat16).compute_cacheable_features(**inputs)
    assert half_features.dtype == torch.float32
    torch.testing.assert_close(half_features, features, rtol=0, atol=0)
    assert torch.equal(half_mask, mask)


def test_half_precision_pipeline_from_a_saved_folder(tmp_path):
    model = _model("tcn")
    model.save_pretrained(tmp_path)
    create_feature_extractor(model.config).save_pretrained(tmp_path)
    wave = _inputs()["input_values"][0].numpy()
    classifier = pipeline("audio-classification", model=str(tmp_path), trust_remote_code=True)
    scores = {s["label"]: s["score"] for s in classifier(wave, top_k=None)}
    classifier = pipeline("audio-classification", model=str(tmp_path), dtype=torch.bfloat16, trust_remote_code=True)
    assert classifier.model.dtype == torch.bfloat16
    half_scores = {s["label"]: s["score"] for s in classifier(wave, top_k=None)}
    assert half_scores.keys() == scores.keys()
    assert max(abs(half_scores[k] - scores[k]) for k in scores) < 2e-2
