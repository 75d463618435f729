#!/usr/bin/env python
"""Train several settings on the same corpora and pick one by a label-free criterion (no target labels).

    python recipes/sweep.py --sweep adaptation_method=emodna,mmd,dann                # picked by the default criterion
    python recipes/sweep.py --criterion source_uar --sweep class_alignment_weight=0.3,1,3 \\
        --sweep learning_rate=3e-4,1e-3 --config recipes/configs/default.yaml --output_dir outputs/sweep

Every combination of the `--sweep NAME=V1,V2,...` values is one `recipes/train.py` run (same config file and
options, plus `--NAME VALUE`), written to OUTPUT_DIR/NAME-VALUE_.../ (model, card, metrics.json). Each run's final
model is scored by `--criterion`, one of the label-free criteria of `emodna_hf.selection` (held-out source UAR or
loss, information maximisation, soft neighbourhood density, DEV, IWV; docs/benchmarks.md measures how well each
one picks), and the best run is named in OUTPUT_DIR/sweep.json and sweep.md. Target labels are never read to pick:
where the target happens to be labelled, its UAR is shown for information only.

Sweepable: model and method options (ModelArguments) and training options (e.g. learning_rate, num_train_epochs,
seed); not the corpora (the runs must see the same data to be comparable), which are loaded once.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import sys
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"
DEFAULT_CRITERION = "target_im"  # the best-ranked criterion of benchmarks/model_selection.py


def parse_sweep(values: list[str]) -> dict[str, list[str]]:
    """`["a=1,2", "b=x"]` → `{"a": ["1", "2"], "b": ["x"]}`."""
    grid: dict[str, list[str]] = {}
    for value in values:
        name, sep, options = value.partition("=")
        name = name.strip().lstrip("-")
        if not sep or not name or not options.strip():
            raise ValueError(f"--sweep {value!r}: expected NAME=VALUE1,VALUE2,...")
        if name in grid:
            raise ValueError(f"--sweep {name} is given twice.")
        grid[name] = [v.strip() for v in options.split(",") if v.strip()]
    if not grid:
        raise ValueError("Give at least one --sweep NAME=VALUE1,VALUE2,...")
    return grid


def point_name(point: dict[str, str]) -> str:
    return "_".join(f"{name}-{value}" for name, value in point.items()).replace("/", "-")


def main(argv: list[str] | None = None) -> dict:
    import datasets
    import transformers

    from emodna_hf.arguments import DataArguments
    from emodna_hf.experiment import (
        check_output_dir,
        choose_torch_threads,
        format_summary,
        load_data,
        parse_args,
        run_experiment,
    )
    from emodna_hf.selection import CRITERIA, best_by, is_label_free, selection_metric_name

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Other options go to recipes/train.py's argument parser.")
    parser.add_argument("--sweep", action="append", default=[], metavar="NAME=V1,V2",
                        help="An option and its values; several --sweep make a grid.")
    parser.add_argument("--criterion", default=DEFAULT_CRITERION,
                        help=f"Label-free criterion that picks the run: {', '.join(CRITERIA)} "
                        f"(default {DEFAULT_CRITERION}).")
    args, recipe_argv = parser.parse_known_args(argv)
    try:
        criterion = selection_metric_name(args.criterion)
        if criterion not in CRITERIA or not is_label_free(criterion):
            raise ValueError(f"--criterion {args.criterion!r}: choose a label-free criterion, one of "
                             f"{', '.join(CRITERIA)} (target-label metrics never pick models).")
        grid = parse_sweep(args.sweep)
        data_fields = {f.name for f in dataclasses.fields(DataArguments)}
        if data_fields & set(grid):
            raise ValueError(f"--sweep {', '.join(sorted(data_fields & set(grid)))}: corpus options cannot be swept "
                             "(runs compared by a criterion must see the same data).")
        if "--output_dir" not in recipe_argv:
            recipe_argv += ["--output_dir", "outputs/sweep"]
        points = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
        parsed = [parse_args([*recipe_argv, *(x for n, v in p.items() for x in (f"--{n}", v))],
                             default_config=DEFAULT_CONFIG) for p in points]
        model_args, data_args, training_args, _ = parsed[0]
        if training_args.push_to_hub:
            raise ValueError("--push_to_hub: push the picked run with recipes/push_to_hub.py after the sweep.")
        output_dir = Path(training_args.output_dir)
        for point, (_, _, run_training, _) in zip(points, parsed, strict=True):
            check_output_dir(output_dir / point_name(point), run_training.overwrite_output_dir)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.WARNING, stream=sys.stdout)
    logging.getLogger("emodna_hf").setLevel(logging.INFO)
    transformers.utils.logging.set_verbosity_warning()
    datasets.disable_progress_bars()
    choose_torch_threads(*(run_model for run_model, *_ in parsed))
    try:
        data = load_data(data_args)  # checks the sources first (paths, source/target overlap)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    runs = []
    for point, (run_model, run_data, run_training, config_file) in zip(points, parsed, strict=True):
        run_training = dataclasses.replace(run_training, output_dir=str(output_dir / point_name(point)))
        record = run_experiment(run_model, run_data, run_training, data=data, config_file=config_file,
                                command=" ".join(["python recipes/sweep.py", *(sys.argv[1:] if argv is None else argv)]))
        print(format_summary(record), flush=True)
        target = record["target"]
        runs.append({"settings": point, "output_dir": record["output_dir"], criterion: record["selection"].get(criterion),
                     "selection": {k: v for k, v in record["selection"].items() if k in CRITERIA},
                     "target_uar_for_information_only": target.get("uar") if target.get("labelled") else None})
    greater_is_better = CRITERIA[criterion][0]
    picked = best_by(runs, criterion)
    if picked is None:
        sys.exit(f"error: no run has {criterion} (criteria from the held-out source need source_eval_fraction > 0).")
    result = {"criterion": criterion, "greater_is_better": greater_is_better, "picked": picked["output_dir"],
              "runs": runs}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "sweep.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    lines = [f"# Sweep picked by `{criterion}` ({'higher' if greater_is_better else 'lower'} is better)", "",
             "| run | " + criterion + " | target UAR (information only, not used to pick) |", "|---|---|---|"]
    for run in runs:
        mark = " **(picked)**" if run is picked else ""
        value = "n/a" if run[criterion] is None else f"{run[criterion]:.4f}"
        uar = run["target_uar_for_information_only"]
        lines.append(f"| {Path(run['output_dir']).name}{mark} | {value} | "
                     f"{'unlabelled' if uar is None else f'{uar:.3f}'} |")
    text = "\n".join(lines) + "\n"
    (output_dir / "sweep.md").write_text(text, encoding="utf-8")
    print(f"\n{text}\npicked: {picked['output_dir']} (sweep.json, sweep.md in {output_dir})")
    return result


if __name__ == "__main__":
    main()
