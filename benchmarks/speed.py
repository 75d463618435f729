#!/usr/bin/env python
"""Cost benchmark: ratios measured within one run, robust to a noisy machine.

    python benchmarks/speed.py                   # CPU: tcn + a small wav2vec2-shaped backbone
    python benchmarks/speed.py --quick           # smoke test (a few minutes)
    python benchmarks/speed.py --device cuda --dtype bf16 --size base     # GPU: wav2vec2-base-sized backbone

1. Training step (forward, losses, backward, AdamW step) of `emodna` vs `source_only`: same backbone, same
   batch of B source + B target rows (the trainer feeds both halves to every method); tcn on cached MFCCs
   (what training uses) and a fine-tuned wav2vec2-shaped backbone (CNN feature encoder frozen) on waveforms.
2. Inference throughput of `EmoDnaForAudioClassification` vs `Wav2Vec2ForSequenceClassification` with the
   same backbone config (plain, and with its weighted layer sum).
3. End to end (`run_experiment` wall time: feature caching, training, evaluation; corpora loaded beforehand)
   with cached vs recomputed features: tcn (MFCCs) and a frozen wav2vec2-shaped backbone, synth-a → synth-b.

The variants of a comparison are timed in turn, step by step in one process (3: whole runs in turn), and a
ratio is the median of the ratios of neighbouring measurements. Peak memory is measured for every variant
alone in a fresh subprocess: peak RSS (`ru_maxrss`) on the CPU, `torch.cuda.max_memory_allocated` on a GPU;
Δ is the growth over what the process held before the measured part (imports, inputs, corpora). Batches are
random 2-3 s waveforms with random labels; backbones are randomly initialised (speed does not depend on the
weights). Writes OUTPUT/speed.md (also printed) and OUTPUT/speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULT_PREFIX = "SPEED_RESULT "
# Encoder configs of the "wav2vec2-shaped" backbone: small (CPU) or base-sized (Wav2Vec2Config's defaults).
# LayerDrop is off: with transformers 5 a dropped layer also drops its hidden state, which the weighted layer
# sum of EmoDnaForAudioClassification cannot take in training (see docs/benchmarks.md).
SSL_CONFIGS: dict[str, dict[str, Any]] = {
    "small": {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 1024,
              "conv_dim": [256] * 7, "layerdrop": 0.0},
    "base": {"layerdrop": 0.0},
}
# steps: timed steps / forward passes per variant; rounds: end-to-end runs per variant; batch: rows per
# corpus; samples: utterances per split in end-to-end runs; memory_runs: each variant's memory in its own
# process (else the group's timing process reports the memory of all its variants together).
BUDGETS: dict[str, dict[str, Any]] = {
    "full": {"warmup": 2, "steps": {"train_step": 10, "inference": 30}, "rounds": 3, "epochs": 4,
             "batch": {"tcn": 32, "wav2vec2": 4}, "samples": {"tcn": 96, "wav2vec2": 24},
             "memory_runs": True},
    "quick": {"warmup": 1, "steps": {"train_step": 3, "inference": 3}, "rounds": 1, "epochs": 1,
              "batch": {"tcn": 16, "wav2vec2": 2}, "samples": {"tcn": 32, "wav2vec2": 8},
              "memory_runs": False},
    "gpu": {"warmup": 5, "steps": {"train_step": 30, "inference": 100}, "rounds": 3, "epochs": 4,
            "batch": {"tcn": 32, "wav2vec2": 16}, "samples": {"tcn": None, "wav2vec2": 128},
            "memory_runs": True},
}
MEMORY_STEPS = 2
AT_MOST_2_2 = ("≤ 2.2×", lambda ratio: ratio <= 2.2)
AT_LEAST_0_95 = ("≥ 0.95×", lambda ratio: ratio >= 0.95)
# (benchmark, backbone, reference variant, compared variants, what the ratio is, goal)
GROUPS = [
    ("train_step", "tcn", "source_only", ["emodna"], "step time emodna / source_only", AT_MOST_2_2),
    ("train_step", "wav2vec2", "source_only", ["emodna"], "step time emodna / source_only", AT_MOST_2_2),
    ("inference", "wav2vec2", "Wav2Vec2ForSequenceClassification",
     ["Wav2Vec2ForSequenceClassification (weighted layer sum)", "EmoDnaForAudioClassification"],
     "throughput / Wav2Vec2ForSequenceClassification's", AT_LEAST_0_95),
    ("end_to_end", "tcn", "cached", ["recomputed"], "wall time recomputed / cached", None),
    ("end_to_end", "wav2vec2", "cached", ["recomputed"], "wall time recomputed / cached", None),
]


# --- measurements (run in a subprocess: `speed.py --worker SPEC`) -------------------------------------------


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mib(device) -> float:
    import resource

    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _start_memory(device) -> float:
    """The memory held before the measured part (ru_maxrss cannot be reset: the CPU peak so far)."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return _peak_mib(device)


