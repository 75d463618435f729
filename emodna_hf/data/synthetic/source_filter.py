"""Deterministic synthetic emotional-speech corpora with realistic cross-corpus shift.

Every utterance is made by source-filter synthesis: a glottal pulse train at a time-varying f0 (with jitter,
shimmer and aspiration noise, spectrally tilted by a voice-quality low-pass) is cut into syllables, each
syllable's vowel passes through a cascade of formant resonators scaled by the speaker's vocal-tract length,
and noise bursts stand in for consonants. Emotions change what acted emotions change (Banse & Scherer 1996;
Juslin & Laukka 2003): f0 level, range and contour slope, syllable rate, loudness and stress dynamics,
spectral tilt, breathiness and jitter, and formant positions (mouth opening, smiling).

Corpora (presets) differ as real ones do: speaker population (pitch and vocal-tract length), speaking rate,
expressiveness, room (synthetic exponential-decay reverberation), additive noise, channel (telephone band,
EQ tilt) and sampling rate. Several of these survive per-utterance cepstral mean normalisation: pitch,
expressiveness, tempo, noise and reverberation are not a constant offset of log-mel frames. The room, noise and
channel are the recording chain of `acoustics.py`, shared with the espeak-ng family.
"""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
from datasets import Dataset
from scipy import signal

from ..storage import cached_generation
from . import acoustics
from .acoustics import FS as _FS
from .acoustics import REF_RMS as _REF_RMS
from .corpus import EMOTIONS, corpus_dataset, sized_preset, source_crc

# Peterson & Barney (1952) adult-male averages: F1, F2, F3 (Hz); F4 and F5 are kept fixed-ish per speaker.
_VOWELS = np.array(
    [
        [730, 1090, 2440],
        [270, 2290, 3010],
        [300, 870, 2240],
        [530, 1840, 2480],
        [570, 840, 2410],
        [660, 1720, 2410],
    ],
    dtype=float,
)


@dataclass(frozen=True)
class EmotionProfile:
    """How an emotion departs from neutral speech at expressiveness 1 (neutral is all zeros / ones)."""

    f0_st: float  # mean f0 shift, semitones
    f0_range: float  # factor on pitch excursions (accents, drift)
    slope_st: float  # contour slope, semitones per second (negative = falling)
    rate: float  # factor on syllable rate
    gain_db: float  # loudness
    dynamics: float  # factor on syllable-to-syllable loudness contrast
    tilt: float  # factor on the voice-quality low-pass corner: > 1 = tenser voice, richer harmonics
    breath: float  # factor on aspiration noise
    jitter: float  # factor on period-to-period f0 perturbation
    formant: float  # factor on F1/F2 (wider mouth opening and smiling raise them)


EMOTION_PROFILES: dict[str, EmotionProfile] = {
    "angry": EmotionProfile(3.5, 1.3, -8.0, 1.25, 9.0, 1.8, 3.0, 0.6, 1.3, 1.06),
    "happy": EmotionProfile(6.0, 2.0, 4.0, 1.12, 4.0, 1.3, 1.2, 0.8, 1.0, 1.1),
    "neutral": EmotionProfile(0.0, 1.0, -2.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0),
    "sad": EmotionProfile(-2.5, 0.45, -3.0, 0.72, -6.0, 0.55, 0.5, 2.2, 1.7, 0.96),
}


@dataclass(frozen=True)
class SyntheticPreset:
    """A synthetic corpus: who speaks, how expressively, and through which room and channel."""

    name: str
    labels: tuple[str, str, str, str]  # the corpus's own raw label strings for angry, happy, neutral, sad
    sampling_rate: int
    n_speakers: int
    n_per_class_per_speaker: int
    female_fraction: float
    male_f0: tuple[float, float]  # mean, sd of speakers' f0 (Hz)
    female_f0: tuple[float, float]
    vtl_scale: tuple[float, float]  # extra formant scale range (both sexes) on top of the sex difference
    syllable_rate: float  # neutral syllables per second (language / speaking style)
    expressiveness: float  # how strongly the emotions are acted (1 = the profiles as written)
    snr_db: float  # noise level against a neutral utterance's level
    noise: str  # "white", "pink" or "babble" (pink noise with a syllabic envelope)
    rt60_s: float | None = None  # reverberation time of a synthetic room; None = dry
    drr_db: float = 0.0  # direct-to-reverberant ratio
    band_hz: tuple[float, float] | None = None  # channel band-pass, e.g. telephone 300-3400 Hz
    tilt_db_per_octave: float = 0.0  # channel EQ above 1 kHz (microphone / codec colouring)


