"""Deterministic emotional-speech corpora from the espeak-ng formant synthesiser.

A second, independent generator next to `synthetic.py`: real words, real phonology and espeak-ng's own
intonation model, so defaults tuned on the development set are not fitted to one generator's artefacts.
Each utterance is one `espeak-ng --stdout` call (no shell) on a sentence read by a speaker (language voice +
variant, own base pitch and rate). Emotions change what acted emotions change (Banse & Scherer 1996):
angry = louder, faster, higher and wider pitch, tenser (brighter) voice; happy = higher pitch, widest range,
slightly faster; sad = slower, lower, narrow range, quieter, duller, longer pauses between words. espeak-ng
1.51 renders base pitch (`-p`), rate (`-s`) and word gaps (`-g`); the pitch range comes from SSML
`<prosody range=...>` (`-m`), which it honours. Loudness and voice tension are applied to the waveform
afterwards: espeak's `-a` is a plain linear gain that clips above about 60, and it has no spectral-tilt
option. Per-utterance random departures make the classes overlap as they do in acted corpora.

Room, noise, channel and level are the recording chain of `acoustics.py`, shared with the source-filter family, so the presets differ as
real corpora do: language, speaker population, speaking rate, expressiveness, label priors, room, noise,
channel and sampling rate. Requires the `espeak-ng` binary (Debian/Ubuntu: `apt-get install espeak-ng`);
nothing is downloaded at run time. The same preset, seed, sizes and espeak-ng version give identical arrays.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import shutil
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
import soundfile as sf
import soxr
from datasets import Dataset
from scipy import signal

from ..storage import cached_generation
from . import acoustics
from .acoustics import FS as _FS
from .acoustics import REF_RMS as _REF_RMS
from .corpus import EMOTIONS, class_counts, corpus_dataset, sized_preset, source_crc

_ESPEAK_FS = 22050  # espeak-ng's native output rate


@dataclass(frozen=True)
class EspeakEmotion:
    """How an emotion departs from the speaker's neutral reading at expressiveness 1."""

    pitch: float  # added to espeak's base pitch `-p` (0-99; about 5 units per semitone near the middle)
    range: float  # factor on the pitch range (SSML `<prosody range>`)
    rate: float  # factor on words per minute
    gain_db: float  # loudness
    gap: float  # extra pause between words, espeak `-g` units (10 ms at the default speed)
    tilt_db: float  # high-frequency shelf: > 0 = tenser, brighter voice (vocal effort)


ESPEAK_EMOTIONS: dict[str, EspeakEmotion] = {
    "angry": EspeakEmotion(12.0, 1.6, 1.2, 8.0, 0.0, 5.0),
    "happy": EspeakEmotion(16.0, 2.1, 1.1, 3.0, 0.0, 2.0),
    "neutral": EspeakEmotion(0.0, 1.0, 1.0, 0.0, 0.0, 0.0),
    "sad": EspeakEmotion(-10.0, 0.45, 0.75, -6.0, 4.0, -4.0),
}
_ADDITIVE = ("pitch", "gain_db", "gap", "tilt_db")


@dataclass(frozen=True)
class EspeakPreset:
    """An espeak-ng corpus. The room/noise/channel fields mean what they mean in `SyntheticPreset`."""

    name: str
    labels: tuple[str, str, str, str]  # raw label strings for angry, happy, neutral, sad
    language: str  # key of `SENTENCES`
    # espeak-ng voice+variant per speaker, cycled when there are more speakers. Name voices by file ("en",
    # "en-us"): espeak-ng 1.51 drops the variant of a language alias such as "en-gb+f2".
    voices: tuple[str, ...]
    priors: tuple[float, float, float, float]  # class shares, angry, happy, neutral, sad
    sampling_rate: int
    n_speakers: int
    n_per_class_per_speaker: int  # the mean over classes: a speaker reads 4 * this many utterances
    words_per_minute: float  # neutral speaking rate
    expressiveness: float
    snr_db: float
    noise: str  # "white", "pink" or "babble"
    rt60_s: float | None = None
    drr_db: float = 0.0
    band_hz: tuple[float, float] | None = None
    tilt_db_per_octave: float = 0.0


