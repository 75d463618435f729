"""Run in a fresh process: load a saved folder with emodna_hf made unimportable, print logits and pipeline scores.

Usage: python remote_code_check.py MODEL_DIR INPUT_NPY [WAV]. Prints one JSON object. With WAV (a float WAV file of
the first input row), also the pipeline's scores for each input form it takes (`inputs`), and where ffmpeg is.
"""

import json
import shutil
import sys

# Make `import emodna_hf` fail even though the package is installed: the folder's remote code must suffice.
sys.modules["emodna_hf"] = None
# ...and torchaudio, which the stock audio-classification pipeline resamples with (the test also hides ffmpeg).
sys.modules["torchaudio"] = None

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModel, AutoModelForAudioClassification, pipeline  # noqa: E402

model_dir, input_path = sys.argv[1], sys.argv[2]
try:
    import emodna_hf  # noqa: F401

    raise SystemExit("emodna_hf is importable; the check would prove nothing")
except ImportError:
    pass

waveforms = torch.from_numpy(np.load(input_path))
result = {}
for name, auto_class in [("audio_classification", AutoModelForAudioClassification), ("auto_model", AutoModel)]:
    model = auto_class.from_pretrained(model_dir, trust_remote_code=True).eval()
    statistics = {}
    if getattr(model.config, "speaker_normalization", False):
        # A speaker-normalised model: the statistics of the waveforms as one speaker's utterances; without them
        # the forward pass must refuse.
        try:
            model(waveforms)
            result.setdefault("refused", {})[name] = None
        except ValueError as error:
            result.setdefault("refused", {})[name] = str(error)
        statistics = dict(zip(("speaker_mean", "speaker_std"), model.speaker_statistics(waveforms), strict=True))
    with torch.no_grad():
        result[name] = {"class": type(model).__name__, "module": type(model).__module__,
                        "logits": model(waveforms, **statistics).logits.tolist()}
classifier = pipeline("audio-classification", model=model_dir, trust_remote_code=True)
try:
    result["pipeline"] = classifier(waveforms[0].numpy(), top_k=None)
except ValueError as error:
    result["pipeline_refused"] = str(error)
if len(sys.argv) > 3:
    import soxr  # noqa: E402

    wav, wave = sys.argv[3], waveforms[0].numpy()
    at_8k = soxr.resample(wave, 16000, 8000)
    pcm = np.round(wave / np.abs(wave).max() * 32000).astype(np.int16)
    forms = {
        "array": wave, "path": wav, "bytes": open(wav, "rb").read(),
        "raw_8k": {"raw": at_8k, "sampling_rate": 8000}, "array_8k_resampled": soxr.resample(at_8k, 8000, 16000),
        "int16": {"array": pcm, "sampling_rate": 16000}, "int16_as_float": pcm.astype(np.float32) / 32768,
        "stereo_channels_last": np.stack([wave, wave], axis=1), "stereo_channels_first": np.stack([wave, wave]),
    }
    result["inputs"] = {name: {s["label"]: s["score"] for s in classifier(value, top_k=None)}
                        for name, value in forms.items()}
    result["ffmpeg"] = shutil.which("ffmpeg")
    result["pipeline_class"] = type(classifier).__module__ + "." + type(classifier).__name__
print(json.dumps(result))