PRESETS: dict[str, SyntheticPreset] = {
    # Studio-acted, balanced sexes, clearly expressive, clean, 16 kHz (EmoDB-like).
    "synth-a": SyntheticPreset(
        name="synth-a",
        labels=("angry", "happy", "neutral", "sad"),
        sampling_rate=16000,
        n_speakers=10,
        n_per_class_per_speaker=10,
        female_fraction=0.5,
        male_f0=(115.0, 12.0),
        female_f0=(205.0, 18.0),
        vtl_scale=(0.97, 1.03),
        syllable_rate=4.5,
        expressiveness=0.9,
        snr_db=30.0,
        noise="white",
    ),
    # Telephone, mostly high-pitched speakers, faster and least expressive, line noise at 20 dB SNR, 8 kHz
    # (call-centre-like).
    "synth-b": SyntheticPreset(
        name="synth-b",
        labels=("ANG", "HAP", "NEU", "SAD"),
        sampling_rate=8000,
        n_speakers=8,
        n_per_class_per_speaker=12,
        female_fraction=0.875,
        male_f0=(135.0, 12.0),
        female_f0=(235.0, 20.0),
        vtl_scale=(1.02, 1.1),
        syllable_rate=5.3,
        expressiveness=0.8,
        snr_db=20.0,
        noise="pink",
        band_hz=(300.0, 3400.0),
    ),
    # Far-field in a reverberant room, mostly low-pitched speakers, slower, most strongly acted, babble at
    # 15 dB SNR, dull microphone, 44.1 kHz.
    "synth-c": SyntheticPreset(
        name="synth-c",
        labels=("A", "H", "N", "S"),
        sampling_rate=44100,
        n_speakers=10,
        n_per_class_per_speaker=10,
        female_fraction=0.2,
        male_f0=(100.0, 10.0),
        female_f0=(190.0, 15.0),
        vtl_scale=(0.92, 0.99),
        syllable_rate=3.9,
        expressiveness=1.0,
        snr_db=15.0,
        noise="babble",
        rt60_s=0.6,
        drr_db=0.0,
        tilt_db_per_octave=-3.0,
    ),
}

_SOURCE_CRC = source_crc(__file__, acoustics.__file__)


@dataclass(frozen=True)
class _Speaker:
    f0: float
    formant_scale: float
    rate: float
    tilt_hz: float
    breath: float
    jitter: float
    gain_db: float
    expressiveness: float
    room_ir: np.ndarray | None


def make_source_filter_corpus(
    preset: str | SyntheticPreset,
    seed: int = 0,
    n_per_class_per_speaker: int | None = None,
    n_speakers: int | None = None,
    cache_dir: Path | None = None,
) -> Dataset:
    """Generate a source-filter corpus as a `datasets.Dataset`.

    Columns: `audio` ({"array": float32 mono, "sampling_rate": int}), `emotion` (the preset's raw label
    strings, see `PRESETS[...].labels`), `speaker` ("spk00", ...; `load_corpus` prefixes the corpus name)
    and `utt_id` (unique across presets). The same preset, seed and sizes always give identical arrays;
    every utterance has its own random stream, so changing the sizes keeps the utterances both sizes share.
    With a `cache_dir`, the corpus is saved there and read back next time (`storage.cached_generation`).
    `emodna_hf.data.synthetic.make_synthetic_corpus` is the front door that knows every family's presets.
    """
    preset = sized_preset(preset, PRESETS, "source-filter", n_per_class_per_speaker, n_speakers)
    # The content is a function of this code, the emotion profiles, the preset and the seed: fingerprinting
    # those instead of hashing every sample keeps `Dataset.map` caching correct and skips a slow pass.
    fingerprint = f"{_SOURCE_CRC:08x}{zlib.crc32(repr((EMOTION_PROFILES, preset, seed)).encode()):08x}"

    def generate() -> Dataset:
        key = [seed, zlib.crc32(preset.name.encode())]
        noise = acoustics.noise_bank(preset.noise, preset.sampling_rate, preset.snr_db,
                                      np.random.default_rng([*key, 0]))
        arrays, emotions, speakers, utt_ids = [], [], [], []
        for s in range(preset.n_speakers):
            speaker = _make_speaker(preset, np.random.default_rng([*key, 1, s]))
            for e, emotion in enumerate(EMOTIONS):
                for k in range(preset.n_per_class_per_speaker):
                    rng = np.random.default_rng([*key, 2, s, e, k])
                    arrays.append(_utterance(preset, speaker, emotion, noise, rng))
                    emotions.append(preset.labels[e])
                    speakers.append(f"spk{s:02d}")
                    utt_ids.append(f"{preset.name}-spk{s:02d}-{emotion}-{k:03d}")
        return corpus_dataset(arrays, emotions, speakers, utt_ids, preset.sampling_rate, preset.name,
                              fingerprint=fingerprint)

    return cached_generation(fingerprint, cache_dir, generate)