ESPEAK_PRESETS: dict[str, EspeakPreset] = {
    # Studio-acted English, balanced sexes and classes, clean, 16 kHz.
    "synth-en": EspeakPreset(
        name="synth-en",
        labels=("angry", "happy", "neutral", "sad"),
        language="en",
        voices=(
            "en-us+m1", "en+f2", "en-us+m3", "en-gb-x-rp+f4",
            "en+m5", "en-us+f1", "en-gb-scotland+m7", "en+f5",
        ),
        priors=(0.25, 0.25, 0.25, 0.25),
        sampling_rate=16000,
        n_speakers=8,
        n_per_class_per_speaker=10,
        words_per_minute=165.0,
        expressiveness=0.9,
        snr_db=35.0,
        noise="white",
    ),
    # German call-centre-like: telephone band, 8 kHz, line noise, mostly male, fast, least expressive, and
    # imbalanced classes (mostly neutral) as in naturalistic corpora.
    "synth-de": EspeakPreset(
        name="synth-de",
        labels=("ANG", "HAP", "NEU", "SAD"),
        language="de",
        voices=("de+m1", "de+m2", "de+f2", "de+m3", "de+m4", "de+m6"),
        priors=(0.15, 0.2, 0.4, 0.25),
        sampling_rate=8000,
        n_speakers=6,
        n_per_class_per_speaker=12,
        words_per_minute=185.0,
        expressiveness=0.7,
        snr_db=20.0,
        noise="pink",
        band_hz=(300.0, 3400.0),
    ),
    # Spanish (Spain and Latin America), far-field in a reverberant room with babble, mostly female, slower,
    # most strongly acted, dull microphone, 48 kHz.
    "synth-es": EspeakPreset(
        name="synth-es",
        labels=("A", "H", "N", "S"),
        language="es",
        voices=("es+f1", "es-419+f2", "es+f3", "es+m2", "es-419+f4", "es+f5"),
        priors=(0.25, 0.25, 0.25, 0.25),
        sampling_rate=48000,
        n_speakers=6,
        n_per_class_per_speaker=12,
        words_per_minute=150.0,
        expressiveness=1.1,
        snr_db=15.0,
        noise="babble",
        rt60_s=0.5,
        drr_db=2.0,
        tilt_db_per_octave=-3.0,
    ),
}

# Emotionally neutral sentences, as in acted corpora (EmoDB, CREMA-D): the words carry no emotion, the
# voice does.
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "The box is on the table.", "It is eleven o'clock.", "We will take the bus today.",
        "The paper is next to the lamp.", "I think I have seen this before.", "She opened the window.",
        "The meeting is on Tuesday.", "He put the keys in the drawer.", "There are four chairs in the room.",
        "They moved to a new street.", "The train leaves at eight.", "I wrote it down on a card.",
        "The car is parked outside.", "We talked about the weather.", "The shop closes at six.",
        "You can find it upstairs.", "My brother bought a blue coat.", "The letter came this morning.",
    ),
    "de": (
        "Der Zug fährt um acht Uhr ab.", "Das Buch liegt auf dem Tisch.", "Wir treffen uns am Montag.",
        "Die Tür ist offen.", "Er hat den Schlüssel in die Schublade gelegt.", "Heute ist Dienstag.",
        "Sie wohnt in der zweiten Etage.", "Das Auto steht vor dem Haus.",
        "Ich habe es auf einen Zettel geschrieben.", "Der Laden schließt um sechs.",
        "Wir haben über das Wetter gesprochen.", "Die Lampe steht neben dem Fenster.",
        "Morgen kommt der Brief an.", "Im Zimmer stehen vier Stühle.", "Er trinkt seinen Kaffee ohne Zucker.",
        "Das Papier ist im Schrank.", "Sie sind in eine neue Straße gezogen.",
    ),
    "es": (
        "La caja está sobre la mesa.", "Son las once de la mañana.", "Hoy tomamos el autobús.",
        "El papel está al lado de la lámpara.", "Ella abrió la ventana.", "La reunión es el martes.",
        "Él dejó las llaves en el cajón.", "Hay cuatro sillas en la sala.", "Se mudaron a otra calle.",
        "El tren sale a las ocho.", "Lo escribí en una tarjeta.", "El coche está aparcado fuera.",
        "Hablamos del tiempo.", "La tienda cierra a las seis.", "Mi hermano compró un abrigo azul.",
        "La carta llegó esta mañana.", "El libro está en el armario.",
    ),
}

