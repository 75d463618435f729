"""Acoustics of the flite/festival corpus family (`flite.py`): voice, emotion style, room, noise, channel.

Written independently of `acoustics.py`, `source_filter.py` and `espeak.py` (nothing is imported from them) and on other
assumptions, so that a default confirmed on this family was not fitted to their artefacts:

* emotion is a *style* applied to a neutral text-to-speech reading by re-synthesis with the WORLD vocoder
  (`pyworld`): log-f0 level, range, terminal movement, tremor and jitter, formant warping (vocal-tract length,
  smiling), spectral tension (envelope tilt above 1 kHz), breathiness (aperiodicity) and stress accents. The
  same label can be given different styles (hot or cold anger, elated or content happiness, depressed or
  tearful sadness);
* rooms are image-source shoeboxes (`pyroomacoustics`), not statistical noise tails;
* background noise is a recording-like mixture (reversed TTS babble, hum, HVAC rumble, hiss), added at a fixed
  level, so that louder speech has a higher SNR as in a real room;
* channels include gain control (slow AGC that levels loudness, broadcast compression) and real codecs run by
  `sox` (GSM 06.10, AMR-NB, MP3, mu-law).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import subprocess
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

_FRAME_MS = 10.0  # WORLD's frame period: 5 ms doubles the generation time for no audible gain
REF_DBFS = -30.0  # active speech level of a neutral utterance: headroom for shouted speech (+9 dB, 20 dB crest)


@dataclass(frozen=True)
class Style:
    """How one way of expressing an emotion departs from a neutral reading, at intensity 1."""

    f0_st: float = 0.0  # level shift of f0, semitones
    range: float = 1.0  # factor on log-f0 excursions around the utterance's median
    tempo: float = 1.0  # duration stretch given to the synthesiser (> 1 = slower)
    level_db: float = 0.0  # loudness
    tension_db: float = 0.0  # envelope tilt above 1 kHz, dB per octave (> 0 = pressed, tense voice)
    breath: float = 0.0  # aperiodicity raise, 0..1 (> 0 = breathy, whispery voice)
    jitter_st: float = 0.0  # frame-to-frame f0 perturbation (sd, semitones): irregular phonation
    tremor_st: float = 0.0  # depth of a 5-7 Hz f0 tremor (semitones): a crying voice
    final_st: float = 0.0  # terminal f0 movement over the last 400 ms (< 0 = emphatic fall)
    formant: float = 1.0  # warp of the spectral envelope's frequency axis (> 1 = smiling, spread lips)
    accent_db: float = 0.0  # depth of syllable-rate loudness accents (emphatic stress)


_FACTORS = ("range", "tempo", "formant")  # scaled in the log domain; the other fields linearly


def scaled(style: Style, amount: float) -> Style:
    """`style` at intensity `amount` (0 = neutral reading, 1 = the style as written, > 1 = exaggerated)."""
    values = dataclasses.asdict(style)
    return Style(**{k: v**amount if k in _FACTORS else v * amount for k, v in values.items()})


def restyle(wave: np.ndarray, fs: int, style: Style, f0_factor: float, warp: float, breath: float,
            tension_db: float, rng: np.random.Generator) -> np.ndarray:
    """Re-synthesise a neutral reading with a speaker's voice (f0 factor, vocal-tract warp, breathiness,
    tension) and an emotion style. WORLD analysis (DIO + StoneMask, CheapTrick, D4C) at 10 ms frames; `fs` must
    be at least 16 kHz (below that D4C estimates no aperiodicity band and returns uninitialised memory)."""
    if fs < 16000:
        raise ValueError(f"restyle needs a rate of at least 16 kHz (WORLD's D4C), got {fs} Hz")
    pyworld = _pyworld()
    x = np.ascontiguousarray(wave, dtype=np.float64)
    f0, times = pyworld.dio(x, fs, f0_floor=55.0, f0_ceil=500.0, frame_period=_FRAME_MS)
    f0 = pyworld.stonemask(x, f0, times, fs)
    # CheapTrick and D4C add a tiny safeguard noise drawn from WORLD's global generator, which only synthesis
    # reseeds: without a reseed an utterance would depend on the ones analysed before it (and a corpus on its size).
    pyworld.synthesize(np.full(3, 100.0), np.ones((3, 513)), np.full((3, 513), 0.5), 16000, _FRAME_MS)
    sp = pyworld.cheaptrick(x, f0, times, fs)
    ap = pyworld.d4c(x, f0, times, fs)
    voiced = f0 > 0
    if voiced.any():
        log_f0 = np.log2(np.where(voiced, f0, 1.0))
        median = np.median(log_f0[voiced])
        tail = np.clip((times - (times[voiced][-1] - 0.4)) / 0.4, 0.0, 1.0)
        tremor = np.sin(2 * np.pi * rng.uniform(5.0, 7.0) * times + rng.uniform(0, 2 * np.pi))
        new = (median + np.log2(f0_factor) + style.f0_st / 12 + style.range * (log_f0 - median)
               + (style.final_st * tail + style.tremor_st * tremor
                  + style.jitter_st * rng.standard_normal(len(f0))) / 12)
        f0 = np.where(voiced, np.clip(2**new, 50.0, 700.0), 0.0)
    freqs = np.linspace(0.0, fs / 2, sp.shape[1])
    # Vocal-tract length and lip spreading move every formant by the same factor: warp the frequency axis.
    alpha = warp * style.formant
    sp = np.stack([np.interp(freqs / alpha, freqs, row) for row in sp])
    # Tension: a pressed voice has more energy above 1 kHz (a flatter source spectrum), a lax one less.
    tilt_db = (tension_db + style.tension_db) * np.log2(np.maximum(freqs, 1000.0) / 1000.0)
    # Accents: loudness bumps at a syllabic rate (3-5 Hz) with random phases.
    t_acc = np.linspace(0.0, times[-1] + 1e-3, max(4, int(times[-1] * 4)))
    accents = style.accent_db * np.interp(times, t_acc, rng.uniform(-0.5, 1.0, len(t_acc)))
    sp = sp * 10 ** ((tilt_db[None, :] + accents[:, None]) / 10)
    openness = float(np.clip(breath + style.breath, 0.0, 0.95))
    if openness > 0:  # more aperiodic energy at every frequency, most where it is already noisy
        ap = np.where(voiced[:, None], np.minimum(ap ** (1 - openness), 1.0), ap)
    return pyworld.synthesize(f0, np.ascontiguousarray(sp), np.ascontiguousarray(ap), fs, _FRAME_MS)


def _pyworld():
    """pyworld, imported without its pkg_resources deprecation warning (pyworld 0.3.5 imports it for its
    version string)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        import pyworld
    return pyworld