def _make_speaker(preset: SyntheticPreset, rng: np.random.Generator) -> _Speaker:
    female = rng.random() < preset.female_fraction
    mean, sd = preset.female_f0 if female else preset.male_f0
    room_ir = None
    if preset.rt60_s is not None:  # each speaker stands at their own place in the room
        room_ir = acoustics.room_impulse_response(preset.rt60_s, preset.drr_db, rng)
    return _Speaker(
        f0=max(60.0, rng.normal(mean, sd)),
        formant_scale=(1.17 if female else 1.0) * rng.uniform(*preset.vtl_scale),
        rate=preset.syllable_rate * rng.uniform(0.9, 1.1),
        tilt_hz=rng.uniform(330.0, 480.0),
        breath=rng.uniform(0.08, 0.18),
        jitter=rng.uniform(0.006, 0.012),
        gain_db=rng.uniform(-2.0, 2.0),
        expressiveness=preset.expressiveness * rng.uniform(0.85, 1.15),
        room_ir=room_ir,
    )


def _scaled(profile: EmotionProfile, amount: float) -> EmotionProfile:
    """Move a profile towards neutral: additive fields scale linearly, multiplicative ones in log domain."""
    neutral = EMOTION_PROFILES["neutral"]
    values = {}
    for field in dataclasses.fields(EmotionProfile):
        v, n = getattr(profile, field.name), getattr(neutral, field.name)
        values[field.name] = (
            n + amount * (v - n) if field.name in ("f0_st", "slope_st", "gain_db") else v**amount
        )
    return EmotionProfile(**values)


