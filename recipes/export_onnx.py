#!/usr/bin/env python
"""Export a saved model folder to ONNX: writes FOLDER/model.onnx (dynamic batch and length axes) and checks it
with onnxruntime against the PyTorch model on a padded batch.

    python recipes/export_onnx.py outputs/default [--output PATH] [--no_check] [--opset 18]

`recipes/push_to_hub.py` uploads model.onnx with the rest of the folder. Inputs of the graph: `input_values`
float32 and `attention_mask` int64 `(batch, samples)`, or for the opensmile backbone the eGeMAPS functionals
`input_features` `(batch, 88)` computed with the `opensmile` package (see emodna_hf/export.py and the README).
Needs `pip install "emodna_hf[onnx]"` (onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="A saved model folder (config.json, model.safetensors).")
    parser.add_argument("--output", default=None, help="Where to write the .onnx file (default MODEL_DIR/model.onnx).")
    parser.add_argument("--no_check", action="store_true", help="Skip the onnxruntime comparison.")
    parser.add_argument("--atol", type=float, default=1e-4, help="Largest logit difference the check accepts.")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset version (default: the exporter's).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not (Path(args.model_dir) / "config.json").is_file():
        sys.exit(f"error: {args.model_dir} is not a saved model folder (no config.json).")
    try:
        from emodna_hf.export import export_onnx
    except ImportError as error:  # pragma: no cover - the onnx extra is missing
        sys.exit(f"error: {error}. Install the ONNX tools: pip install 'emodna_hf[onnx]'")
    try:
        result = export_onnx(args.model_dir, args.output, check=not args.no_check, atol=args.atol,
                             opset_version=args.opset)
    except AssertionError as error:
        sys.exit(f"error: {error}")
    inputs = ", ".join(result.input_names)
    checked = ("" if result.max_abs_difference is None
               else f"; onnxruntime logits within {result.max_abs_difference:.2g} of PyTorch's on a padded batch")
    print(f"wrote {result.path} (inputs: {inputs}){checked}")


if __name__ == "__main__":
    main()
