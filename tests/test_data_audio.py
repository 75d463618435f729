"""Audio decoding: containers, rates, channels, crops and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from emodna_hf.data import AudioDecodeError, load_audio


def sine(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    return amplitude * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate)


def peak_frequency(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("fmt", "rate", "channels"),
    [
        ("wav", 8000, 1),
        ("wav", 16000, 1),
        ("wav", 44100, 2),
        ("flac", 44100, 1),
        ("flac", 16000, 2),
        ("flac", 8000, 2),
        ("ogg", 44100, 1),
    ],
)
def test_containers_rates_and_channels(tmp_path, fmt, rate, channels):
    left = sine(440.0, 1.0, rate)
    # The right channel is silent: the mono mix must be the average (half the amplitude), not the first
    # channel.
    data = np.stack([left, np.zeros_like(left)], axis=1) if channels == 2 else left
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, data, rate)
    wave = load_audio(path, 16000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 16000) <= 1
    assert peak_frequency(wave, 16000) == pytest.approx(440.0, abs=2.0)
    expected_peak = 0.5 / channels
    assert np.abs(wave[2000:-2000]).max() == pytest.approx(expected_peak, rel=0.05)


def test_bytes_and_audio_dicts_decode_like_paths(tmp_path):
    path = tmp_path / "a.flac"
    sf.write(path, sine(1000.0, 0.5, 22050), 22050)
    from_path = load_audio(str(path), 16000)
    np.testing.assert_array_equal(load_audio(path.read_bytes(), 16000), from_path)
    np.testing.assert_array_equal(
        load_audio({"bytes": path.read_bytes(), "path": "x.flac"}, 16000), from_path
    )
    np.testing.assert_array_equal(load_audio({"bytes": None, "path": str(path)}, 16000), from_path)
    decoded = load_audio({"array": sine(1000.0, 0.5, 22050), "sampling_rate": 22050}, 8000)
    assert len(decoded) == 4000 and peak_frequency(decoded, 8000) == pytest.approx(1000.0, abs=4.0)
    stereo = load_audio(
        {"array": np.stack([sine(500, 0.5, 8000), sine(500, 0.5, 8000)]), "sampling_rate": 8000}, 8000
    )
    assert stereo.shape == (4000,)


def test_center_and_random_crops(tmp_path):
    rate = 8000
    ramp = np.linspace(-0.9, 0.9, 3 * rate)  # a ramp: the first kept sample tells where the window starts
    path = tmp_path / "ramp.wav"
    sf.write(path, ramp, rate, subtype="FLOAT")
    centre = load_audio(path, rate, max_duration_s=1.0)
    np.testing.assert_allclose(centre, ramp[rate : 2 * rate], atol=1e-6)
    crops = [load_audio(path, rate, max_duration_s=1.0, rng=np.random.default_rng(s)) for s in range(4)]
    assert all(len(c) == rate for c in crops)
    assert len({round(float(c[0]), 5) for c in crops}) > 1  # random windows differ
    again = load_audio(path, rate, max_duration_s=1.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(again, crops[0])
    assert len(load_audio(path, 16000, max_duration_s=1.0)) == 16000  # exact after resampling too
    assert len(load_audio(path, rate, max_duration_s=10.0)) == 3 * rate  # shorter audio is not padded


def test_empty_zero_length_corrupt_and_missing_files_name_the_file(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    zero = tmp_path / "zero_length.wav"
    sf.write(zero, np.zeros(0), 16000)
    corrupt = tmp_path / "corrupt.flac"
    corrupt.write_bytes(b"fLaC" + bytes(range(256)) * 4)
    for path, reason in [
        (empty, "empty file"),
        (zero, "no samples"),
        (corrupt, "cannot decode"),
        (tmp_path / "missing.wav", "no such file"),
    ]:
        with pytest.raises(AudioDecodeError, match=reason) as info:
            load_audio(path, 16000)
        assert str(path) in str(info.value)
    with pytest.raises(AudioDecodeError, match="empty audio buffer"):
        load_audio(b"", 16000)
    with pytest.raises(AudioDecodeError, match="NaN"):
        load_audio({"array": np.array([0.0, np.nan]), "sampling_rate": 16000, "path": "nan.wav"}, 16000)
