#!/usr/bin/env python
"""Source-free adaptation benchmark: target UAR of a source-only checkpoint, unadapted vs SHOT vs TENT vs AdaBN.

    python benchmarks/source_free.py                                   # synth-a/b/c: 6 directions × 3 seeds
    python benchmarks/source_free.py --corpora synth-en synth-de synth-es --output outputs/benchmarks/sf_espeak
    python benchmarks/source_free.py --quick --corpora synth-a synth-b  # smoke test (numbers meaningless)

For every ordered pair (S, T) of `--corpora` (generated `synthetic:<preset>` corpora, docs/benchmarks.md) and seed:

1. `recipes/train.py` trains a **source-only** checkpoint on S alone: its target slot is S itself
   (`--allow_source_target_overlap`), so no other corpus, and never T, is seen before adaptation; the checkpoint's
   corpus normalisation holds S's statistics.
2. `recipes/adapt.py` adapts that checkpoint to T, whose labels only score it (`before` = unadapted, `after`),
   with each of `--methods` (shot, tent, adabn). It never sees S.

`--train_args` / `--adapt_args` pass options to the two recipes (e.g. `--adapt_args "--max_steps 300"`). The
default model is `tcn` (it has LayerNorm layers, which TENT adapts; the recipe's default openSMILE model has
none, and TENT refuses it) with corpus normalisation (whose target statistics AdaBN re-estimates; the unadapted
checkpoint standardises with S's). Writes OUTPUT/source_free.json (every finished run; a rerun skips them, so an
interrupted benchmark resumes) and OUTPUT/source_free.md (mean ± std of the target UAR, also printed); logs under
OUTPUT/logs/, checkpoints under OUTPUT/runs/ (removed after the run unless --keep_checkpoints).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("shot", "tent", "adabn")
TRAIN_DEFAULTS = ["--adaptation_method", "source_only", "--corpus_normalization", "true", "--backbone_type", "tcn",
                  "--num_train_epochs", "30",
                  "--per_device_train_batch_size", "32", "--learning_rate", "1e-3"]
ADAPT_DEFAULTS = ["--max_steps", "100", "--per_device_train_batch_size", "32", "--learning_rate", "1e-4",
                  "--lr_scheduler_type", "constant"]
# --quick: a smoke-test budget (tiny corpora, a few steps).
QUICK_TRAIN = ["--max_steps", "3", "--per_device_train_batch_size", "4", "--max_duration_s", "0.8",
               "--config_overrides", "tcn_hidden_size=16,tcn_num_blocks=2"]
QUICK_ADAPT = ["--max_steps", "2", "--per_device_train_batch_size", "4", "--max_duration_s", "0.8"]
QUICK_SIZE = {"n_per_class_per_speaker": 1, "n_speakers": 4}


def parse_cli(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", nargs="+", default=["synth-a", "synth-b", "synth-c"],
                        help="Generated corpus presets (synthetic:<preset>); every ordered pair is a direction.")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, help="Seeds (default: 0 1 2; --quick: 0).")
    parser.add_argument("--train_args", default="", help="Extra recipes/train.py options (one string).")
    parser.add_argument("--adapt_args", default="", help="Extra recipes/adapt.py options (one string).")
    parser.add_argument("--output", type=Path, help="Results folder (default: outputs/benchmarks/source_free[_quick]).")
    parser.add_argument("--quick", action="store_true", help="Smoke test: tiny corpora, a few steps.")
    parser.add_argument("--keep_checkpoints", action="store_true", help="Keep the trained and adapted models.")
    args = parser.parse_args(argv)
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.output = args.output or ROOT / "outputs" / "benchmarks" / f"source_free{'_quick' if args.quick else ''}"
    return args


def _run(command: list[str], log: Path) -> None:
    """Run a recipe, its output in `log`; a failure stops the benchmark naming the log."""
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with open(log, "w") as out:
        out.write(" ".join(map(shlex.quote, command)) + "\n\n")
        out.flush()
        completed = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    if completed.returncode:
        raise SystemExit(f"error: {command[1]} failed (exit {completed.returncode}); see {log}")


def _sizes(corpus: str, quick: bool, role: str) -> list[str]:
    """--quick: tiny generated corpora (train.py's sources are keyed by corpus name, a target is not)."""
    return [f"--{role}_load_kwargs", json.dumps({corpus: QUICK_SIZE} if role == "source" else QUICK_SIZE)] \
        if quick else []


def train_source_only(source: str, seed: int, args: argparse.Namespace, folder: Path) -> Path:
    """A source-only checkpoint of `source` (its target slot is the source itself: nothing else is seen)."""
    output = folder / f"source-{source}-seed{seed}"
    if (output / "model.safetensors").exists():
        return output
    command = [sys.executable, str(ROOT / "recipes" / "train.py"), "--source_name", source,
               "--source_dataset", f"synthetic:{source}", "--target_name", f"{source}-as-target",
               "--target_dataset", f"synthetic:{source}", "--allow_source_target_overlap", "true",
               "--output_dir", str(output), "--overwrite_output_dir", "true", "--seed", str(seed),
               "--report_to", "none", "--disable_tqdm", "true", *TRAIN_DEFAULTS, *(QUICK_TRAIN if args.quick else []),
               *_sizes(source, args.quick, "source"), *_sizes(source, args.quick, "target"),
               *shlex.split(args.train_args)]
    _run(command, args.output / "logs" / f"train-{source}-seed{seed}.log")
    return output


def adapt(checkpoint: Path, target: str, method: str, seed: int, args: argparse.Namespace, folder: Path) -> dict:
    output = folder / f"{checkpoint.name}-to-{target}-{method}"
    command = [sys.executable, str(ROOT / "recipes" / "adapt.py"), "--model_name_or_path", str(checkpoint),
               "--target_name", target, "--target_dataset", f"synthetic:{target}", "--output_dir", str(output),
               "--overwrite_output_dir", "true", "--adaptation_method", method, "--seed", str(seed),
               "--report_to", "none", "--disable_tqdm", "true", "--save_strategy", "no", *ADAPT_DEFAULTS,
               *(QUICK_ADAPT if args.quick else []), *_sizes(target, args.quick, "target"),
               *shlex.split(args.adapt_args)]
    _run(command, args.output / "logs" / f"adapt-{checkpoint.name}-to-{target}-{method}.log")
    record = json.loads((output / "adaptation.json").read_text())
    if not args.keep_checkpoints:
        shutil.rmtree(output, ignore_errors=True)
    return {"before": record["before"]["uar"], "after": record["after"]["uar"],
            "im_before": record["before"]["information_maximization"],
            "im_after": record["after"]["information_maximization"]}


def _mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


def table(results: dict[str, Any], corpora: list[str], methods: list[str]) -> str:
    """Mean ± std (over seeds) of the target UAR (%) per direction: unadapted, then each method."""
    lines = ["| direction | unadapted | " + " | ".join(methods) + " |", "|---" * (len(methods) + 2) + "|"]
    every: dict[str, list[float]] = {"unadapted": [], **{m: [] for m in methods}}
    for source, target in itertools.permutations(corpora, 2):
        runs = [r for r in results.values() if r["source"] == source and r["target"] == target]
        unadapted = [r["before"] for r in runs if r["method"] == methods[0]]
        cells = {m: [r["after"] for r in runs if r["method"] == m] for m in methods}
        every["unadapted"] += unadapted
        for m in methods:
            every[m] += cells[m]
        lines.append(f"| {source} → {target} | {_mean_std(unadapted)} | "
                     + " | ".join(_mean_std(cells[m]) for m in methods) + " |")
    lines.append("| **mean** | " + " | ".join(_mean_std(every[k]) for k in every) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_cli(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    results_path = args.output / "source_free.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    folder = args.output / "runs"
    for seed, source in itertools.product(args.seeds, args.corpora):
        pending = [(t, m) for t in args.corpora if t != source for m in args.methods
                   if f"{source}->{t}/{m}/seed{seed}" not in results]
        if not pending:
            continue
        checkpoint = train_source_only(source, seed, args, folder)
        for target, method in pending:
            key = f"{source}->{target}/{method}/seed{seed}"
            results[key] = {"source": source, "target": target, "method": method, "seed": seed,
                            **adapt(checkpoint, target, method, seed, args, folder)}
            results_path.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{key}: target UAR {results[key]['before']:.3f} -> {results[key]['after']:.3f}", flush=True)
        if not args.keep_checkpoints:
            shutil.rmtree(checkpoint, ignore_errors=True)
    report = ("# Source-free adaptation: target UAR (%) of a source-only checkpoint\n\n"
              f"Corpora {', '.join(args.corpora)}; seeds {args.seeds}; train options {TRAIN_DEFAULTS + shlex.split(args.train_args)}; "
              f"adapt options {ADAPT_DEFAULTS + shlex.split(args.adapt_args)}"
              + (" (--quick: smoke test, numbers meaningless)" if args.quick else "") + ".\n\n"
              + table(results, args.corpora, args.methods) + "\n")
    (args.output / "source_free.md").write_text(report)
    print(report)
    return results


if __name__ == "__main__":
    main()
