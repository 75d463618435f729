"""The audio-classification pipeline that ships with every saved model (`custom_pipelines` in its config.json).

transformers' own `AudioClassificationPipeline` decodes files and bytes with the ffmpeg program and resamples
`{"raw": ..., "sampling_rate": ...}` with torchaudio; neither is a dependency of emodna_hf (and torchaudio's PyPI
wheels need CUDA libraries). This subclass decodes with soundfile and lets the model's feature extractor resample
with soxr, so that

    classifier = pipeline("audio-classification", model=folder_or_repo, trust_remote_code=True)

takes a file path, the bytes of a file, a 1-D array at the model's rate, or `{"raw"|"array": ..., "sampling_rate":
sr}` at any rate, with integer PCM rescaled and multichannel audio, (samples, channels) or (channels, samples),
mixed down (`audio_emodna`). A speaker-normalised model (`config.speaker_normalization`) also needs the speaker's
statistics in the dict: `{"raw": ..., "sampling_rate": sr, "speaker_mean": mean, "speaker_std": std}` (from
`model.speaker_statistics`). Shipped as remote code: `pipeline(..., trust_remote_code=True)` loads it from the
model's folder or Hub repository.
"""

from __future__ import annotations

import os

import torch
from transformers import AudioClassificationPipeline

from .audio_emodna import decode, waveform


class EmoDnaAudioClassificationPipeline(AudioClassificationPipeline):
    """`AudioClassificationPipeline` whose inputs are decoded with soundfile and resampled with soxr."""

    def preprocess(self, inputs):
        rate = self.feature_extractor.sampling_rate
        if isinstance(inputs, (str, os.PathLike)) and str(inputs).startswith(("http://", "https://")):
            raise ValueError(f"{inputs} is a URL: download the file first and pass its path or its bytes.")
        speaker = {}
        if isinstance(inputs, (str, os.PathLike, bytes, bytearray)):
            audio, sampling_rate = decode(inputs)
        elif isinstance(inputs, dict):
            if "sampling_rate" not in inputs or not ("raw" in inputs or "array" in inputs):
                raise ValueError('A dict input needs the samples under "raw" (or "array") and their "sampling_rate", '
                                 f"got the keys {sorted(inputs)}.")
            audio = inputs["raw"] if "raw" in inputs else inputs["array"]
            sampling_rate = int(inputs["sampling_rate"])
            speaker = {name: inputs[name] for name in ("speaker_mean", "speaker_std") if name in inputs}
        else:
            audio, sampling_rate = inputs, rate  # an array or tensor: at the model's rate, as the stock pipeline
        processed = self.feature_extractor(waveform(audio), sampling_rate=sampling_rate, return_tensors="pt")
        if self.dtype is not None:
            processed = processed.to(dtype=self.dtype)
        for name, value in speaker.items():  # the model checks them (and refuses input without them)
            processed[name] = torch.as_tensor(value, dtype=torch.float32).reshape(1, -1)
        return processed


def custom_pipelines() -> dict:
    """What a saved model's config.json lists under `custom_pipelines`, read by `transformers.pipeline` (a new dict
    each time: `pipeline()` replaces the class names under "pt" by the classes)."""
    return {"audio-classification": {"impl": "pipeline_emodna.EmoDnaAudioClassificationPipeline",
                                     "pt": ["AutoModelForAudioClassification"], "type": "audio"}}
