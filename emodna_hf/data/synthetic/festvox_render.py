"""Rendering for the festvox corpus family (`festvox.py`): festival readings with the synthesiser's own
prosody controls, sox effect chains for voice, emotion and channel, noise mixed at a per-utterance SNR.

Nothing here is shared with the other generators (`source_filter.py`, `espeak.py`, `acoustics.py`, `flite.py`
and `flite_acoustics.py`); the assumptions differ on purpose:

* emotion reaches the waveform first through festival itself: for diphone voices (Czech, Finnish) a wrapper
  around festival's `Int_Targets` module scales the predicted f0 targets (level and range) and
  `Duration_Stretch` sets the tempo; for the HTS voice (Catalan) the engine's `-r` (speed) option, its f0
  through sox `pitch`; the unit-selection voice (Russian) ignores all of them, so its f0 and tempo go through
  sox `pitch` / `tempo`. No vocoder re-synthesis;
* voice quality and loudness are sox effects: `treble` shelf (vocal effort), `tremolo` (a trembling voice),
  `overdrive` (a harsh, shouted voice), `equalizer` (a speaker's timbre); a speaker's vocal-tract length is
  `speed` followed by the inverse `pitch` (formants move, f0 does not);
* rooms are sox's `reverb` (a Freeverb-style network), not image sources; noise is pink, brown or crowd noise
  mixed at an SNR drawn per utterance against that utterance's own speech level; channels are sox `sinc` band
  limits, `compand` dynamics and GSM 06.10, Ogg Vorbis or MS-ADPCM codecs.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REF_DB = -26.0  # active speech level (dBFS) of a reading at level 0: headroom for +10 dB of shouting


@dataclass(frozen=True)
class Reading:
    """One festival request: the voice, the text and the synthesiser-side prosody."""

    voice: str
    text: str
    f0_scale: float = 1.0  # diphone voices: factor on every f0 target
    f0_range: float = 1.0  # diphone voices: factor on the targets' departures from their mean
    stretch: float = 1.0  # diphone voices: Duration_Stretch (> 1 = slower)
    hts_speed: float = 1.0  # HTS voices: engine option -r (> 1 = faster)


# Wraps festival's Int_Targets so that every voice whose waveform follows the Target relation (the UniSyn
# diphone voices) gets its f0 targets scaled; `Utterance` does not evaluate its arguments, hence `eval`.
_PRELUDE = """
(define (emo_clip f0) (if (< f0 75) 75 (if (> f0 400) 400 f0)))  ; UniSyn crashes below ~65, above ~450 Hz
(define (emo_targets u)
  (let ((ts (utt.relation.items u 'Target)) (sum 0) (n 0))
    (mapcar (lambda (tg) (set! sum (+ sum (item.feat tg "f0"))) (set! n (+ n 1))) ts)
    (if (> n 0)
      (let ((m (/ sum n)))
        (mapcar (lambda (tg)
                  (item.set_feat tg "f0" (emo_clip (* emo_scale (+ m (* emo_range (- (item.feat tg "f0") m)))))))
                ts)))
    u))
(set! emo_scale 1.0)
(set! emo_range 1.0)
(set! emo_hts_base nil)
(defvar hts_engine_params nil)
(set! emo_orig_int_targets Int_Targets)
(define (Int_Targets u) (emo_orig_int_targets u) (emo_targets u))
(define (emo_say text scale range stretch speed path)
  (Parameter.set 'Duration_Stretch stretch)
  (set! emo_scale scale)
  (set! emo_range range)
  (if (eq 'HTS (Parameter.get 'Synth_Method))
      (set! hts_engine_params (append emo_hts_base (list (list "-r" speed)))))
  (utt.save.wave (utt.synth (eval (list 'Utterance 'Text text))) path 'riff))
"""


def _exe(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"The festvox-family corpora need `{name}`, which is not on PATH. Install it (Debian/Ubuntu: "
            f"`apt-get install {package}`)."
        )
    return path


@functools.cache
def version_line(name: str, package: str) -> str:
    out = subprocess.run([_exe(name, package), "--version"], capture_output=True, text=True)
    return " ".join((out.stdout + out.stderr).split()[:8])


def synthesise(requests: list[Reading], encoding: str, voice_dirs: dict[str, str]) -> list[tuple[np.ndarray, int]]:
    """Festival readings of `requests` in one process (grouped by voice), as (float64 wave, native rate).

    `encoding` is the text encoding the language's festival front end reads (ISO-8859-2 for Czech, ISO-8859-1
    for Finnish, UTF-8 for Catalan and Russian); `voice_dirs` maps a voice to the Debian package providing it,
    for the error message when it is missing.
    """
    festival = _exe("festival", "festival")
    with tempfile.TemporaryDirectory(prefix="emodna-festvox-") as tmp:
        paths = [Path(tmp) / f"{i:05d}.wav" for i in range(len(requests))]
        lines = [_PRELUDE]
        for voice in sorted({r.voice for r in requests}):
            lines += [f"(voice_{voice})", "(set! emo_hts_base hts_engine_params)"]
            for i, r in enumerate(requests):
                if r.voice == voice:
                    text = r.text.replace("\\", "\\\\").replace('"', '\\"')
                    lines.append(f'(emo_say "{text}" {r.f0_scale:.4f} {r.f0_range:.4f} {r.stretch:.4f} '
                                 f'{r.hts_speed:.4f} "{paths[i]}")')
        script = Path(tmp) / "readings.scm"
        script.write_bytes("\n".join(lines).encode(encoding))
        run = subprocess.run([festival, "-b", str(script)], capture_output=True)
        out = []
        for path, r in zip(paths, requests, strict=True):
            if not path.exists():
                cause = (f"festival crashed (signal {-run.returncode}) on {r}" if run.returncode < 0 else
                         f"is the voice installed (apt-get install {voice_dirs.get(r.voice, 'festival')})?")
                raise RuntimeError(f"festival wrote no audio for voice {r.voice!r}: {cause} "
                                   f"{run.stderr.decode(errors='replace')[-300:]}")
            wave, fs = sf.read(io.BytesIO(path.read_bytes()), dtype="float64")
            out.append((wave, int(fs)))
        return out


def sox(x: np.ndarray, fs_in: int, effects: list[str], fs_out: int | None = None,
        out_type: tuple[str, ...] = ("f32",), in_type: tuple[str, ...] = ("f32",)) -> bytes:
    """Run `x` (mono float) through one sox process: no dither (`-D`), repeatable random numbers (`-R`)."""
    args = [_exe("sox", "sox libsox-fmt-all"), "-D", "-R", "-t", *in_type, "-r", str(fs_in), "-c", "1", "-",
            "-t", *out_type, *(["-r", str(fs_out)] if fs_out else []), "-c", "1", "-", *effects]
    data = x.astype("<f4").tobytes() if in_type == ("f32",) else x.tobytes()
    run = subprocess.run(args, input=data, capture_output=True)
    if run.returncode != 0:
        raise RuntimeError(f"sox failed on {' '.join(args[1:])}: {run.stderr.decode(errors='replace')[-300:]}")
    return run.stdout


def floats(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").astype(np.float64)


def active_db(x: np.ndarray, fs: int) -> float:
    """Mean power (dBFS) of the 20 ms frames within 40 dB of the loudest: the speech, not the pauses."""
    hop = max(1, fs // 50)
    frames = np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1) + 1e-20
    return float(10 * np.log10(frames[frames > frames.max() * 1e-4].mean()))


def noise(kind: str, fs: int, seconds: float, crowd: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS background: `pink` (1/f), `brown` (1/f^2, above 20 Hz) or `crowd` (other readings summed at
    random offsets over pink noise, `crowd` given at `fs`)."""
    n = int(seconds * fs)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / fs), 20.0)
    if kind in ("pink", "crowd"):
        bank = np.fft.irfft(spectrum / np.sqrt(freqs), n)
    elif kind == "brown":
        bank = np.fft.irfft(spectrum / freqs, n)
    else:
        raise ValueError(f"Unknown noise kind {kind!r}; expected pink, brown or crowd")
    bank /= np.std(bank)
    if kind == "crowd":
        talk = np.zeros(n)
        for wave in crowd:
            start = rng.integers(n)
            talk += np.roll(np.resize(wave, n), start) * rng.uniform(0.5, 1.0)
        bank = 0.3 * bank + talk / (np.std(talk) + 1e-12)
    return bank / np.std(bank)


# sox codec formats: (type arguments for the encoded stream, native rate or None)
CODECS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "gsm": (("gsm",), 8000),
    "vorbis": (("vorbis", "-C", "0"), None),
    "ms-adpcm": (("wav", "-e", "ms-adpcm"), None),
}


def codec(x: np.ndarray, fs: int, name: str | None) -> np.ndarray:
    """Encode and decode with a real codec through sox; the result has the length of `x`."""
    if name is None:
        return x
    if name not in CODECS:
        raise ValueError(f"Unknown codec {name!r}; expected one of {sorted(CODECS)}")
    kind, rate = CODECS[name]
    if rate is not None and rate != fs:
        raise ValueError(f"Codec {name} works at {rate} Hz, not {fs} Hz")
    encoded = sox(x, fs, [], out_type=kind)
    decoded = subprocess.run([_exe("sox", "sox libsox-fmt-all"), "-D", "-R", "-t", kind[0], *(
        ["-r", str(fs)] if kind[0] == "gsm" else []), "-", "-t", "f32", "-c", "1", "-"],
        input=encoded, capture_output=True, check=True).stdout
    y = floats(decoded)
    return np.pad(y[: len(x)], (0, max(0, len(x) - len(y))))
