#!/usr/bin/env python
"""Deployment benchmark: inference throughput of PyTorch float32, PyTorch bfloat16 weights and onnxruntime, as
ratios measured in one run.

    python benchmarks/inference.py                      # CPU, 1 thread: writes benchmarks/results/inference_cpu.*
    python benchmarks/inference.py --threads 2 --name inference_cpu_2threads
    python benchmarks/inference.py --quick              # smoke test (seconds)
    python benchmarks/inference.py --device cuda        # GPU: float32, bfloat16 and float16 weights (+ onnxruntime
                                                        # where its CUDA provider is installed)

Models (random weights: speed does not depend on them): `tcn` with the config defaults; a small wav2vec2-shaped
SSL encoder (`--size base`: wav2vec2-base-sized); `opensmile`, whose graph starts at the 88 eGeMAPS functionals
(the openSMILE front end is C++ outside any graph: its time per batch is reported alone, it is the same whatever
runs the classifier). Inputs: a padded batch of random 2-3 s utterances (`--batch`), the same for every variant.

Variants: `torch_fp32` (the reference), `torch_bf16` (weights in bfloat16: `model.to(torch.bfloat16)`, front end
and statistics float32 inside; on a CPU only where it has native bfloat16 instructions, AVX512-BF16 or AMX),
`onnxruntime` (the graph of emodna_hf.export.export_onnx, float32, CPU provider, same thread count). The variants
are timed in turn, batch after batch, in one process; a ratio is the median over rounds of
throughput(variant) / throughput(torch_fp32) in the same round, so machine noise that lasts longer than a round
cancels. Writes OUTPUT/NAME.json and NAME.md (also printed).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emodna_hf.export import export_onnx, onnx_inputs, padded_batch  # noqa: E402
from emodna_hf.modeling import EmoDnaConfig, EmoDnaForAudioClassification  # noqa: E402

LABELS = dict(enumerate(["angry", "happy", "neutral", "sad"]))
SSL_CONFIGS = {  # as benchmarks/speed.py: a small encoder for CPUs, or wav2vec2-base (Wav2Vec2Config defaults)
    "small": {"model_type": "wav2vec2", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
              "intermediate_size": 1024, "conv_dim": [256] * 7, "layerdrop": 0.0},
    "base": {"model_type": "wav2vec2", "layerdrop": 0.0},
}


def bf16_supported(device: torch.device) -> bool:
    """Native bfloat16 matmuls: any recent GPU; on a CPU, oneDNN's check for AVX512-BF16 / AMX."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    checker = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(checker()) if checker is not None else False


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def build_model(backbone: str, size: str) -> EmoDnaForAudioClassification:
    torch.manual_seed(0)
    kwargs = {"id2label": LABELS, "label2id": {v: k for k, v in LABELS.items()}}
    if backbone in ("tcn", "opensmile"):
        config = EmoDnaConfig(backbone_type=backbone, **kwargs)
    else:
        config = EmoDnaConfig(backbone_type="wav2vec2", backbone_config=SSL_CONFIGS[size], **kwargs)
    return EmoDnaForAudioClassification(config).eval()


