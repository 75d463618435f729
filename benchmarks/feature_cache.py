#!/usr/bin/env python
"""What the content-addressed feature store saves a cross-corpus benchmark, and where a direction's time goes.

    python benchmarks/feature_cache.py                                    # synth-a, synth-b, synth-c
    python benchmarks/feature_cache.py --corpora synth-en synth-de synth-es --out results.json

Three measurements, one after the other in one process, from an empty cache folder:

1. **Before** (features keyed by the split a run makes, as up to 0.1.0): every direction computes the features of
   its source split (train + held-out) and of its target, each in a feature store of its own, so nothing is shared
   between directions or roles (decoded audio is shared, as it was).
2. **After**: every corpus is extracted once, up front, in one shared store (as `benchmarks/cross_corpus.py` does
   now); each direction's splits then read it.
3. **A direction with features in the store**: the default recipe's run (`run_experiment`, the default config,
   nothing written) on every direction, timed per phase: loading and preparing the corpora, training, and the
   final evaluation and report; and once with the output folder written (model, card, plots).

Extraction counts are exact; times are wall-clock seconds on this machine (and CPU seconds, children included),
so compare them within one run. Writes a JSON file and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Clock:
    """Wall and CPU seconds since the last `lap()`."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), _cpu()

    def lap(self) -> dict[str, float]:
        wall, cpu = time.perf_counter(), _cpu()
        out = {"wall_s": round(wall - self.wall, 2), "cpu_s": round(cpu - self.cpu, 2)}
        self.wall, self.cpu = wall, cpu
        return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpora", nargs="+", default=["synth-a", "synth-b", "synth-c"])
    parser.add_argument("--config", default=str(ROOT / "recipes" / "configs" / "default.yaml"))
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmarks" / "feature_cache.json")
    args = parser.parse_args(argv)

    import datasets
    import transformers
    from cross_corpus import direction_args, extract_up_front, load_settings

    from emodna_hf.data import cache_features
    from emodna_hf.data.feature_store import STORE_COUNTS
    from emodna_hf.experiment import (
        build_model,
        create_feature_extractor,
        load_data,
        prepare_inputs,
        run_experiment,
    )

    logging.basicConfig(level=logging.WARNING)
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    root = Path(tempfile.mkdtemp(prefix="feature-cache-bench-"))
    corpus_keys, corpora, base_model, base_data, base_training = load_settings(
        args.config, args.corpora, ["--audio_cache_dir", str(root / "shared")])
    directions = list(itertools.permutations(corpora, 2))
    result: dict = {"corpora": args.corpora, "directions": len(directions), "cache": str(root)}

    # Decoding is shared by both schemes: done first, so that neither is charged for it.
    clock = Clock()
    data_by_direction = {(s["name"], t["name"]): load_data(direction_args(base_data, s, t, corpus_keys))
                         for s, t in directions}
    result["decoding"] = clock.lap()

    def featurise(data, cache_dir: Path) -> None:
        model = build_model(base_model, data.label_names, data.corpus_names, base_data.sampling_rate)
        prepared, _ = prepare_inputs(dataclasses.replace(data, cache_dir=None), model,
                                     create_feature_extractor(model.config), cache_features=False)
        for split in (prepared.source_train, prepared.source_eval, prepared.target):
            if len(split):
                cache_features(split, model, cache_dir=cache_dir)

    before = STORE_COUNTS["computed"]
    clock.lap()
    for (source, target), data in data_by_direction.items():
        featurise(data, root / "before" / f"{source}_to_{target}")
    result["before"] = dict(clock.lap(), extractions=STORE_COUNTS["computed"] - before)

    before = STORE_COUNTS["computed"]
    up_front = extract_up_front(corpora, base_model, base_data, corpus_keys, store_dir=str(root / "after"))
    for data in data_by_direction.values():
        featurise(data, root / "after")
    result["after"] = dict(clock.lap(), extractions=STORE_COUNTS["computed"] - before, up_front_wall_s=round(up_front, 2))

    training = dataclasses.replace(base_training, output_dir=str(root / "trainer"), report_to="none",
                                   save_strategy="no", disable_tqdm=True)
    runs = []
    for index, (source, target) in enumerate(directions):
        data_args = direction_args(base_data, source, target, corpus_keys)
        write = index == 0
        if write:
            training = dataclasses.replace(training, output_dir=str(root / "written"))
        clock.lap()
        data = load_data(data_args)
        loading = clock.lap()
        with contextlib.redirect_stdout(io.StringIO()):  # the trainer's log lines
            record = run_experiment(base_model, data_args, training, data=data, write_outputs=write)
        whole = clock.lap()
        train_s = record["train"]["runtime_s"]
        runs.append({"direction": f"{source['name']} → {target['name']}", "loading": loading, "run": whole,
                     "train_wall_s": round(train_s, 2), "rest_of_run_wall_s": round(whole["wall_s"] - train_s, 2),
                     "outputs_written": write, "features": record["train"]["features"],
                     "target_uar": record["target"]["uar"]})
        if write:
            training = dataclasses.replace(training, output_dir=str(root / "trainer"))
    result["directions_with_stored_features"] = runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(table(result))
    return result


def table(result: dict) -> str:
    before, after = result["before"], result["after"]
    lines = [
        f"Corpora {', '.join(result['corpora'])}: {result['directions']} directions.",
        "",
        "| | openSMILE extractions | wall s | CPU s |",
        "|---|---|---|---|",
        f"| before: per split and direction | {before['extractions']} | {before['wall_s']} | {before['cpu_s']} |",
        f"| after: once per utterance (store) | {after['extractions']} | {after['wall_s']} | {after['cpu_s']} |",
        f"| ratio | {before['extractions'] / max(1, after['extractions']):.1f}× | "
        f"{before['wall_s'] / max(1e-9, after['wall_s']):.1f}× | {before['cpu_s'] / max(1e-9, after['cpu_s']):.1f}× |",
        "",
        "| direction | loading s | training s | rest of the run s | features computed | outputs written |",
        "|---|---|---|---|---|---|",
    ]
    for run in result["directions_with_stored_features"]:
        lines.append(f"| {run['direction']} | {run['loading']['wall_s']} | {run['train_wall_s']} | "
                     f"{run['rest_of_run_wall_s']} | {run['features']['computed']} | {run['outputs_written']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
