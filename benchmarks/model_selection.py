#!/usr/bin/env python
"""Model selection without target labels: how well does each label-free criterion pick models?

    python benchmarks/model_selection.py                                  # 7 methods × 6 synth directions, seed 0
    python benchmarks/model_selection.py --corpora synth-en synth-de synth-es --output outputs/benchmarks/ms_espeak
    python benchmarks/model_selection.py --seeds 0 1 --groups synth-a,synth-b,synth-c synth-en,synth-de,synth-es
    python benchmarks/model_selection.py --analyse a/model_selection.json b/model_selection.json  # pool results

Every run is the recipe's default (`--config`) for one method of `benchmarks/cross_corpus.py`'s table and one
direction, evaluated `--evaluations` times during training (`eval_steps` a share of the run). Each evaluation is a
*candidate model* (method × checkpoint) with its label-free criteria (`emodna_hf.selection`) and, for scoring
only, its true target UAR. For each criterion the report gives, per direction and then averaged:

* **Spearman ρ** between the criterion (signed so that higher means better) and the target UAR over the candidates;
* **selection**: the target UAR of the candidate the criterion ranks first, against the best candidate (the
  oracle that peeks at target labels), the median candidate, and the Emo-DNA default at the end of its budget
  (what a user gets without selecting); "gap" = oracle − picked;
* **method choice**: the same over the final checkpoints only (choosing a method), and **checkpoint choice**:
  within each run, the picked checkpoint minus the final one.

Writes OUTPUT/model_selection.json (every evaluation, rewritten after each run; a rerun resumes) and
OUTPUT/model_selection.md. Target labels are read for scoring only, after training, never by a criterion.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from cross_corpus import (
    DEFAULT_CONFIG,
    METHODS,
    _jsonable,
    _write,
    direction_args,
    load_settings,
    method_args,
)
from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_METHODS = ["source_only", "adabn", "dann", "mmd", "emodna", "no_class_alignment", "fixed_threshold"]
DEFAULT_METHOD = "emodna"  # the recipe's default: what a user gets without selecting


def parse_cli(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Other options go to the recipe's argument parser.")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=DEFAULT_METHODS)
    parser.add_argument("--corpora", nargs="+", default=["synth-a", "synth-b", "synth-c"],
                        help="As in benchmarks/cross_corpus.py.")
    parser.add_argument("--groups", nargs="+", metavar="A,B,C",
                        help="Instead of --corpora: groups of corpora (comma-separated names); the directions are "
                        "every ordered pair within each group (e.g. the two generators of the development set).")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--evaluations", type=int, default=6, help="Evaluations (candidate checkpoints) per run.")
    parser.add_argument("--output", type=Path, default=ROOT / "outputs" / "benchmarks" / "model_selection")
    parser.add_argument("--analyse", nargs="+", type=Path, metavar="JSON",
                        help="Only report on these result files (pooled), without training.")
    return parser.parse_known_args(argv)


class _Recorder(TrainerCallback):
    """Keeps every evaluation's metrics with its step."""

    def __init__(self):
        self.evaluations: list[dict[str, float]] = []

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.evaluations.append({"step": state.global_step, "max_steps": state.max_steps, **(metrics or {})})


def _points(recorder: _Recorder, record: dict[str, Any], run: dict[str, Any]) -> list[dict[str, Any]]:
    from emodna_hf.selection import CRITERIA

    points = []
    for evaluation in recorder.evaluations:
        point = {**run, "step": evaluation["step"], "fraction": evaluation["step"] / evaluation["max_steps"],
                 "target_uar": evaluation.get("eval_target_uar")}
        point.update({name: evaluation.get(f"eval_{name}") for name in CRITERIA})
        points.append(point)
    final_step = record["train"]["steps"]
    points = [p for p in points if p["step"] != final_step]
    final = {**run, "step": final_step, "fraction": 1.0, "target_uar": record["target"]["uar"]}
    final.update({name: record["selection"].get(name) for name in CRITERIA})
    return [*points, dict(final, final=True)]