def variants(backbone: str, model, device: torch.device, threads: int, workdir: Path) -> tuple[dict, dict]:
    """`{name: callable running one batch}` and facts about the inputs (batch, seconds, front-end time)."""
    rng = np.random.default_rng(0)
    lengths = [int(rng.integers(32000, 48001)) for _ in range(ARGS.batch)]
    input_values, attention_mask = padded_batch(lengths, seed=1)
    facts = {"batch": len(lengths), "audio_seconds": sum(lengths) / 16000}
    if backbone == "opensmile":
        start = time.perf_counter()
        feed = onnx_inputs(model, input_values, attention_mask)
        facts["opensmile_front_end_s_per_batch"] = time.perf_counter() - start
        torch_inputs = {"input_features": torch.from_numpy(feed["input_features"]).unsqueeze(1).to(device)}
    else:
        feed = onnx_inputs(model, input_values, attention_mask)
        torch_inputs = {"input_values": input_values.to(device), "attention_mask": attention_mask.to(device)}
    functions = {}
    dtypes = {"torch_fp32": torch.float32}
    if bf16_supported(device):
        dtypes["torch_bf16"] = torch.bfloat16
    if device.type == "cuda":
        dtypes["torch_fp16"] = torch.float16
    for name, dtype in dtypes.items():
        cast = build_model(backbone, ARGS.size).to(device=device, dtype=dtype)

        def run(cast=cast) -> None:
            with torch.inference_mode():
                cast(**torch_inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        functions[name] = run
    import onnxruntime

    providers = ["CUDAExecutionProvider"] if device.type == "cuda" else ["CPUExecutionProvider"]
    if set(providers) <= set(onnxruntime.get_available_providers()):
        path = workdir / f"{backbone}.onnx"
        facts["onnx_max_abs_difference"] = export_onnx(model, path).max_abs_difference
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = threads
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        functions["onnxruntime"] = lambda: session.run(["logits"], feed)
    return functions, facts


def measure(functions: dict, warmup: int, rounds: int) -> dict:
    """Interleaved timing: per round each variant runs one batch; ratios against torch_fp32 per round."""
    for _ in range(warmup):
        for run in functions.values():
            run()
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, run in functions.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    reference = times["torch_fp32"]
    return {name: {"median_s_per_batch": statistics.median(values),
                   "throughput_ratio": statistics.median(r / v for r, v in zip(reference, values, strict=True))}
            for name, values in times.items()}


def render(record: dict) -> str:
    lines = [f"# Inference throughput ({record['device']}, {record['threads']} thread(s), batch {record['batch']})",
             "", f"{record['machine']}; torch {record['torch']}, onnxruntime {record['onnxruntime']}; "
             f"bfloat16 {'native' if record['bf16_supported'] else 'not supported: not measured'}. "
             f"Ratios: throughput / torch_fp32's, median over {record['rounds']} interleaved rounds.", "",
             "| backbone | variant | ms / batch | × torch_fp32 |", "|---|---|---|---|"]
    for backbone, result in record["results"].items():
        for name, numbers in result["variants"].items():
            lines.append(f"| {backbone} | {name} | {numbers['median_s_per_batch'] * 1000:.3g} | "
                         f"{numbers['throughput_ratio']:.2f}× |")
    for backbone, result in record["results"].items():
        if "opensmile_front_end_s_per_batch" in result["facts"]:
            lines += ["", f"{backbone}: the openSMILE functionals themselves take "
                      f"{result['facts']['opensmile_front_end_s_per_batch']:.2f} s per batch (outside every "
                      "variant; the ratios compare the classifier from the functionals on)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads.")
    parser.add_argument("--backbones", nargs="+", default=["tcn", "opensmile", "wav2vec2"])
    parser.add_argument("--size", choices=sorted(SSL_CONFIGS), default="small")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 rounds, batch 2: a smoke test.")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default=None, help="Result file name (default inference_<device>).")
    ARGS = parser.parse_args(argv)
    if ARGS.quick:
        ARGS.rounds, ARGS.warmup, ARGS.batch = 2, 1, 2
    torch.set_num_threads(ARGS.threads)
    device = torch.device(ARGS.device)
    import onnxruntime

    record = {"device": device.type, "threads": ARGS.threads, "batch": ARGS.batch, "rounds": ARGS.rounds,
              "ssl_size": ARGS.size, "bf16_supported": bf16_supported(device), "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "machine": cpu_name(),
              "results": {}}
    with tempfile.TemporaryDirectory() as workdir:
        for backbone in ARGS.backbones:
            model = build_model(backbone, ARGS.size)
            functions, facts = variants(backbone, model, device, ARGS.threads, Path(workdir))
            record["results"][backbone] = {"facts": facts, "variants": measure(functions, ARGS.warmup, ARGS.rounds)}
    report = render(record)
    print(report)
    output = Path(ARGS.output)
    output.mkdir(parents=True, exist_ok=True)
    name = ARGS.name or f"inference_{device.type}"
    (output / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (output / f"{name}.md").write_text(report)
    return record


ARGS: argparse.Namespace


if __name__ == "__main__":
    main()
