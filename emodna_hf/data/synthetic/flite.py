"""The third family of generated development corpora: flite/festival speech, WORLD-vocoded emotion styles.

The project's *confirmation* family (docs/benchmarks.md, "Development families"): defaults are chosen on the
source-filter (`source_filter.py`) and espeak-ng (`espeak.py`) families and reported here untouched. It shares no
acoustic code with them (see `flite_acoustics.py` for its own assumptions) and adds the shifts they lack:

* **class-conditional style**: a label is realised by different prosodic patterns in different corpora (hot
  vs cold anger, elated vs content happiness, depressed vs tearful sadness), mixed within a class in the
  natural corpora;
* **acted vs natural**: acted corpora are prototypical and consistent; natural ones are milder, vary from
  utterance to utterance and hold ambiguous (near-neutral) utterances;
* label priors in both directions, 4 to 20 speakers, two synthesisers and two languages, real codecs and gain
  control, image-source rooms, recorded-like noise, band limits and sampling rates.

| preset | speech | speakers | priors (ang/hap/neu/sad) | styles | channel |
|---|---|---|---|---|---|
| `synth-studio` | flite, US/Scottish English | 4 | balanced | acted: hot anger, elated, depressed | dry booth, hiss 45 dB, 44.1 kHz |
| `synth-call` | flite, English | 20 | .16/.14/.58/.12 | natural: mostly cold anger, content, depressed; 15% ambiguous | headset, office noise, AGC, AMR-NB, 8 kHz |
| `synth-it` | festival, Italian | 10 | .30/.30/.32/.08 | improvised: hot anger, elated/content, tearful | far field (RT60 0.6 s), babble, 48 kHz |
| `synth-radio` | flite, US/Scottish English | 12 | .18/.34/.32/.16 | mixed: cold/hot anger, content/elated, tearful/depressed | room 0.3 s, hum, compressor, MP3 32 kbit/s, 22.05 kHz |

Needs the `flite` binary (all presets), `festival` with the Italian diphone voices (`synth-it`), `sox` (codecs)
and the `corpora` extra (`pyworld`, `pyroomacoustics`); nothing is downloaded at run time. The same preset,
seed, sizes and tool versions give identical arrays. About 60-75 CPU seconds per corpus (docs/benchmarks.md).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
from datasets import Dataset
from scipy import signal

from ..storage import cached_generation
from . import flite_acoustics as acoustics
from .corpus import EMOTIONS, class_counts, corpus_dataset, sized_preset, source_crc
from .flite_acoustics import Style

STYLES: dict[str, Style] = {
    "plain": Style(),
    "flat": Style(f0_st=-0.5, range=0.75, tempo=1.05, level_db=-1.0, tension_db=-0.5),
    # Hot anger (rage): loud, high, wide, fast, pressed. Cold anger: controlled, low, slow, tense, emphatic.
    "hot": Style(f0_st=5.0, range=1.6, tempo=0.85, level_db=9.0, tension_db=5.0, jitter_st=0.25, final_st=-2.0,
                 formant=1.03, accent_db=3.0),
    "cold": Style(f0_st=-1.5, range=0.7, tempo=1.15, level_db=2.0, tension_db=3.5, final_st=-4.0,
                  accent_db=5.0),
    # Elated joy: high, widest range, fast, bright, rising ends. Content: a little higher, smiling, relaxed.
    "elated": Style(f0_st=6.0, range=1.9, tempo=0.9, level_db=4.0, tension_db=2.0, final_st=2.0,
                    formant=1.05, accent_db=2.0),
    "content": Style(f0_st=2.0, range=1.3, tempo=1.0, level_db=0.5, tension_db=-1.0, breath=0.2,
                     formant=1.06),
    # Depressed sadness: low, monotonous, slow, quiet, lax. Tearful: higher, breathy, trembling, slow.
    "depressed": Style(f0_st=-3.0, range=0.45, tempo=1.3, level_db=-7.0, tension_db=-4.0, breath=0.3,
                       final_st=-1.0, formant=0.98),
    "tearful": Style(f0_st=3.5, range=1.15, tempo=1.2, level_db=-3.0, tension_db=-3.0, breath=0.5,
                     jitter_st=0.5, tremor_st=0.6, final_st=-1.0),
}


@dataclass(frozen=True)
class FlitePreset:
    """A corpus of this family. `styles[e]` maps style names (`STYLES`) to their shares within emotion e."""

    name: str
    labels: tuple[str, str, str, str]  # raw label strings for angry, happy, neutral, sad
    engine: str  # "flite" or "festival"
    voices: tuple[str, ...]  # synthesiser voices, cycled over the speakers
    language: str  # key of `SENTENCES`
    priors: tuple[float, float, float, float]
    styles: tuple[dict[str, float], dict[str, float], dict[str, float], dict[str, float]]
    n_speakers: int
    n_per_class_per_speaker: int  # the mean over classes: a speaker reads 4 * this many utterances
    intensity: float  # style intensity of a typical utterance
    variation: float  # utterance-to-utterance spread (log-intensity sd; scales the per-field departures)
    ambiguous: float  # share of utterances rendered at intensity 0-0.3 (labelled, barely expressed)
    warp_range: tuple[float, float]  # speakers' vocal-tract warp (spectral envelope frequency factor)
    f0_range_st: float  # speakers' f0 spread around the voice's own (sd, semitones)
    sampling_rate: int
    noise: str  # flite_acoustics.noise_bank kind
    snr_db: float  # against a neutral utterance's active level
    rt60_s: float | None = None
    distance_m: float = 1.0
    gain_control: str | None = None
    band_hz: tuple[float, float] | None = None
    codec: str | None = None


FLITE_PRESETS: dict[str, FlitePreset] = {
    "synth-studio": FlitePreset(
        name="synth-studio", labels=("anger", "happiness", "neutral", "sadness"), engine="flite",
        voices=("slt", "rms", "awb", "kal16"), language="en", priors=(0.25, 0.25, 0.25, 0.25),
        styles=({"hot": 1.0}, {"elated": 1.0}, {"plain": 1.0}, {"depressed": 1.0}),
        n_speakers=4, n_per_class_per_speaker=25, intensity=1.0, variation=0.12, ambiguous=0.0,
        warp_range=(0.97, 1.03), f0_range_st=1.0, sampling_rate=44100, noise="hiss", snr_db=45.0,
        rt60_s=0.15, distance_m=0.4,
    ),
    "synth-call": FlitePreset(
        name="synth-call", labels=("ang", "joy", "neu", "sad"), engine="flite",
        voices=("kal", "slt", "rms", "awb", "kal16"), language="en", priors=(0.16, 0.14, 0.58, 0.12),
        styles=({"cold": 0.75, "hot": 0.25}, {"content": 0.8, "elated": 0.2}, {"plain": 0.7, "flat": 0.3},
                {"depressed": 1.0}),
        n_speakers=20, n_per_class_per_speaker=5, intensity=0.7, variation=0.35, ambiguous=0.15,
        warp_range=(0.88, 1.14), f0_range_st=2.5, sampling_rate=8000, noise="office", snr_db=22.0,
        gain_control="agc", band_hz=(300.0, 3400.0), codec="amr-nb",
    ),
    "synth-it": FlitePreset(
        name="synth-it", labels=("rabbia", "gioia", "neutro", "tristezza"), engine="festival",
        voices=("pc_diphone", "lp_diphone"), language="it", priors=(0.30, 0.30, 0.32, 0.08),
        styles=({"hot": 0.85, "cold": 0.15}, {"elated": 0.6, "content": 0.4}, {"plain": 1.0},
                {"tearful": 0.75, "depressed": 0.25}),
        n_speakers=10, n_per_class_per_speaker=10, intensity=0.85, variation=0.25, ambiguous=0.1,
        warp_range=(0.92, 1.08), f0_range_st=1.5, sampling_rate=48000, noise="babble", snr_db=15.0,
        rt60_s=0.6, distance_m=2.5,
    ),
    "synth-radio": FlitePreset(
        name="synth-radio", labels=("W", "F", "N", "T"), engine="flite",
        voices=("awb", "slt", "rms", "kal16"), language="en", priors=(0.18, 0.34, 0.32, 0.16),
        styles=({"cold": 0.6, "hot": 0.4}, {"content": 0.5, "elated": 0.5}, {"plain": 0.8, "flat": 0.2},
                {"tearful": 0.5, "depressed": 0.5}),
        n_speakers=12, n_per_class_per_speaker=8, intensity=0.75, variation=0.3, ambiguous=0.1,
        warp_range=(0.9, 1.1), f0_range_st=2.0, sampling_rate=22050, noise="hum", snr_db=30.0,
        rt60_s=0.3, distance_m=0.8, gain_control="compressor", codec="mp3",
    ),
}

# Neutral statements, as read in acted corpora (the words carry no emotion); 7-12 words: 2-4 s once read.
SENTENCES: dict[str, tuple[str, ...]] = {
    "en": (
        "The blue folder is on the second shelf.", "I will call you back after the meeting.",
        "The delivery should arrive before noon tomorrow.", "She left her umbrella at the station.",
        "We need to change the date of the appointment.", "The river runs past the old mill.",
        "He has worked in this office for nine years.", "Your number was added to the list this morning.",
        "The bakery on the corner opens at seven.", "They painted the kitchen a pale green.",
        "Please check the address on the second page.", "The flight was moved to a later gate.",
        "My sister is coming to visit next week.", "The printer on this floor needs new paper.",
        "We walked along the beach until it got dark.", "The report has fourteen pages and two tables.",
        "I found the keys under the newspaper.", "The bus to the airport leaves every hour.",
        "There is a small garden behind the house.", "The account was opened in March last year.",
    ),
    "it": (
        "La cartella blu è sul secondo scaffale.", "Ti richiamo dopo la riunione di domani.",
        "Il pacco dovrebbe arrivare prima di mezzogiorno.", "Ha lasciato l'ombrello alla stazione.",
        "Dobbiamo cambiare la data dell'appuntamento.", "Il fiume passa vicino al vecchio mulino.",
        "Lavora in questo ufficio da nove anni.", "Il panificio all'angolo apre alle sette.",
        "Hanno dipinto la cucina di verde chiaro.", "Controlla l'indirizzo sulla seconda pagina.",
        "Mia sorella viene a trovarci la settimana prossima.", "Abbiamo camminato sulla spiaggia fino a sera.",
        "La relazione ha quattordici pagine e due tabelle.", "Ho trovato le chiavi sotto il giornale.",
        "L'autobus per l'aeroporto parte ogni ora.", "C'è un piccolo giardino dietro la casa.",
    ),
}

_SOURCE_CRC = source_crc(__file__, acoustics.__file__)


@dataclass(frozen=True)
class _Speaker:
    voice: str
    f0_factor: float
    warp: float
    breath: float
    tension_db: float
    tempo: float
    level_db: float
    room_ir: np.ndarray | None


@functools.cache
def tool_versions(engine: str) -> str:
    """The synthesiser's and sox's version lines; a clear error naming the package when one is missing."""
    lines = []
    for exe, version_flag, package in ((engine, "--version", engine), ("sox", "--version", "sox libsox-fmt-all")):
        path = shutil.which(exe)
        if path is None:
            raise RuntimeError(
                f"The flite-family corpora need `{exe}`, which is not on PATH. Install it (Debian/Ubuntu: "
                f"`apt-get install {package}`{' festvox-italp16k festvox-itapc16k' if exe == 'festival' else ''})."
            )
        out = subprocess.run([path, version_flag], capture_output=True, text=True)
        lines.append(" ".join((out.stdout + out.stderr).split()[:8]))
    for module in ("pyworld", "pyroomacoustics"):
        try:
            version = (acoustics._pyworld() if module == "pyworld" else __import__(module)).__version__
        except ImportError as err:
            raise RuntimeError(
                f"The flite-family corpora need the Python package {module}: pip install 'emodna_hf[corpora]'"
            ) from err
        lines.append(f"{module} {version}")
    return "; ".join(lines)


def make_flite_corpus(
    preset: str | FlitePreset,
    seed: int = 0,
    n_per_class_per_speaker: int | None = None,
    n_speakers: int | None = None,
    cache_dir: Path | None = None,
) -> Dataset:
    """Generate a corpus of this family as a `datasets.Dataset` (columns of `make_synthetic_corpus`).

    Each speaker reads `4 * n_per_class_per_speaker` utterances split over the classes by `priors` (largest
    remainder). Every utterance has its own random stream keyed by (speaker, emotion, index), so changing the
    sizes keeps the utterances both sizes share. With a `cache_dir`, the corpus is saved there and read back next
    time (`storage.cached_generation`).
    """
    preset = sized_preset(preset, FLITE_PRESETS, "flite-family", n_per_class_per_speaker, n_speakers)
    versions = tool_versions(preset.engine)
    # Everything the samples depend on: this family's code, styles, sentences, preset, seed and tool versions.
    settings = repr((STYLES, SENTENCES, preset, seed, versions)).encode()
    fingerprint = f"{_SOURCE_CRC:08x}{zlib.crc32(settings):08x}"
    return cached_generation(fingerprint, cache_dir, lambda: _generate(preset, seed, fingerprint))


def _generate(preset: FlitePreset, seed: int, fingerprint: str) -> Dataset:
    counts = class_counts(preset.priors, 4 * preset.n_per_class_per_speaker)
    key = [seed, zlib.crc32(preset.name.encode())]
    speakers = [_make_speaker(preset, s, np.random.default_rng([*key, 1, s])) for s in range(preset.n_speakers)]
    plans = []  # (speaker index, emotion index, k, style, text, tempo, rng)
    for s, speaker in enumerate(speakers):
        for e in range(4):
            for k in range(counts[e]):
                rng = np.random.default_rng([*key, 2, s, e, k])
                style = _draw_style(preset, e, rng)
                sentences = SENTENCES[preset.language]
                text = sentences[rng.integers(len(sentences))]
                tempo = float(np.clip(speaker.tempo * style.tempo, 0.7, 1.45))
                plans.append((s, e, k, style, text, tempo, rng))
    readings = _synthesise(preset.engine, [(speakers[p[0]].voice, p[4], p[5]) for p in plans])
    noise = _corpus_noise(preset, np.random.default_rng([*key, 0]))
    arrays, emotions, speaker_ids, utt_ids = [], [], [], []
    for (s, e, k, style, _, _, rng), (wave, fs) in zip(plans, readings, strict=True):
        arrays.append(_utterance(preset, speakers[s], style, wave, fs, noise, rng))
        emotions.append(preset.labels[e])
        speaker_ids.append(f"spk{s:02d}")
        utt_ids.append(f"{preset.name}-spk{s:02d}-{EMOTIONS[e]}-{k:03d}")
    return corpus_dataset(arrays, emotions, speaker_ids, utt_ids, preset.sampling_rate, preset.name, fingerprint)


def _make_speaker(preset: FlitePreset, s: int, rng: np.random.Generator) -> _Speaker:
    room_ir = None
    if preset.rt60_s is not None:  # each speaker sits at their own place in their own room
        rt60 = preset.rt60_s * rng.uniform(0.85, 1.15)
        room_ir = acoustics.room_impulse_response(preset.sampling_rate, rt60, preset.distance_m, rng)
    return _Speaker(
        voice=preset.voices[s % len(preset.voices)],
        f0_factor=float(2 ** (rng.normal(0.0, preset.f0_range_st) / 12)),
        warp=float(rng.uniform(*preset.warp_range)),
        breath=float(rng.uniform(0.0, 0.25)),
        tension_db=float(rng.normal(0.0, 1.0)),
        tempo=float(rng.uniform(0.9, 1.1)),
        level_db=float(rng.uniform(-3.0, 3.0)),
        room_ir=room_ir,
    )


def _draw_style(preset: FlitePreset, e: int, rng: np.random.Generator) -> Style:
    """One utterance's style: a style of the class's mixture, at a random intensity, with small departures."""
    names = list(preset.styles[e])
    shares = np.array([preset.styles[e][n] for n in names], dtype=float)
    style = STYLES[names[rng.choice(len(names), p=shares / shares.sum())]]
    if rng.random() < preset.ambiguous:
        amount = rng.uniform(0.0, 0.3)
    else:
        amount = float(np.clip(preset.intensity * np.exp(rng.normal(0.0, preset.variation)), 0.1, 1.6))
    v = 1.0 + 2.0 * preset.variation  # natural corpora also depart more from the style's own pattern
    style = acoustics.scaled(style, amount)
    return dataclasses.replace(
        style,
        f0_st=style.f0_st + rng.normal(0.0, 0.7 * v),
        range=style.range * np.exp(rng.normal(0.0, 0.1 * v)),
        tempo=style.tempo * np.exp(rng.normal(0.0, 0.04 * v)),
        level_db=style.level_db + rng.normal(0.0, 1.0 * v),
        tension_db=style.tension_db + rng.normal(0.0, 0.7 * v),
    )


def _utterance(preset: FlitePreset, spk: _Speaker, style: Style, wave: np.ndarray, fs: int,
               noise: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    speech = acoustics.restyle(wave, fs, style, spk.f0_factor, spk.warp, spk.breath, spk.tension_db, rng)
    pad = (rng.uniform(0.1, 0.3, 2) * fs).astype(int)  # session silence; the noise floor fills it below
    speech = np.concatenate([np.zeros(pad[0]), speech, np.zeros(pad[1])])
    speech = acoustics.set_level(speech, fs, style.level_db + spk.level_db + rng.normal(0.0, 1.0))
    sr = preset.sampling_rate
    if fs != sr:
        speech = soxr.resample(speech, fs, sr)
    if spk.room_ir is not None:
        speech = signal.fftconvolve(speech, spk.room_ir)[: len(speech)]
    start = rng.integers(len(noise) - len(speech))
    speech = speech + noise[start : start + len(speech)]
    speech = acoustics.gain_control(speech, sr, preset.gain_control)
    speech = acoustics.band_limit(speech, sr, preset.band_hz)
    speech = acoustics.codec(speech, sr, preset.codec)
    peak = np.abs(speech).max()
    if peak > 0.99:  # the recording gain of the rare utterance that would clip
        speech *= 0.99 / peak
    return speech.astype(np.float32)


def _corpus_noise(preset: FlitePreset, rng: np.random.Generator) -> np.ndarray:
    """The corpus's background, 30 s at the preset's rate, at `snr_db` below the nominal speech level."""
    babble = None
    if preset.noise == "babble":  # other talkers: four flite voices reading other sentences, overlapped
        texts = SENTENCES["en"]
        parts = _synthesise("flite", [(v, texts[i], 1.0) for i in range(8) for v in ("slt", "rms", "awb", "kal16")])
        streams = [np.concatenate([soxr.resample(w, fs, preset.sampling_rate) for w, fs in parts[j::4]])
                   for j in range(4)]
        n = min(len(x) for x in streams)
        babble = sum(np.roll(x[:n], rng.integers(n)) for x in streams)
    noise = acoustics.noise_bank(preset.noise, preset.sampling_rate, 30.0, babble, rng)
    return noise * 10 ** ((acoustics.REF_DBFS - preset.snr_db) / 20)


def _synthesise(engine: str, requests: list[tuple[str, str, float]]) -> list[tuple[np.ndarray, int]]:
    """Neutral readings (voice, text, duration stretch) -> (float64 wave, rate >= 16 kHz); festival in one
    process."""
    with tempfile.TemporaryDirectory(prefix="emodna-flite-") as tmp:
        paths = [Path(tmp) / f"{i:05d}.wav" for i in range(len(requests))]
        if engine == "flite":
            for (voice, text, stretch), path in zip(requests, paths, strict=True):
                subprocess.run([shutil.which("flite") or "flite", "-voice", voice, "--setf",
                                f"duration_stretch={stretch:.3f}", "-t", text, "-o", str(path)],
                               capture_output=True, check=True)
        elif engine == "festival":
            script = []
            for (voice, text, stretch), path in zip(requests, paths, strict=True):
                quoted = text.replace("\\", "\\\\").replace('"', '\\"')
                script += [f"(voice_{voice})", f"(Parameter.set 'Duration_Stretch {stretch:.3f})",
                           f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{path}" \'riff)']
            script_path = Path(tmp) / "script.scm"
            script_path.write_bytes("\n".join(script).encode("latin-1"))  # festival reads ISO-8859-1
            subprocess.run([shutil.which("festival") or "festival", "-b", str(script_path)],
                           capture_output=True, check=True)
        else:
            raise ValueError(f"Unknown engine {engine!r}; expected 'flite' or 'festival'")
        out = []
        for path, request in zip(paths, requests, strict=True):
            if not path.exists():
                raise RuntimeError(f"{engine} wrote no audio for {request}; is the voice installed?")
            wave, fs = sf.read(io.BytesIO(path.read_bytes()), dtype="float64")
            if fs < 16000:  # flite's kal: WORLD's D4C has no aperiodicity band below 16 kHz (and reads garbage)
                wave, fs = soxr.resample(wave, fs, 16000), 16000
            out.append((wave, int(fs)))
        return out