def _waveform_batch(batch: int, device, with_corpora: bool) -> dict:
    """Random 2-3 s waveforms at 16 kHz: `batch` rows (`with_corpora`: and as many unlabelled target rows)."""
    import numpy as np

    from emodna_hf.data import UDADataCollator

    rng = np.random.default_rng(0)
    rows = []
    for i in range(2 * batch if with_corpora else batch):
        row = {"input_values": 0.1 * rng.standard_normal(int(rng.integers(32000, 48001))).astype(np.float32)}
        if with_corpora:
            row.update(labels=int(rng.integers(4)) if i < batch else None, corpus_id=int(i >= batch))
        rows.append(row)
    return {k: v.to(device) for k, v in UDADataCollator()(rows).items()}


def _config(spec: dict, backbone: str, **kwargs):
    from emodna_hf.modeling import EmoDnaConfig

    labels = dict(enumerate(["angry", "happy", "neutral", "sad"]))
    if backbone == "tcn":
        return EmoDnaConfig(id2label=labels, **kwargs)
    return EmoDnaConfig(
        backbone_type="wav2vec2", backbone_config=SSL_CONFIGS[spec["size"]], id2label=labels, **kwargs
    )


def train_step_functions(spec: dict, device) -> dict[str, Callable[[], Any]]:
    import torch

    from emodna_hf.modeling import EmoDnaForAudioClassification
    from emodna_hf.trainer import EmoDnaTrainer, EmoDnaTrainingArguments

    batch = _waveform_batch(spec["batch"], device, with_corpora=True)
    functions = {}
    for method in spec["variants"]:
        torch.manual_seed(0)
        model = EmoDnaForAudioClassification(_config(spec, spec["backbone"], adaptation_method=method))
        args = EmoDnaTrainingArguments(
            output_dir=tempfile.mkdtemp(),
            use_cpu=device.type == "cpu",
            bf16=spec["dtype"] == "bf16",
            report_to="none",
        )
        trainer = EmoDnaTrainer(model=model, args=args)
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which we do not run
        trainer.state.max_steps, trainer.state.global_step = 100, 50  # past the pseudo-label warm-up
        inputs = dict(batch)
        if spec["backbone"] == "tcn":  # training runs on cached MFCCs
            waveforms, mask = inputs.pop("input_values"), inputs.pop("attention_mask")
            with torch.no_grad():
                features = model.compute_cacheable_features(waveforms, mask)
            inputs["input_features"], inputs["feature_mask"] = features
        prepared = trainer.accelerator.prepare_model(trainer.model)  # mixed-precision autocast as in training

        def step(trainer=trainer, model=prepared, inputs=inputs) -> None:
            trainer.training_step(model, dict(inputs))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)

        functions[method] = step
    return functions


def inference_functions(spec: dict, device) -> dict[str, Callable[[], Any]]:
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

    from emodna_hf.modeling import EmoDnaForAudioClassification

    inputs = _waveform_batch(spec["batch"], device, with_corpora=False)
    dtype = torch.bfloat16 if spec["dtype"] == "bf16" else torch.float32
    functions = {}
    for name in spec["variants"]:
        torch.manual_seed(0)
        if name == "EmoDnaForAudioClassification":
            model = EmoDnaForAudioClassification(_config(spec, "wav2vec2"))
        else:
            config = Wav2Vec2Config(
                **SSL_CONFIGS[spec["size"]], num_labels=4, use_weighted_layer_sum="weighted" in name
            )
            model = Wav2Vec2ForSequenceClassification(config)
        model = model.to(device).eval()

        def forward(model=model) -> None:
            with torch.inference_mode(), torch.autocast(device.type, dtype, enabled=dtype != torch.float32):
                model(**inputs)

        functions[name] = forward
    return functions


