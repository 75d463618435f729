"""Audio as the model takes it: one mono float waveform in [-1, 1] per utterance, whatever the caller holds.

Shipped as remote code (imported by `feature_extraction_emodna.py` and `pipeline_emodna.py`), so it imports only
numpy at import time; soundfile (decoding) and soxr (resampling) are imported when a file must be decoded or audio
resampled. Both are dependencies of emodna_hf; neither needs the ffmpeg program nor torchaudio, which the stock
transformers audio pipeline uses for the same two jobs.

Why the conversions: integer PCM taken as float keeps its raw scale (an int16 array's samples reach 32767), which
changes every loudness-based feature; and a (samples, channels) array read as a batch gives "utterances" of one
sample per channel. Both are converted here, or refused with a message that says what was passed.
"""

from __future__ import annotations

import io
import os

import numpy as np

# More channels than this on the short axis of a 2-D array is not multichannel audio but a batch or a mistake.
MAX_CHANNELS = 8
# Integer PCM: the divisor (and offset, for unsigned 8-bit) that maps it to [-1, 1).
_PCM_SCALES = {np.dtype(np.int8): (128.0, 0.0), np.dtype(np.uint8): (128.0, 128.0),
               np.dtype(np.int16): (32768.0, 0.0), np.dtype(np.int32): (2147483648.0, 0.0)}


def _as_numpy(audio) -> np.ndarray:
    if type(audio).__module__.split(".")[0] == "torch":  # a torch tensor, without importing torch here
        audio = audio.detach().cpu().numpy()
    return np.asarray(audio)


def to_float(audio, what: str = "audio") -> np.ndarray:
    """`audio` as float32: floats as they are, integer PCM (int8, uint8, int16, int32) rescaled to [-1, 1)."""
    array = _as_numpy(audio)
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype in _PCM_SCALES:
        scale, offset = _PCM_SCALES[array.dtype]
        return ((array.astype(np.float32) - offset) / scale).astype(np.float32, copy=False)
    raise TypeError(
        f"{what} has dtype {array.dtype}: expected float samples in [-1, 1] or integer PCM (int16, int32, int8, "
        "uint8, rescaled to [-1, 1]). Other integer types have no standard scale: convert to float first (e.g. "
        "int16 PCM / 32768)."
    )


def _channel_axis(shape: tuple[int, ...], channels_last_only: bool) -> int | None:
    """The channel axis of a 2-D shape, if it holds one multichannel utterance."""
    rows, columns = shape
    if columns <= MAX_CHANNELS < rows:
        return 1  # (samples, channels): soundfile's layout
    if not channels_last_only and rows <= MAX_CHANNELS < columns:
        return 0  # (channels, samples): torchaudio's layout
    return None


def to_mono(array: np.ndarray, what: str = "audio") -> np.ndarray:
    """One utterance as a 1-D waveform: multichannel audio, (samples, channels) or (channels, samples) with at most
    `MAX_CHANNELS` channels, is mixed down by averaging its channels."""
    if array.ndim == 1:
        return array
    if array.ndim == 2:
        if 1 in array.shape:
            return array.reshape(-1)
        axis = _channel_axis(array.shape, channels_last_only=False)
        if axis is not None:
            return array.mean(axis=axis, dtype=np.float64).astype(array.dtype, copy=False)
    raise ValueError(
        f"{what} has shape {array.shape}: expected one utterance, a mono waveform (samples,) or multichannel audio "
        f"(samples, channels) / (channels, samples) with at most {MAX_CHANNELS} channels (mixed down to mono)."
    )


def waveform(audio, what: str = "audio") -> np.ndarray:
    """One utterance (array, tensor or list of samples, any PCM dtype, mono or multichannel) as float32 mono."""
    return to_mono(to_float(audio, what), what)


def as_waveforms(raw_speech) -> tuple[list[np.ndarray], bool]:
    """What a feature extractor call holds, as float32 mono waveforms, and whether it was a batch.

    A 2-D array is a batch of utterances (rows), the feature extractor's convention, unless its last axis is
    short enough to be channels of one utterance, (samples, channels) as soundfile reads it: a batch of
    utterances of a few samples each is never meant. Items of a list are single utterances in either layout.
    """
    if type(raw_speech).__module__.split(".")[0] == "torch":
        raw_speech = _as_numpy(raw_speech)
    if isinstance(raw_speech, np.ndarray):
        if raw_speech.ndim == 2 and _channel_axis(raw_speech.shape, channels_last_only=True) is None:
            return [waveform(row, f"utterance {i}") for i, row in enumerate(raw_speech)], True
        if raw_speech.ndim > 2:
            raise ValueError(f"audio has shape {raw_speech.shape}: expected a waveform (samples,), a batch "
                             "(utterances, samples) or one multichannel utterance (samples, channels).")
        return [waveform(raw_speech)], False
    if isinstance(raw_speech, (list, tuple)) and raw_speech and not np.isscalar(raw_speech[0]):
        return [waveform(item, f"utterance {i}") for i, item in enumerate(raw_speech)], True
    return [waveform(raw_speech)], False


def decode(source: str | os.PathLike | bytes | bytearray) -> tuple[np.ndarray, int]:
    """An audio file (a path, or its bytes) as a float32 mono waveform and its sampling rate, read with soundfile
    (libsndfile: WAV, FLAC, OGG/Vorbis, MP3 and more; no ffmpeg)."""
    try:
        import soundfile
    except ImportError as error:  # pragma: no cover - soundfile is a dependency of emodna_hf
        raise ImportError("Decoding an audio file needs soundfile: pip install soundfile") from error
    name = "the audio bytes" if isinstance(source, (bytes, bytearray)) else f"audio file {os.fspath(source)!r}"
    handle = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray)) else source
    try:
        array, sampling_rate = soundfile.read(handle, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as error:
        raise ValueError(f"Cannot decode {name} with soundfile ({error}); it reads WAV, FLAC, OGG and MP3: convert "
                         "other formats first, or pass the samples as an array.") from error
    return array.mean(axis=1, dtype=np.float32) if array.shape[1] > 1 else array[:, 0], int(sampling_rate)


def resample(wave: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """`wave` resampled from `from_rate` to `to_rate` Hz with soxr (high quality)."""
    if from_rate == to_rate:
        return wave
    try:
        import soxr
    except ImportError as error:  # pragma: no cover - soxr is a dependency of emodna_hf
        raise ImportError(f"Audio at {from_rate} Hz must be resampled to {to_rate} Hz: pip install soxr") from error
    return soxr.resample(wave, from_rate, to_rate).astype(np.float32, copy=False)
