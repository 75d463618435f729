"""Run in a fresh process: load a saved folder with emodna_hf made unimportable, print logits and pipeline scores.

Usage: python remote_code_check.py MODEL_DIR INPUT_NPY. Prints one JSON object.
"""

import json
import sys

# Make `import emodna_hf` fail even though the package is installed: the folder's remote code must suffice.
sys.modules["emodna_hf"] = None

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
    with torch.no_grad():
        result[name] = {"class": type(model).__name__, "module": type(model).__module__,
                        "logits": model(waveforms).logits.tolist()}
classifier = pipeline("audio-classification", model=model_dir, trust_remote_code=True)
result["pipeline"] = classifier(waveforms[0].numpy(), top_k=None)
print(json.dumps(result))