_SOURCE_CRC = source_crc(__file__, acoustics.__file__)


@dataclass(frozen=True)
class _Speaker:
    voice: str
    pitch: float  # espeak `-p`
    wpm: float
    gain_db: float
    expressiveness: float
    room_ir: np.ndarray | None


@functools.cache
def espeak_version() -> str:
    """espeak-ng's version line (it names the data directory too); a clear error when it is not installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError(
            "The espeak-ng presets need the espeak-ng synthesiser, which is not on PATH. Install the "
            "`espeak-ng` package (Debian/Ubuntu: `apt-get install espeak-ng`; macOS: "
            "`brew install espeak-ng`)."
        )
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    return " ".join(out.split())


def make_espeak_corpus(
    preset: str | EspeakPreset,
    seed: int = 0,
    n_per_class_per_speaker: int | None = None,
    n_speakers: int | None = None,
    cache_dir: Path | None = None,
) -> Dataset:
    """Generate an espeak-ng corpus as a `datasets.Dataset`, with the columns of `make_synthetic_corpus`.

    Each speaker reads `4 * n_per_class_per_speaker` utterances split over the classes by the preset's
    `priors` (largest remainder). Every utterance has its own random stream keyed by (speaker, emotion,
    index), so changing the sizes keeps the utterances both sizes share. With a `cache_dir`, the corpus is saved
    there and read back next time (`storage.cached_generation`).
    """
    preset = sized_preset(preset, ESPEAK_PRESETS, "espeak-ng", n_per_class_per_speaker, n_speakers)
    version = espeak_version()
    # As in make_source_filter_corpus (the code, including acoustics.py), plus the espeak-ng version: another
    # build may render other samples.
    settings = repr((ESPEAK_EMOTIONS, SENTENCES, preset, seed, version)).encode()
    fingerprint = f"{_SOURCE_CRC:08x}{zlib.crc32(settings):08x}"

    def generate() -> Dataset:
        counts = class_counts(preset.priors, 4 * preset.n_per_class_per_speaker)
        key = [seed, zlib.crc32(preset.name.encode())]
        noise = acoustics.noise_bank(preset.noise, preset.sampling_rate, preset.snr_db,
                                      np.random.default_rng([*key, 0]))
        arrays, emotions, speakers, utt_ids = [], [], [], []
        for s in range(preset.n_speakers):
            speaker = _make_speaker(preset, s, np.random.default_rng([*key, 1, s]))
            for e, emotion in enumerate(EMOTIONS):
                for k in range(counts[e]):
                    rng = np.random.default_rng([*key, 2, s, e, k])
                    arrays.append(_utterance(preset, speaker, emotion, noise, rng))
                    emotions.append(preset.labels[e])
                    speakers.append(f"spk{s:02d}")
                    utt_ids.append(f"{preset.name}-spk{s:02d}-{emotion}-{k:03d}")
        return corpus_dataset(arrays, emotions, speakers, utt_ids, preset.sampling_rate, preset.name,
                              fingerprint=fingerprint)

    return cached_generation(fingerprint, cache_dir, generate)


def _make_speaker(preset: EspeakPreset, s: int, rng: np.random.Generator) -> _Speaker:
    room_ir = None
    if preset.rt60_s is not None:  # each speaker stands at their own place in the room
        room_ir = acoustics.room_impulse_response(preset.rt60_s, preset.drr_db, rng)
        if preset.sampling_rate != _FS:  # the helper works at _FS; keep the IR's DC gain when resampling
            room_ir = soxr.resample(room_ir, _FS, preset.sampling_rate) * (_FS / preset.sampling_rate)
    return _Speaker(
        voice=preset.voices[s % len(preset.voices)],
        pitch=float(np.clip(rng.normal(50.0, 8.0), 25.0, 75.0)),
        wpm=preset.words_per_minute * rng.uniform(0.88, 1.12),
        gain_db=rng.uniform(-2.0, 2.0),
        expressiveness=preset.expressiveness * rng.uniform(0.8, 1.2),
        room_ir=room_ir,
    )


def _scaled(emotion: EspeakEmotion, amount: float) -> EspeakEmotion:
    """Move an emotion towards neutral: additive fields linearly, factors in the log domain."""
    values = {f.name: getattr(emotion, f.name) for f in dataclasses.fields(EspeakEmotion)}
    return EspeakEmotion(**{k: v * amount if k in _ADDITIVE else v**amount for k, v in values.items()})


def _utterance(
    preset: EspeakPreset, spk: _Speaker, emotion: str, noise: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    emo = _scaled(ESPEAK_EMOTIONS[emotion], spk.expressiveness)
    sentences = SENTENCES[preset.language]
    text = sentences[rng.integers(len(sentences))]
    # Per-utterance departures: no two readings of one emotion are alike, and the classes overlap.
    pitch = int(round(np.clip(spk.pitch + emo.pitch + rng.normal(0.0, 4.0), 0, 99)))
    pitch_range = emo.range * np.exp(rng.normal(0.0, 0.2))
    wpm = int(round(np.clip(spk.wpm * emo.rate * np.exp(rng.normal(0.0, 0.07)), 80, 400)))
    gap = int(round(max(0.0, emo.gap + rng.normal(0.0, 1.0))))
    ssml = f'<speak><prosody range="{(pitch_range - 1) * 100:+.0f}%">{escape(text)}</prosody></speak>'
    speech = _espeak(["-v", spk.voice, "-p", str(pitch), "-s", str(wpm), "-g", str(gap), "-m", "-z"], ssml)
    speech = acoustics.shelf(speech, _ESPEAK_FS, emo.tilt_db + rng.normal(0.0, 1.0))
    # Leading and trailing silence as in a recording session (the noise floor fills it below).
    pad = (rng.uniform(0.05, 0.25, 2) * _ESPEAK_FS).astype(int)
    speech = np.concatenate([np.zeros(pad[0]), speech, np.zeros(pad[1])])
    gain = _REF_RMS * 10 ** ((emo.gain_db + spk.gain_db + rng.normal(0.0, 1.5)) / 20)
    speech *= gain / (acoustics.active_rms(speech, _ESPEAK_FS) + 1e-9)
    speech = soxr.resample(speech, _ESPEAK_FS, preset.sampling_rate)
    if spk.room_ir is not None:
        speech = signal.fftconvolve(speech, spk.room_ir)[: len(speech)]
    start = rng.integers(len(noise) - len(speech))
    speech = acoustics.channel(speech + noise[start : start + len(speech)], preset.sampling_rate, preset.band_hz,
                              preset.tilt_db_per_octave)
    peak = np.abs(speech).max()
    if peak > 0.99:  # the rare utterance that would clip gets a lower recording gain
        speech *= 0.99 / peak
    return speech.astype(np.float32)


def _espeak(options: list[str], text: str) -> np.ndarray:
    """One espeak-ng rendering as float64 at 22.05 kHz (amplitude 50: espeak clips at its default 100)."""
    exe = shutil.which("espeak-ng") or "espeak-ng"
    command = [exe, "--stdout", "-a", "50", *options, text]
    out = subprocess.run(command, capture_output=True, check=True).stdout
    # --stdout cannot seek back to fix the WAV sizes; soundfile reads the data anyway.
    x, sr = sf.read(io.BytesIO(out), dtype="float64")
    if sr != _ESPEAK_FS or x.ndim != 1 or len(x) == 0:
        raise RuntimeError(f"espeak-ng returned unexpected audio ({sr} Hz, shape {x.shape}) for {text!r}")
    return x