def end_to_end(spec: dict, device) -> tuple[dict[str, list[float]], float, dict]:
    """One `run_experiment` of the only variant: its wall time, the memory before it, training facts."""
    import datasets

    from emodna_hf.experiment import DataArguments, ModelArguments, load_data, run_experiment
    from emodna_hf.trainer import EmoDnaTrainingArguments

    datasets.disable_progress_bars()
    (variant,) = spec["variants"]
    data_args = DataArguments(max_duration_s=3.0, max_samples_per_split=spec["samples"])
    data = load_data(data_args)
    ssl = spec["backbone"] != "tcn"
    model_args = ModelArguments(
        backbone_type=spec["backbone"],
        cache_features=variant == "cached",
        freeze_backbone=True if ssl else None,
        config_overrides={"backbone_config": SSL_CONFIGS[spec["size"]]} if ssl else None,
    )
    training_args = EmoDnaTrainingArguments(
        output_dir=tempfile.mkdtemp(),
        num_train_epochs=spec["epochs"],
        per_device_train_batch_size=spec["batch"],
        per_device_eval_batch_size=2 * spec["batch"],
        learning_rate=2e-3,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=device.type == "cpu",
        bf16=spec["dtype"] == "bf16",
    )
    baseline = _start_memory(device)
    record = run_experiment(model_args, data_args, training_args, data=data, write_outputs=False)
    return (
        {variant: [record["wall_time_s"]]},
        baseline,
        {"train_runtime_s": record["train"]["runtime_s"], "steps": record["train"]["steps"]},
    )


