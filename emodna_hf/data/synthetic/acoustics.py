"""The recording chain shared by the source-filter (`source_filter.py`) and espeak-ng (`espeak.py`) families:
the reference speech level, a statistical room, the corpus's background noise, the channel and a spectral shelf.

A speaker's voice comes from each family's own synthesiser; everything between the mouth and the file (room,
noise, channel, level) comes from here, so the two families differ as corpora only where their presets say so.
The flite/festival family (`flite_acoustics.py`) deliberately has its own, built on other assumptions.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

FS = 16000  # the rate the room impulse responses are drawn at (and the source-filter voice is synthesised at)
# Speech level of a neutral utterance; noise levels are set against it, so loud emotions get a better SNR.
REF_RMS = 0.015  # about -36 dBFS: leaves headroom for shouted, peaky angry speech

# Kellet's three-pole approximation of a 1/f (pink) spectrum.
_PINK_B = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
_PINK_A = [1.0, -2.494956002, 2.017265875, -0.522189400]


def room_impulse_response(rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Direct path plus exponentially decaying noise (Schroeder's statistical room model), at `FS`."""
    n = int(rt60 * FS)
    t = np.arange(n) / FS
    tail = rng.normal(size=n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail[: int(0.003 * FS)] = 0.0  # first reflections arrive a few ms after the direct sound
    tail *= 10 ** (-drr_db / 20) / np.sqrt(np.sum(tail**2))
    tail[0] = 1.0
    return tail


def noise_bank(kind: str, sampling_rate: int, snr_db: float, rng: np.random.Generator,
               seconds: float = 20.0) -> np.ndarray:
    """The corpus's background: one long recording that every utterance takes a random stretch of.

    `kind` is "white", "pink" or "babble" (pink noise with syllabic 3-6 Hz level fluctuations: distant talkers);
    its level is `snr_db` below a neutral utterance's (`REF_RMS`).
    """
    n = int(seconds * sampling_rate)
    noise = rng.standard_normal(n)
    if kind != "white":  # pink (1/f power)
        noise = signal.lfilter(_PINK_B, _PINK_A, noise)
        if kind == "babble":
            t = np.arange(n) / sampling_rate
            noise *= 1 + 0.6 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 2 * np.pi))
    noise /= np.sqrt(np.mean(noise**2))
    return (noise * REF_RMS * 10 ** (-snr_db / 20)).astype(np.float32)


def channel(x: np.ndarray, sampling_rate: int, band_hz: tuple[float, float] | None,
            tilt_db_per_octave: float) -> np.ndarray:
    """The microphone and line: an optional band-pass (`band_hz`, e.g. telephone 300-3400 Hz), then an EQ tilt of
    `tilt_db_per_octave` above 1 kHz (microphone or codec colouring) as one shelf over the speech band."""
    sr = sampling_rate
    if band_hz is not None:
        x = signal.sosfilt(signal.butter(4, band_hz, "bandpass", fs=sr, output="sos"), x)
    if tilt_db_per_octave:
        x = shelf(x, sr, tilt_db_per_octave * np.log2(min(sr / 2, 8000) / 1000))
    return x


def shelf(x: np.ndarray, sr: int, db: float) -> np.ndarray:
    """A first-order shelf: `db` more (or less) level well above 1 kHz than below (vocal effort, EQ)."""
    g = 10 ** (db / 20)
    b, a = signal.butter(1, 1000, "lowpass", fs=sr)
    return g * x + (1 - g) * signal.lfilter(b, a, x)


def active_rms(x: np.ndarray, sr: int) -> float:
    """RMS over the 10 ms frames within 35 dB of the loudest: the speech level, pauses excluded."""
    hop = sr // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    power = np.mean(frames**2, axis=1)
    return float(np.sqrt(np.mean(power[power > power.max() * 10**-3.5])))
