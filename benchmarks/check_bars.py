#!/usr/bin/env python
"""Check a cross-corpus benchmark's results against the project's bars (docs/benchmarks.md).

    python benchmarks/check_bars.py outputs/benchmarks/categorical4/cross_corpus.json
    python benchmarks/check_bars.py benchmarks/results/*.json          # several result files, one report each

For the method `--method` (default `emodna`, the default settings) it reports, on target UAR:
- seed stability: the sample std over seeds of the all-direction mean (bar ≤ 2 points) and the largest range over
  seeds of one direction (bar ≤ 10 points);
- the margin over the classical bar `egemaps_lr_corpus` (bar ≥ +5 points on categorical4; `--classical-margin 0`
  for arousal/valence, whose bar is "above it") and over the best of `dann`, `mmd`, `adabn` (bar ≥ +3 points,
  `--baseline-margin`), where they were run;
- every ablation (`no_*`, `fixed_threshold`, `curriculum_threshold`) against the full method: at or below it within
  one std over seeds (the larger of the two methods' stds).
Only directions and seeds that every compared method finished are used. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

BASELINES = ("dann", "mmd", "adabn")
ABLATION_PREFIXES = ("no_", "fixed_threshold", "curriculum_threshold")


def summary(runs: list[dict], method: str, cells: list[tuple[str, str]], seeds: list[int]) -> dict:
    value = {(r["source"], r["target"], r["seed"]): 100 * r["target_uar"] for r in runs if r["method"] == method}
    per_seed = [statistics.fmean(value[s, t, seed] for s, t in cells) for seed in seeds]
    ranges = {f"{s} → {t}": max(value[s, t, seed] for seed in seeds) - min(value[s, t, seed] for seed in seeds)
              for s, t in cells}
    return {"mean": statistics.fmean(per_seed), "std": statistics.stdev(per_seed) if len(seeds) > 1 else 0.0,
            "max_range": max(ranges.values()), "worst_direction": max(ranges, key=ranges.get)}


def check(path: Path | list[Path], method: str, classical_margin: float = 5.0, baseline_margin: float = 3.0) -> str:
    paths = path if isinstance(path, list) else [path]
    runs = [run for p in paths for run in json.loads(p.read_text())["runs"]]
    path = " + ".join(map(str, paths))
    methods = sorted({r["method"] for r in runs})
    if method not in methods:
        return f"## {path}\n\n`{method}` was not run.\n"
    done = {m: {(r["source"], r["target"], r["seed"]) for r in runs if r["method"] == m} for m in methods}
    compared = [m for m in methods if done[m] >= done[method]]  # methods run wherever the method was
    common = done[method]
    cells = sorted({(s, t) for s, t, _ in common})
    seeds = sorted({seed for _, _, seed in common})
    # Use only seeds every direction has.
    seeds = [seed for seed in seeds if all((s, t, seed) in common for s, t in cells)]
    stats = {m: summary(runs, m, cells, seeds) for m in compared}
    full = stats[method]
    lines = [f"## {path}", "", f"{len(cells)} directions, seeds {seeds}; target UAR (%), mean ± std over seeds of "
             "the all-direction mean.", "", "| check | value | bar | met |", "|---|---|---|---|"]

    def row(name: str, value: str, bar: str, met: bool) -> None:
        lines.append(f"| {name} | {value} | {bar} | {'yes' if met else '**no**'} |")

    row(f"{method}: std over seeds", f"{full['std']:.2f}", "≤ 2", full["std"] <= 2)
    row(f"{method}: largest range over seeds", f"{full['max_range']:.1f} ({full['worst_direction']})", "≤ 10",
        full["max_range"] <= 10)
    if "egemaps_lr_corpus" in stats:
        margin = full["mean"] - stats["egemaps_lr_corpus"]["mean"]
        row(f"{method} − egemaps_lr_corpus", f"{margin:+.1f} ({full['mean']:.1f} vs "
            f"{stats['egemaps_lr_corpus']['mean']:.1f})", f"> +{classical_margin:g}" if not classical_margin
            else f"≥ +{classical_margin:g}", margin > 0 if not classical_margin else margin >= classical_margin)
    present = [b for b in BASELINES if b in stats]
    if present:
        best = max(present, key=lambda b: stats[b]["mean"])
        margin = full["mean"] - stats[best]["mean"]
        row(f"{method} − best of {', '.join(present)}", f"{margin:+.1f} (best: {best} {stats[best]['mean']:.1f})",
            f"≥ +{baseline_margin:g}", margin >= baseline_margin)
    for ablation in (m for m in compared if m.startswith(ABLATION_PREFIXES)):
        difference = stats[ablation]["mean"] - full["mean"]
        tolerance = max(full["std"], stats[ablation]["std"])
        row(f"{ablation} − {method}", f"{difference:+.1f} ({stats[ablation]['mean']:.1f} ± "
            f"{stats[ablation]['std']:.1f})", f"≤ +{tolerance:.1f}", difference <= tolerance)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="cross_corpus.json files")
    parser.add_argument("--method", default="emodna")
    parser.add_argument("--classical-margin", type=float, default=5.0,
                        help="Points above egemaps_lr_corpus (categorical4 bar: 5; arousal/valence: 0 = above it).")
    parser.add_argument("--baseline-margin", type=float, default=3.0, help="Points above the best of DANN/MMD/AdaBN.")
    parser.add_argument("--combine", action="store_true",
                        help="One report over the runs of all files (e.g. the directions of several corpus sets).")
    args = parser.parse_args(argv)
    groups = [list(args.results)] if args.combine else [[path] for path in args.results]
    print("\n".join(check(group, args.method, args.classical_margin, args.baseline_margin) for group in groups))


if __name__ == "__main__":
    main()
