#!/usr/bin/env python
"""Learning curves: target UAR and the label-free training statistics against epochs, per method.

    python benchmarks/learning_curves.py                                   # default recipe, 6 synthetic directions
    python benchmarks/learning_curves.py --methods source_only emodna --seeds 0 --eval-every 5 --epochs 120

Every run is `run_experiment` with the recipe's settings (default: recipes/configs/default.yaml), evaluated every
`--eval-every` epochs on the target (its labels used for *scoring only*: nothing is selected on them) and on the
held-out source. Per epoch it also records what a user can see without target labels: the loss terms, the
pseudo-label mask rate, the discriminator accuracy and the held-out source UAR. A comparison between methods is
meaningful where these curves have flattened.

Writes OUTPUT/learning_curves.json (every evaluation of every run; resumable like cross_corpus.py) and
OUTPUT/learning_curves.png (mean over directions and seeds, one panel per statistic, one line per method).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import logging
import math
import statistics
import warnings
from collections import defaultdict
from pathlib import Path

from cross_corpus import (
    DEFAULT_CONFIG,
    DEFAULT_CORPORA,
    METHODS,
    _write,
    direction_args,
    load_settings,
    method_args,
)
from transformers import TrainerCallback

# Panels of the figure: (log key, title). Target UAR uses target labels (scoring only); the rest need none.
PANELS = [
    ("eval_target_uar", "target UAR (scored with target labels)"),
    ("eval_source_uar", "held-out source UAR (label-free for the target)"),
    ("loss_classification", "source cross-entropy"),
    ("pseudo_label_mask_rate", "pseudo-label mask rate"),
    ("domain_accuracy", "corpus discriminator accuracy"),
    ("loss_pseudo_label", "pseudo-label cross-entropy"),
]


class _History(TrainerCallback):
    """Collects every log entry, keyed by epoch (training logs averaged per whole epoch)."""

    def __init__(self):
        self.train: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.evals: list[dict[str, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if any(key.startswith("eval_") for key in logs):
            self.evals.append({"epoch": round(state.epoch or 0.0, 3), **{
                k: float(v) for k, v in logs.items() if k.startswith("eval_") and isinstance(v, (int, float))}})
        elif "loss" in logs:
            epoch = math.ceil(state.epoch or 0.0)
            for key, value in logs.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    self.train[epoch][key].append(float(value))

    def as_rows(self) -> list[dict[str, float]]:
        rows: dict[float, dict[str, float]] = {}
        for evaluation in self.evals:  # one log entry per evaluated set (target, source) at the same epoch
            rows.setdefault(evaluation["epoch"], {}).update(evaluation)
        for epoch, values in self.train.items():
            rows.setdefault(float(epoch), {"epoch": float(epoch)}).update(
                {k: statistics.fmean(v) for k, v in values.items()})
        return [rows[e] for e in sorted(rows)]


def plot(runs: list[dict], methods: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(15, 8))
    colours = {method: f"C{i}" for i, method in enumerate(methods)}  # one colour per method in every panel
    for axis, (key, panel_title) in zip(axes.flat, PANELS, strict=True):
        for method in methods:
            by_epoch: dict[float, list[float]] = defaultdict(list)
            for run in (r for r in runs if r["method"] == method):
                for row in run["history"]:
                    if key in row:
                        by_epoch[row["epoch"]].append(row[key])
            if by_epoch:
                epochs = sorted(by_epoch)
                axis.plot(epochs, [statistics.fmean(by_epoch[e]) for e in epochs], label=method,
                          color=colours[method], marker="o" if key.startswith("eval_") else None, markersize=3)
        axis.set_title(panel_title, fontsize=10)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colours[m], label=m) for m in methods]
    figure.legend(handles=handles, loc="lower center", ncol=len(methods), fontsize=9)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0.05, 1, 0.97))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--methods", nargs="+", choices=list(METHODS),
                        default=["source_only", "adabn", "dann", "mmd", "emodna"])
    parser.add_argument("--corpora", nargs="+", default=DEFAULT_CORPORA)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=float, help="num_train_epochs (default: the config's)")
    parser.add_argument("--eval-every", type=int, default=5, help="Evaluate every this many epochs.")
    parser.add_argument("--scheme")
    parser.add_argument("--output", type=Path, default=Path("outputs/benchmarks/learning_curves"))
    args, recipe_argv = parser.parse_known_args(argv)
    import datasets
    import transformers

    from emodna_hf.experiment import load_data, run_experiment

    for option, flag in (("epochs", "--num_train_epochs"), ("scheme", "--scheme")):
        if getattr(args, option) is not None:
            recipe_argv += [flag, str(getattr(args, option))]
    corpus_keys, corpora, base_model, base_data, base_training = load_settings(args.config, args.corpora, recipe_argv)
    args.output.mkdir(parents=True, exist_ok=True)
    base_training = dataclasses.replace(base_training, output_dir=str(args.output / "trainer"), report_to="none",
                                        save_strategy="no", disable_tqdm=True, eval_strategy="steps",
                                        logging_strategy="steps")
    logging.basicConfig(level=logging.WARNING)
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*pin_memory.*")
    results_path = args.output / "learning_curves.json"
    runs = json.loads(results_path.read_text())["runs"] if results_path.exists() else []
    done = {(r["method"], r["source"], r["target"], r["seed"]) for r in runs}
    for source, target in itertools.permutations(corpora, 2):
        todo = [(m, s) for m in args.methods for s in args.seeds if (m, source["name"], target["name"], s) not in done]
        if not todo:
            continue
        data_args = direction_args(base_data, source, target, corpus_keys)
        data = load_data(data_args)
        steps_per_epoch = math.ceil(max(len(data.source_train), len(data.target_train))
                                    / base_training.per_device_train_batch_size)
        training = dataclasses.replace(base_training, eval_steps=args.eval_every * steps_per_epoch,
                                       logging_steps=steps_per_epoch)
        for method, seed in todo:
            history = _History()
            with open(args.output / "log.txt", "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
                record = run_experiment(method_args(base_model, method), data_args,
                                        dataclasses.replace(training, seed=seed), data=data, write_outputs=False,
                                        callbacks=[history])
            runs.append({"method": method, "source": source["name"], "target": target["name"], "seed": seed,
                         "final_target_uar": record["target"]["uar"], "history": history.as_rows()})
            _write(results_path, json.dumps({"settings": vars(args) | {"output": str(args.output)}, "runs": runs},
                                            indent=1, default=str))
            print(f"{source['name']} → {target['name']} {method} seed {seed}: final target UAR "
                  f"{record['target']['uar']:.1%}", flush=True)
    epochs = base_training.num_train_epochs
    plot(runs, args.methods, args.output / "learning_curves.png",
         f"Mean over {len({(r['source'], r['target']) for r in runs})} directions and seeds {args.seeds}; "
         f"{epochs:g} epochs, evaluation every {args.eval_every}")
    print(f"Wrote {results_path} and {args.output / 'learning_curves.png'}")


if __name__ == "__main__":
    main()