def active_level_db(x: np.ndarray, fs: int) -> float:
    """Level (dBFS) over 10 ms frames within 35 dB of the loudest: speech, not pauses."""
    hop = max(1, fs // 100)
    power = np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1) + 1e-20
    return float(10 * np.log10(np.mean(power[power > power.max() * 10**-3.5])))


def set_level(x: np.ndarray, fs: int, level_db: float) -> np.ndarray:
    """`x` scaled so that its active level is `REF_DBFS + level_db`."""
    return x * 10 ** ((REF_DBFS + level_db - active_level_db(x, fs)) / 20)


def room_impulse_response(fs: int, rt60: float, distance: float, rng: np.random.Generator) -> np.ndarray:
    """An image-source shoebox response (pyroomacoustics) with a talker `distance` m from the microphone, at a
    random place in a room about 6 x 4.5 x 2.8 m."""
    import pyroomacoustics as pra

    dim = np.array([rng.uniform(5.0, 7.0), rng.uniform(3.8, 5.2), rng.uniform(2.6, 3.1)])
    absorption, max_order = pra.inverse_sabine(rt60, dim)
    room = pra.ShoeBox(dim, fs=fs, materials=pra.Material(absorption), max_order=min(max_order, 60),
                       air_absorption=False, use_rand_ism=False)
    mic = np.array([rng.uniform(1.0, dim[0] - 1.0), rng.uniform(1.0, dim[1] - 1.0), 1.2])
    angle = rng.uniform(0, 2 * np.pi)
    source = mic + [distance * np.cos(angle), distance * np.sin(angle), rng.uniform(0.2, 0.5)]
    source[:2] = np.clip(source[:2], 0.3, dim[:2] - 0.3)
    room.add_source(source)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(rir)))
    rir = rir[max(0, direct - 20):]  # drop the propagation delay
    return rir / np.sqrt(np.sum(rir**2))  # unit energy: the room changes the timbre and the tail, not the level


def noise_bank(kind: str, fs: int, seconds: float, babble: np.ndarray | None,
               rng: np.random.Generator) -> np.ndarray:
    """A corpus's background at unit RMS: `"babble"` (time-reversed speech of other talkers, given as
    `babble` at `fs`, plus a little rumble), `"office"` (HVAC rumble + fan hum + hiss), `"hum"` (mains
    harmonics + hiss) or `"hiss"` (white microphone self-noise)."""
    n = int(seconds * fs)
    t = np.arange(n) / fs
    white = rng.standard_normal(n)
    if kind == "hiss":
        noise = white
    elif kind == "hum":
        mains = rng.choice([50.0, 60.0])
        noise = sum(np.sin(2 * np.pi * mains * h * t + rng.uniform(0, 6.3)) / h for h in (1, 2, 3, 5, 7))
        noise = noise / np.std(noise) + 0.5 * white
    elif kind in ("office", "babble"):
        rumble = signal.sosfilt(signal.butter(2, 250.0, fs=fs, output="sos"), white)
        rumble /= np.std(rumble)
        fan = np.sin(2 * np.pi * rng.uniform(90, 140) * t) * (1 + 0.3 * np.sin(2 * np.pi * 0.7 * t))
        noise = rumble + 0.3 * fan + 0.15 * white
        if kind == "babble":
            if babble is None or len(babble) == 0:
                raise ValueError("babble noise needs speech to reverse")
            talk = np.resize(babble[::-1], n)
            noise = 0.4 * noise / np.std(noise) + talk / (np.std(talk) + 1e-12)
    else:
        raise ValueError(f"Unknown noise kind {kind!r}; expected babble, office, hum or hiss")
    return noise / (np.std(noise) + 1e-12)


