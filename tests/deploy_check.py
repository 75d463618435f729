"""Run in a fresh process that cannot import emodna_hf: the deployment rows of issue 14 on saved folders.

Usage: python deploy_check.py INPUT_NPY MODEL_DIR... Prints one JSON object per folder: half-precision logits
(dtype= at load), and the logits of torch.onnx.export + onnxruntime and torch.export.export of the remote-code
model as loaded (the opensmile backbone from its functionals: model(input_features=...)).
"""

import json
import sys
import tempfile
import warnings
from pathlib import Path

sys.modules["emodna_hf"] = None  # the folder's remote code must suffice

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForAudioClassification  # noqa: E402

warnings.filterwarnings("ignore")
waveforms = torch.from_numpy(np.load(sys.argv[1]))
for model_dir in sys.argv[2:]:
    model = AutoModelForAudioClassification.from_pretrained(model_dir, trust_remote_code=True).eval()
    report = {"module": type(model).__module__}
    with torch.no_grad():
        report["float32"] = model(waveforms).logits.tolist()
        for name, dtype in [("bfloat16", torch.bfloat16), ("float16", torch.float16)]:
            half = AutoModelForAudioClassification.from_pretrained(model_dir, trust_remote_code=True, dtype=dtype)
            report[name] = half.eval()(waveforms).logits.float().tolist()
        if model.config.backbone_type == "opensmile":
            features, _ = model.compute_cacheable_features(waveforms)
            args, kwargs, feed = (), {"input_features": features}, {"input_features": features.numpy()}
        else:
            args, kwargs, feed = (waveforms,), {}, {"input_values": waveforms.numpy()}
        program = torch.export.export(model, args, kwargs)
        report["torch_export"] = program.module()(*args, **kwargs).logits.tolist()
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "model.onnx")
            torch.onnx.export(model, args, path, kwargs=kwargs, input_names=list(feed), dynamo=True,
                              verbose=False)
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            report["onnx"] = session.run(None, feed)[0].tolist()
    print(json.dumps({"model_dir": model_dir, **report}))
