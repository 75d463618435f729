"""Audio decoding with soundfile + soxr: mono float32 at a target rate, optionally cropped.

`datasets.Audio` decoding needs torchcodec/ffmpeg, which this package does not rely on; every container that
libsndfile reads (WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1, AIFF, ...) works here.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import soundfile as sf
import soxr


class AudioDecodeError(ValueError):
    """An audio file or buffer is empty, truncated, corrupt or not audio; the message names it."""


def load_audio(
    source: str | os.PathLike | bytes | Mapping[str, Any],
    sampling_rate: int,
    *,
    max_duration_s: float | None = None,
    rng: np.random.Generator | None = None,
    name: str | None = None,
    min_duration_s: float | None = None,
) -> np.ndarray:
    """Decode audio to a 1-D float32 waveform at `sampling_rate`.

    Args:
        source: a file path; encoded bytes; or a 🤗 audio dict: `{"path", "bytes"}` (an `Audio(decode=False)`
            value; bytes win when present) or `{"array", "sampling_rate"}` (already decoded).
        sampling_rate: the output rate; soxr's high-quality resampler converts to it.
        max_duration_s: crop longer audio to this many seconds: the centre (deterministic, cache-friendly), or
            a random window when `rng` is given (training-time augmentation).
        rng: the generator for random crops.
        name: how to name the audio in errors (defaults to the path).
        min_duration_s: audio shorter than this is unusable (an `AudioDecodeError`), e.g. the model's minimum
            input length: padding it with zeros would train on silence labelled as an emotion.

    Channels are averaged to mono. Raises `AudioDecodeError` naming the file for unreadable or zero-length
    audio and for non-finite samples.
    """
    label = name or _describe(source)
    if isinstance(source, Mapping) and source.get("array") is not None:
        wave = np.asarray(source["array"], dtype=np.float32)
        orig_rate = int(source["sampling_rate"])
        if wave.ndim == 2:  # multichannel: channels are the shorter axis in both common layouts
            wave = wave.mean(axis=int(wave.shape[0] > wave.shape[1]))
        if wave.ndim != 1:
            raise AudioDecodeError(f"{label}: expected a 1-D or 2-D audio array, got shape {wave.shape}")
        if wave.size == 0:
            raise AudioDecodeError(f"{label}: audio has no samples")
        wave = wave[_crop_window(len(wave), orig_rate, max_duration_s, rng)]
    else:
        wave, orig_rate = _read(source, label, max_duration_s, rng)
    if not np.all(np.isfinite(wave)):
        raise AudioDecodeError(f"{label}: audio contains NaN or infinite samples")
    if min_duration_s is not None and len(wave) < min_duration_s * orig_rate:
        raise AudioDecodeError(f"{label}: audio is {len(wave) / orig_rate:.3g} s long, shorter than the "
                               f"{min_duration_s} s a model input needs")
    if orig_rate != sampling_rate:
        wave = soxr.resample(wave, orig_rate, sampling_rate, quality="HQ")
    if max_duration_s is not None:  # the window was cut at the source rate; trim resampler rounding
        wave = wave[: int(round(max_duration_s * sampling_rate))]
    return np.ascontiguousarray(wave, dtype=np.float32)


def _describe(source: Any) -> str:
    if isinstance(source, Mapping):
        return str(source.get("path") or "<in-memory audio>")
    if isinstance(source, bytes | bytearray):
        return f"<{len(source)} bytes of encoded audio>"
    return os.fspath(source)


def _read(
    source: Any, label: str, max_duration_s: float | None, rng: np.random.Generator | None
) -> tuple[np.ndarray, int]:
    """Read only the kept window (long recordings are not decoded whole) and average the channels."""
    if isinstance(source, Mapping):
        source = source.get("bytes") or source.get("path")
        if source is None:
            raise AudioDecodeError(f"{label}: audio dict has neither 'bytes' nor 'path'")
    if isinstance(source, bytes | bytearray):
        if not source:
            raise AudioDecodeError(f"{label}: empty audio buffer")
        source = io.BytesIO(source)
    elif not os.path.isfile(source):
        raise AudioDecodeError(f"{label}: no such file")
    elif os.path.getsize(source) == 0:
        raise AudioDecodeError(f"{label}: empty file (0 bytes)")
    try:
        with sf.SoundFile(source) as f:
            rate, frames = f.samplerate, f.frames
            if frames <= 0:
                raise AudioDecodeError(f"{label}: audio has no samples (zero-length)")
            window = _crop_window(frames, rate, max_duration_s, rng)
            f.seek(window.start)
            wave = f.read(window.stop - window.start, dtype="float32", always_2d=True)
    except AudioDecodeError:
        raise
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        raise AudioDecodeError(f"{label}: cannot decode audio ({error})") from error
    if len(wave) == 0:
        raise AudioDecodeError(
            f"{label}: audio is truncated (header promises {frames} frames, none readable)"
        )
    return wave.mean(axis=1), rate


def _crop_window(
    length: int, rate: int, max_duration_s: float | None, rng: np.random.Generator | None
) -> slice:
    if max_duration_s is None:
        return slice(0, length)
    # ceil: after resampling the window still covers max_duration_s, and the final trim makes it exact.
    keep = min(length, math.ceil(max_duration_s * rate))
    start = int(rng.integers(0, length - keep + 1)) if rng is not None else (length - keep) // 2
    return slice(start, start + keep)