def _utterance(
    preset: SyntheticPreset, spk: _Speaker, emotion: str, noise: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    emo = _scaled(EMOTION_PROFILES[emotion], spk.expressiveness)
    speech, voiced = _speech(spk, emo, rng)
    gain = _REF_RMS * 10 ** ((emo.gain_db + spk.gain_db + rng.normal(0.0, 1.0)) / 20)
    speech *= gain / (np.sqrt(np.mean(speech[voiced] ** 2)) + 1e-9)
    if spk.room_ir is not None:
        speech = signal.fftconvolve(speech, spk.room_ir)[: len(speech)]
    if preset.sampling_rate != _FS:
        speech = soxr.resample(speech, _FS, preset.sampling_rate)
    start = rng.integers(len(noise) - len(speech))
    speech = speech + noise[start : start + len(speech)]
    speech = acoustics.channel(speech, preset.sampling_rate, preset.band_hz, preset.tilt_db_per_octave)
    peak = np.abs(speech).max()
    if (
        peak > 0.99
    ):  # the rare utterance that would clip gets a lower recording gain, as a sound engineer would
        speech *= 0.99 / peak
    return speech.astype(np.float32)


def _speech(spk: _Speaker, emo: EmotionProfile, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One dry utterance at `_FS` and its voiced-sample mask."""
    # Syllable timing: the same "sentence" (syllable count) is read faster or slower depending on the emotion.
    rate = spk.rate * emo.rate * rng.uniform(0.92, 1.08)
    n_syl = int(rng.integers(5, 12))
    syl_dur = rng.uniform(0.75, 1.25, n_syl) / rate
    pauses = np.where(rng.random(n_syl) < 0.12, rng.uniform(0.08, 0.2, n_syl), 0.0)
    starts = rng.uniform(0.05, 0.15) + np.concatenate([[0.0], np.cumsum(syl_dur + pauses)[:-1]])
    keep = starts + syl_dur <= 2.4  # utterances stay within 1.0-2.5 s
    starts, syl_dur = starts[keep], syl_dur[keep]
    total = max(1.0, starts[-1] + syl_dur[-1] + rng.uniform(0.05, 0.1))
    n = int(total * _FS)

    # f0 contour in semitones at a 5 ms control rate: level, slope, accents on stressed syllables, drift.
    tc = np.arange(0.0, total + 0.005, 0.005)
    centers = starts + 0.6 * syl_dur
    stressed = rng.random(len(starts)) < 0.3
    stressed[rng.integers(len(starts))] = True
    accents = (stressed * rng.uniform(1.5, 3.5, len(starts))) @ np.exp(
        -0.5 * ((tc[None, :] - centers[:, None]) / (0.35 * syl_dur[:, None])) ** 2
    )
    drift = np.interp(tc, np.linspace(0, total, 8), rng.normal(0.0, 0.8, 8))
    st = emo.f0_st + rng.normal(0.0, 0.7) + emo.slope_st * (tc - total / 2) + emo.f0_range * (accents + drift)
    # Jitter: a period-to-period frequency perturbation, held for one control step (about one period).
    st += 12 * np.log2(1 + spk.jitter * emo.jitter * rng.normal(size=len(tc)))
    # Glottal phase (in periods) integrated at the control rate and interpolated: f0 is constant per step.
    phase_c = np.concatenate([[0.0], np.cumsum(spk.f0 * 2 ** (st[:-1] / 12) * 0.005)])
    phase = np.interp(np.arange(n) / _FS, tc, phase_c)
    pulse_at = np.flatnonzero(np.diff(np.floor(phase), prepend=0.0) > 0)
    source = np.zeros(n)
    source[pulse_at] = 1 + 0.08 * emo.jitter * rng.normal(size=len(pulse_at))  # shimmer

    # Voice quality: a two-pole low-pass sets the source's spectral tilt; a first difference is lip radiation.
    a = np.exp(-2 * np.pi * spk.tilt_hz * emo.tilt / _FS)
    source = signal.lfilter([(1 - a) ** 2], [1, -2 * a, a * a], source)
    source = np.diff(source, prepend=0.0)
    source /= np.sqrt(np.mean(source**2)) + 1e-12
    # Aspiration noise during the open phase of each glottal cycle (breathy voice).
    open_phase = (phase % 1.0) < 0.5
    source += spk.breath * emo.breath * _noise_slice(_ASPIRATION, n, rng) * open_phase

    # Syllable envelopes: consonant onset (noise) then a voiced nucleus, with stress-dependent loudness.
    amp = np.exp(emo.dynamics * (0.35 * rng.normal(size=len(starts)) + 0.5 * stressed))
    out = np.zeros(n)
    voiced = np.zeros(n, dtype=bool)
    for i, (s0, d) in enumerate(zip(starts, syl_dur, strict=True)):
        c0, v0, v1 = int(s0 * _FS), int((s0 + 0.25 * d) * _FS), min(n, int((s0 + d) * _FS))
        vowel = _VOWELS[rng.integers(len(_VOWELS))] * spk.formant_scale
        vowel[:2] *= emo.formant
        seg = source[v0:v1] * np.hanning(v1 - v0) ** 0.5 * amp[i]
        out[v0:v1] += signal.sosfilt(_formant_sos(vowel, spk.formant_scale), seg)
        voiced[v0:v1] = True
        burst = _noise_slice(_FRICATIVES[rng.integers(len(_FRICATIVES))], v0 - c0, rng) * np.hanning(v0 - c0)
        out[c0:v0] += 0.25 * amp[i] * burst
    return out, voiced


def _resonator(freq: float, bw: float) -> list[float]:
    """A Klatt resonator (unity gain at DC) as one second-order section."""
    r = np.exp(-np.pi * bw / _FS)
    c1, c2 = 2 * r * np.cos(2 * np.pi * freq / _FS), -r * r
    return [1 - c1 - c2, 0.0, 0.0, 1.0, -c1, -c2]


def _formant_sos(f123: np.ndarray, scale: float) -> np.ndarray:
    freqs = [*f123, 3500 * scale, 4500 * scale]
    return np.array([_resonator(f, 50 + 0.06 * f) for f in freqs if f < 0.45 * _FS])


def _noise_slice(bank: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    start = rng.integers(len(bank) - n)
    return bank[start : start + n]


# Noise sources computed once (fixed seed) and sliced at random offsets: drawing and filtering fresh noise for
# every syllable dominated the generation time. Aspiration is differentiated white noise (high-frequency
# tilted);
# consonants are band-passed noise with centres from 2.5 to 6 kHz.
_BANK_RNG = np.random.default_rng(20240601)
_ASPIRATION = np.diff(_BANK_RNG.standard_normal(4 * _FS + 1))
_FRICATIVES = [
    signal.sosfilt(
        signal.butter(2, [c / 1.6, min(c * 1.3, 0.45 * _FS)], "bandpass", fs=_FS, output="sos"),
        _BANK_RNG.standard_normal(_FS),
    )
    for c in np.linspace(2500, 6000, 8)
]
