import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from factories import LABELS, tiny_config

from emodna_hf import EmoDnaForAudioClassification, create_feature_extractor

CHECK_SCRIPT = Path(__file__).with_name("remote_code_check.py")


def run_remote_code_check(model_dir: Path, waveforms: np.ndarray, workdir: Path, wav: Path | None = None) -> dict:
    """Load `model_dir` by remote code in a fresh process that cannot import emodna_hf (nor torchaudio) and finds
    no ffmpeg program on its PATH; return its JSON report (with `wav`: the pipeline's scores per input form)."""
    np.save(workdir / "input.npy", waveforms)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(workdir / "hf_home"), PATH=str(workdir / "no-programs"))
    completed = subprocess.run(
        [sys.executable, str(CHECK_SCRIPT), str(model_dir), str(workdir / "input.npy"), *([str(wav)] if wav else [])],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("backbone_type", ["tcn", "opensmile", "hubert"])
def test_remote_code_load_without_emodna_hf(tmp_path, backbone_type):
    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config(backbone_type)).eval()
    # Move the folder after saving: nothing may point back at the repository.
    model.save_pretrained(tmp_path / "saved")
    create_feature_extractor(model.config).save_pretrained(tmp_path / "saved")
    (tmp_path / "saved").rename(tmp_path / "elsewhere")
    waveforms = np.random.default_rng(0).standard_normal((2, 9000)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(waveforms)).logits.numpy()

    report = run_remote_code_check(tmp_path / "elsewhere", waveforms, tmp_path)

    for key in ("audio_classification", "auto_model"):
        assert report[key]["class"] == "EmoDnaForAudioClassification"
        assert report[key]["module"].startswith("transformers_modules"), report[key]["module"]
        np.testing.assert_allclose(np.array(report[key]["logits"]), expected, rtol=1e-5, atol=1e-6)
    assert sorted(s["label"] for s in report["pipeline"]) == sorted(LABELS)


@pytest.mark.slow
def test_pipeline_takes_files_bytes_any_rate_pcm_and_stereo_without_ffmpeg_or_torchaudio(tmp_path):
    """The documented inference inputs work with what emodna_hf installs (soundfile, soxr): the pipeline that ships
    with the model decodes and resamples; integer PCM is rescaled and stereo mixed down, in either layout."""
    import soundfile as sf

    torch.manual_seed(0)
    # No per-utterance normalisation and no cepstral mean removal: the input's scale reaches the logits.
    model = EmoDnaForAudioClassification(tiny_config("tcn", cepstral_mean_normalization=False)).eval()
    model.save_pretrained(tmp_path / "saved")
    extractor = create_feature_extractor(model.config)
    extractor.do_normalize = False
    extractor.save_pretrained(tmp_path / "saved")
    wave = (0.5 * np.random.default_rng(1).standard_normal((1, 16000))).clip(-1, 1).astype(np.float32)
    sf.write(tmp_path / "speech.wav", wave[0], 16000, subtype="FLOAT")

    report = run_remote_code_check(tmp_path / "saved", wave, tmp_path, wav=tmp_path / "speech.wav")

    assert report["ffmpeg"] is None  # the stock pipeline would need it for a path or bytes
    assert report["pipeline_class"].startswith("transformers_modules")
    assert report["pipeline_class"].endswith("pipeline_emodna.EmoDnaAudioClassificationPipeline")
    scores = report["inputs"]
    with torch.no_grad():
        expected = model(torch.from_numpy(wave)).logits.softmax(-1)[0].numpy()
    labels = [model.config.id2label[i] for i in range(len(LABELS))]
    np.testing.assert_allclose([scores["array"][label] for label in labels], expected, rtol=1e-4, atol=1e-6)
    for form, same_as in (("path", "array"), ("bytes", "array"), ("stereo_channels_last", "array"),
                          ("stereo_channels_first", "array"), ("raw_8k", "array_8k_resampled"),
                          ("int16", "int16_as_float")):
        for label in labels:
            assert scores[form][label] == pytest.approx(scores[same_as][label], rel=1e-4, abs=1e-6), (form, label)
    # ...and the scale mattered: int16 samples read as floats would have been classified differently.
    with torch.no_grad():
        pcm = np.round(wave / np.abs(wave).max() * 32000).astype(np.float32)
        unscaled = model(torch.from_numpy(pcm)).logits.softmax(-1)[0].numpy()
    assert np.abs(unscaled - [scores["int16"][label] for label in labels]).max() > 1e-3


@pytest.mark.slow
def test_speaker_normalised_model_by_remote_code_alone(tmp_path):
    """Without emodna_hf, the saved code computes a speaker's statistics, applies them, and refuses input
    without them (forward and pipeline), with the message that says how to give them."""
    torch.manual_seed(0)
    model = EmoDnaForAudioClassification(tiny_config("tcn", speaker_normalization=True)).eval()
    model.save_pretrained(tmp_path / "saved")
    create_feature_extractor(model.config).save_pretrained(tmp_path / "saved")
    waveforms = np.random.default_rng(0).standard_normal((2, 9000)).astype(np.float32)
    mean, std = model.speaker_statistics(torch.from_numpy(waveforms))
    with torch.no_grad():
        expected = model(torch.from_numpy(waveforms), speaker_mean=mean, speaker_std=std).logits.numpy()
    report = run_remote_code_check(tmp_path / "saved", waveforms, tmp_path)
    for key in ("audio_classification", "auto_model"):
        assert report[key]["module"].startswith("transformers_modules"), report[key]["module"]
        np.testing.assert_allclose(np.array(report[key]["logits"]), expected, rtol=1e-5, atol=1e-6)
        assert "speaker_statistics" in report["refused"][key]
    assert "pipeline" not in report and "speaker_statistics" in report["pipeline_refused"]