def interleaved(
    functions: dict[str, Callable[[], Any]], steps: int, warmup: int, device
) -> dict[str, list[float]]:
    """Warm every variant up, then time them in turn (alternating the order), `steps` times each."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}
    names = list(functions)
    for i in range(steps):
        for name in names if i % 2 == 0 else names[::-1]:
            _sync(device)
            start = time.perf_counter()
            functions[name]()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return times


def worker(spec: dict) -> dict[str, Any]:
    import torch

    import emodna_hf.experiment  # noqa: F401  (imports counted before the measured part)

    device = torch.device(spec["device"])
    extra: dict[str, Any] = {}
    if spec["kind"] == "end_to_end":
        times, baseline, extra = end_to_end(spec, device)
    else:
        baseline = _start_memory(device)
        make = train_step_functions if spec["kind"] == "train_step" else inference_functions
        times = interleaved(make(spec, device), spec["steps"], spec["warmup"], device)
    return {"times": times, "peak_mib": _peak_mib(device), "baseline_mib": baseline, **extra}


# --- orchestration ------------------------------------------------------------------------------------------


def run_worker(spec: dict) -> dict[str, Any]:
    process = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    lines = [line for line in process.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if process.returncode or not lines:
        raise RuntimeError(
            f"Worker {spec['kind']}/{spec['backbone']} {spec['variants']} failed:\n{process.stderr[-3000:]}"
        )
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def measure_group(
    kind: str, backbone: str, variants: list[str], common: dict, budget: dict
) -> dict[str, Any]:
    """Timings (interleaved) and per-variant memory of one comparison."""
    spec = dict(
        common,
        kind=kind,
        backbone=backbone,
        batch=budget["batch"][backbone],
        steps=budget["steps"].get(kind),
        warmup=budget["warmup"],
        epochs=budget["epochs"],
        samples=budget["samples"][backbone],
    )
    results: dict[str, dict[str, Any]] = {v: {"times": []} for v in variants}
    if kind == "end_to_end":  # whole runs: one subprocess each, in turn, giving time and memory together
        for r in range(budget["rounds"]):
            for variant in variants if r % 2 == 0 else variants[::-1]:
                out = run_worker(dict(spec, variants=[variant]))
                results[variant]["times"] += out["times"][variant]
                results[variant].update({k: v for k, v in out.items() if k != "times"})
        return results
    timing = run_worker(dict(spec, variants=variants))
    for variant in variants:
        out = (
            run_worker(dict(spec, variants=[variant], steps=MEMORY_STEPS, warmup=1))
            if budget["memory_runs"]
            else timing
        )
        results[variant].update(
            times=timing["times"][variant], peak_mib=out["peak_mib"], baseline_mib=out["baseline_mib"]
        )
    return results


def median_ratio(compared: list[float], reference: list[float], inverse: bool) -> float:
    """Median over neighbouring measurements of compared/reference (reference/compared when `inverse`)."""
    ratios = [(r / c) if inverse else (c / r) for c, r in zip(compared, reference, strict=True)]
    return statistics.median(ratios)


def describe(kind: str, backbone: str, spec: dict, budget: dict) -> str:
    b, samples = budget["batch"][backbone], budget["samples"][backbone]
    name = "tcn" if backbone == "tcn" else f"wav2vec2-{spec['size']}" + " frozen" * (kind == "end_to_end")
    if kind == "train_step":
        return f"Training step, {name} ({b} + {b} rows)"
    if kind == "inference":
        return f"Inference, {name} (batch {b})"
    cap = f", {samples} utterances per split" if samples else ""
    return f"End to end, {name} ({budget['epochs']} epochs, {b} + {b} rows{cap})"


def format_time(kind: str, seconds: float, batch: int) -> str:
    if kind == "inference":
        return f"{batch / seconds:.1f} utt/s"
    return f"{seconds:.1f} s/run" if kind == "end_to_end" else f"{1000 * seconds:.0f} ms/step"


def table_rows(group: dict[str, Any], kind: str, batch: int) -> list[str]:
    rows = []
    for variant, result in group["variants"].items():
        ratio, goal = group["ratios"].get(variant), group["goal"] or ("", None)
        shown = "reference" if ratio is None else f"{ratio:.2f}×"
        verdict = ""
        if ratio is not None and goal[1]:
            verdict = f"{goal[0]}: {'met' if goal[1](ratio) else 'NOT met'}"
        median = format_time(kind, statistics.median(result["times"]), batch)
        peak, growth = result["peak_mib"], result["peak_mib"] - result["baseline_mib"]
        cells = [group["benchmark"], variant, median, shown, verdict, f"{peak:.0f}", f"{growth:+.0f}"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: autocast.")
    parser.add_argument("--size", choices=list(SSL_CONFIGS), default="small", help="wav2vec2-shaped size.")
    parser.add_argument("--quick", action="store_true", help="Smoke test: tiny budget.")
    parser.add_argument("--output", type=Path, default=ROOT / "outputs" / "benchmarks" / "speed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(json.loads(args.worker))), flush=True)
        return

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit(
            f"error: --device cuda needs a CUDA GPU, but torch.cuda.is_available() is False (torch "
            f"{torch.__version__}). Run this on a GPU machine, or use --device cpu."
        )
    budget = BUDGETS["quick" if args.quick else "gpu" if args.device == "cuda" else "full"]
    common = {"device": args.device, "dtype": args.dtype, "size": args.size}
    rows, groups = [], []
    for kind, backbone, reference, compared, ratio_meaning, goal in GROUPS:
        title = describe(kind, backbone, common, budget)
        print(f"Measuring: {title} ...", flush=True)
        results = measure_group(kind, backbone, [reference, *compared], common, budget)
        times = {v: results[v]["times"] for v in results}
        ratios = {v: median_ratio(times[v], times[reference], inverse=kind == "inference") for v in compared}
        group = dict(benchmark=title, ratio=ratio_meaning, goal=goal, ratios=ratios, variants=results)
        rows += table_rows(group, kind, budget["batch"][backbone])
        groups.append(dict(group, goal=goal and goal[0]))
    cpu = f"CPU, {torch.get_num_threads()} torch thread(s)"
    device = torch.cuda.get_device_name() if args.device == "cuda" else cpu
    memory = "peak CUDA memory allocated" if args.device == "cuda" else "peak RSS"
    quick = "; QUICK budget (smoke test; memory: all variants of a comparison in one process)" * args.quick
    table = "\n".join([
        f"Device: {device}; dtype {args.dtype}; wav2vec2-shaped backbone: {args.size} (Wav2Vec2Config with "
        f"{SSL_CONFIGS[args.size]}); torch {torch.__version__}{quick}",
        "",
        f"| Benchmark | Variant | Median | Ratio | Goal | {memory} (MiB) | Δ (MiB) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        *(f"- {g['benchmark']}: ratio = {g['ratio']}" for g in groups),
    ])
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "speed.md").write_text(table + "\n", encoding="utf-8")
    record = {"settings": dict(common, budget=budget), "device": device, "torch": torch.__version__,
              "groups": groups}
    (args.output / "speed.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(f"\n{table}\n\nWrote {args.output / 'speed.md'} and {args.output / 'speed.json'}")


if __name__ == "__main__":
    main()