def gain_control(x: np.ndarray, fs: int, kind: str | None) -> np.ndarray:
    """`"agc"`: a slow automatic gain control (1 s window) that moves speech 70% of the way to the nominal
    level, as telephone front ends do (most of the loudness difference between emotions is gone); `"compressor"`: a
    broadcast compressor (4:1 above -34 dBFS, 5 ms attack, 150 ms release) with 10 dB make-up gain; None: as is."""
    if kind is None:
        return x
    if kind == "agc":
        win = int(fs)
        power = signal.fftconvolve(x**2, np.hanning(win) / np.hanning(win).sum(), mode="same")
        level = 10 * np.log10(power + 1e-12)
        speech = level > level.max() - 30
        gain_db = np.where(speech, np.clip(0.7 * (REF_DBFS - level), -12.0, 12.0), 0.0)
        gain_db = signal.sosfiltfilt(signal.butter(1, 1.0, fs=fs, output="sos"), gain_db)
        return x * 10 ** (gain_db / 20)
    if kind == "compressor":
        envelope_db = 10 * np.log10(_smooth_power(x, fs, attack=0.005, release=0.15) + 1e-12)
        over = np.maximum(envelope_db - (REF_DBFS - 4.0), 0.0)
        return x * 10 ** ((-over * (1 - 1 / 4) + 10.0) / 20)
    raise ValueError(f"Unknown gain control {kind!r}; expected 'agc', 'compressor' or None")


def _smooth_power(x: np.ndarray, fs: int, attack: float, release: float) -> np.ndarray:
    """Peak-following power envelope (1 ms frames) with attack and release time constants, and a look-ahead
    of one attack time, as broadcast processors have: onsets are caught before they pass."""
    hop = max(1, fs // 1000)
    frames = np.mean(np.pad(x, (0, -len(x) % hop)).reshape(-1, hop) ** 2, axis=1)
    frames = ndimage.maximum_filter1d(frames, size=2 * round(attack * 1000) + 1)
    a_att, a_rel = np.exp(-1e-3 / attack), np.exp(-1e-3 / release)
    env, e = np.empty_like(frames), 0.0
    for i, p in enumerate(frames):
        e = a_att * e + (1 - a_att) * p if p > e else a_rel * e + (1 - a_rel) * p
        env[i] = e
    return np.repeat(env, hop)[: len(x)]


def band_limit(x: np.ndarray, fs: int, band_hz: tuple[float, float] | None) -> np.ndarray:
    if band_hz is None:
        return x
    low, high = band_hz[0], min(band_hz[1], 0.45 * fs)
    return signal.sosfiltfilt(signal.butter(6, [low, high], "bandpass", fs=fs, output="sos"), x)


# sox formats: (file type, options, native rate or None)
_CODECS = {
    "gsm": ("gsm", [], 8000),
    "amr-nb": ("amr-nb", ["-C", "0"], 8000),  # mode 0: 4.75 kbit/s, the lowest
    "mp3": ("mp3", ["-C", "32"], None),  # 32 kbit/s
    "ulaw": ("wav", ["-e", "u-law", "-b", "8"], None),
}


@functools.cache
def sox_path() -> str:
    exe = shutil.which("sox")
    if exe is None:
        raise RuntimeError(
            "This preset's codec runs through sox, which is not on PATH. Install it (Debian/Ubuntu: "
            "`apt-get install sox libsox-fmt-all`)."
        )
    return exe


def codec(x: np.ndarray, fs: int, name: str | None) -> np.ndarray:
    """Encode and decode `x` with a real codec through sox (the result has `x`'s length)."""
    if name is None:
        return x
    if name not in _CODECS:
        raise ValueError(f"Unknown codec {name!r}; expected one of {sorted(_CODECS)}")
    kind, options, rate = _CODECS[name]
    if rate is not None and rate != fs:
        raise ValueError(f"Codec {name} works at {rate} Hz, not {fs} Hz")
    raw = ["-t", "f32", "-r", str(fs), "-c", "1"]
    peak = max(float(np.abs(x).max()), 1e-9)
    scale = 0.9 / peak if peak > 0.9 else 1.0  # the codec's integer input must not clip
    encoded = subprocess.run([sox_path(), "-D", *raw, "-", "-t", kind, *options, "-"],
                             input=(x * scale).astype("<f4").tobytes(), capture_output=True, check=True).stdout
    decoded = subprocess.run([sox_path(), "-D", "-t", kind, "-", *raw, "-"], input=encoded,
                             capture_output=True, check=True).stdout
    y = np.frombuffer(decoded, dtype="<f4").astype(np.float64) / scale
    if name == "mp3":  # LAME's encoder delay plus the decoder's: 1105 samples at 22.05-48 kHz
        y = y[min(1105, len(y)):]
    return np.pad(y[: len(x)], (0, max(0, len(x) - len(y))))