def _signed(point: dict[str, Any], criterion: str) -> float | None:
    from emodna_hf.selection import CRITERIA

    value = point.get(criterion)
    if value is None or not np.isfinite(value):
        return None
    return value if CRITERIA[criterion][0] else -value


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's ρ (average ranks for ties)."""
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def analyse(points: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per criterion: mean ρ, picked / oracle / median / default target UAR, method- and checkpoint-choice gains."""
    from emodna_hf.selection import CRITERIA

    groups: dict[tuple, list[dict]] = {}
    for p in points:
        groups.setdefault((p["source"], p["target"], p["seed"]), []).append(p)
    table = {}
    for criterion in CRITERIA:
        rho, picked, oracle, median, default, method_pick, method_oracle, checkpoint_gain = ([] for _ in range(8))
        for candidates in groups.values():
            scored = [(s, p) for p in candidates if (s := _signed(p, criterion)) is not None]
            if len(scored) < 2:
                continue
            rho.append(spearman([s for s, _ in scored], [p["target_uar"] for _, p in scored]))
            picked.append(max(scored, key=lambda sp: sp[0])[1]["target_uar"])
            oracle.append(max(p["target_uar"] for p in candidates))
            median.append(statistics.median(p["target_uar"] for p in candidates))
            finals = [p for p in candidates if p.get("final")]
            default.append(next((p["target_uar"] for p in finals if p["method"] == DEFAULT_METHOD), float("nan")))
            final_scored = [(s, p) for s, p in scored if p.get("final")]
            if final_scored:
                method_pick.append(max(final_scored, key=lambda sp: sp[0])[1]["target_uar"])
                method_oracle.append(max(p["target_uar"] for p in finals))
            for method in {p["method"] for p in candidates}:
                run = [(s, p) for s, p in scored if p["method"] == method]
                last = [p for _, p in run if p.get("final")]
                if len(run) >= 2 and last:
                    checkpoint_gain.append(max(run, key=lambda sp: sp[0])[1]["target_uar"] - last[0]["target_uar"])
        if not picked:
            continue
        table[criterion] = {
            "directions": len(picked),
            "spearman": float(np.nanmean(rho)) if not np.all(np.isnan(rho)) else float("nan"),
            "picked_uar": float(np.mean(picked)), "oracle_uar": float(np.mean(oracle)),
            "median_uar": float(np.mean(median)),
            "default_uar": float(np.mean(default)),  # NaN unless every direction has the default's run
            "selection_gap": float(np.mean(oracle) - np.mean(picked)),
            "method_choice_uar": float(np.mean(method_pick)) if method_pick else float("nan"),
            "method_oracle_uar": float(np.mean(method_oracle)) if method_oracle else float("nan"),
            "checkpoint_choice_gain": float(np.mean(checkpoint_gain)) if checkpoint_gain else float("nan"),
        }
    return table


def report(points: list[dict[str, Any]], sources: list[str]) -> str:
    from emodna_hf.selection import CRITERIA

    table = analyse(points)
    runs = {(p["method"], p["source"], p["target"], p["seed"]) for p in points}
    any_row = next(iter(table.values()), {})
    lines = [
        "# Model selection without target labels", "",
        f"From {', '.join(sources)}: {len(runs)} runs ({len({r[0] for r in runs})} methods × "
        f"{len({(r[1], r[2]) for r in runs})} directions × {len({r[3] for r in runs})} seed(s)), "
        f"{len(points)} candidate models (checkpoints). Target UAR in %, averaged over directions × seeds; "
        f"ρ: Spearman rank correlation between the criterion and the true target UAR over a direction's "
        f"candidates. Oracle (best candidate, peeks at target labels) {100 * any_row.get('oracle_uar', np.nan):.1f}, "
        f"median candidate {100 * any_row.get('median_uar', np.nan):.1f}, Emo-DNA default at the end of its budget "
        f"(no selection) {100 * any_row.get('default_uar', np.nan):.1f}.", "",
        "| criterion | better | ρ | picked (any method, any checkpoint) | gap to oracle | picked method (final checkpoints) "
        "| checkpoint choice vs final |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in sorted(table.items(), key=lambda item: -item[1]["picked_uar"]):
        lines.append(
            f"| `{name}` | {'higher' if CRITERIA[name][0] else 'lower'} | {row['spearman']:+.2f} | "
            f"{100 * row['picked_uar']:.1f} | {100 * row['selection_gap']:.1f} | {100 * row['method_choice_uar']:.1f} "
            f"(oracle {100 * row['method_oracle_uar']:.1f}) | {100 * row['checkpoint_choice_gain']:+.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args, recipe_argv = parse_cli(argv)
    if args.analyse:
        points = [p for path in args.analyse for p in json.loads(path.read_text(encoding="utf-8"))["points"]]
        print(report(points, [str(p) for p in args.analyse]))
        return
    import datasets
    import transformers

    from emodna_hf.experiment import load_data, run_experiment

    groups = [group.split(",") for group in args.groups] if args.groups else [args.corpora]
    names = [name for group in groups for name in group]
    corpus_keys, corpora, base_model, base_data, base_training = load_settings(args.config, names, recipe_argv)
    by_name = {corpus["name"]: corpus for corpus in corpora}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "logs").mkdir(exist_ok=True)
    base_training = dataclasses.replace(
        base_training, output_dir=str(args.output / "trainer"), report_to="none", save_strategy="no",
        disable_tqdm=True, eval_strategy="steps", eval_steps=1 / args.evaluations,
    )
    results_path, table_path = args.output / "model_selection.json", args.output / "model_selection.md"
    settings = _jsonable({"config": args.config, "recipe_argv": recipe_argv, "evaluations": args.evaluations})
    points: list[dict] = []
    if results_path.exists():
        saved = json.loads(results_path.read_text(encoding="utf-8"))
        if saved["settings"] != settings:
            sys.exit(f"error: {results_path} holds runs with other settings; use another --output or delete it.")
        points = saved["points"]
    logging.basicConfig(level=logging.WARNING)
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    done = {(p["method"], p["source"], p["target"], p["seed"]) for p in points}
    directions = [(by_name[s], by_name[t]) for group in groups for s, t in itertools.permutations(group, 2)]
    for source, target in directions:
        todo = [(m, seed) for m in args.methods for seed in args.seeds
                if (m, source["name"], target["name"], seed) not in done]
        if not todo:
            continue
        data_args = direction_args(base_data, source, target, corpus_keys)
        data = load_data(data_args)
        for method, seed in todo:
            started, recorder = time.time(), _Recorder()
            with open(args.output / "logs" / f"{source['name']}_to_{target['name']}.log", "a",
                      encoding="utf-8") as log, contextlib.redirect_stdout(log):
                record = run_experiment(method_args(base_model, method), data_args,
                                        dataclasses.replace(base_training, seed=seed), data=data,
                                        write_outputs=False, callbacks=[recorder])
            run = {"method": method, "source": source["name"], "target": target["name"], "seed": seed}
            points += _points(recorder, record, run)
            _write(results_path, json.dumps({"settings": settings, "points": points}, indent=1))
            _write(table_path, report(points, [str(args.output)]))
            print(f"{source['name']} → {target['name']} {method} seed {seed}: target UAR "
                  f"{record['target']['uar']:.1%} ({time.time() - started:.0f} s)", flush=True)
    text = report(points, [str(args.output)])
    _write(table_path, text)
    print(f"\n{text}\nWrote {table_path} and {results_path}")


if __name__ == "__main__":
    main()
