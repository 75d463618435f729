#!/usr/bin/env python
"""Cross-corpus accuracy benchmark: methods × every source→target direction × seeds (target UAR and WAR).

    python benchmarks/cross_corpus.py                      # 9 methods × 6 synthetic directions × 3 seeds
    python benchmarks/cross_corpus.py --quick --methods source_only emodna --corpora synth-a synth-b
    python benchmarks/cross_corpus.py --corpora my_corpora.yaml --scheme arousal --seeds 0 1 2 3 4

Every run is `emodna_hf.experiment.run_experiment` with the settings of `--config` (default: the recipe's
default.yaml), its source and target replaced by each ordered pair of `--corpora`; nothing is saved per run.
The corpora of a direction are loaded once and shared by all its methods and seeds (the source train/eval
split is the same for every seed: seeds change the initialisation and the batch order). Other
`recipes/train.py` options (e.g. `--learning_rate 1e-3`, `--backbone_name_or_path microsoft/wavlm-base-plus`)
are passed through.

Writes OUTPUT/cross_corpus.md (mean ± std tables, also printed) and OUTPUT/cross_corpus.json (every finished
run, rewritten after each run): a rerun with the same settings skips the finished runs, so an interrupted
benchmark resumes. Training logs go to OUTPUT/logs/.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from emodna_hf.objectives import REGISTRY, objective_class

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "recipes" / "configs" / "default.yaml"
DEFAULT_CORPORA = ["synth-a", "synth-b", "synth-c"]
# EmoDnaConfig overrides of each benchmarked method: every registered adaptation method (emodna_hf.objectives:
# a method added there is benchmarked with no edit here), AdaBN, and the Emo-DNA ablations (one component off).
# Source-free methods (SHOT, TENT: `batches = "target"`) adapt a trained checkpoint: benchmarks/source_free.py.
_REGISTERED = ("source_only", *sorted(name for name in set(REGISTRY) - {"source_only", "emodna"}
                                      if objective_class(name).batches == "source_and_target"), "emodna")
METHODS: dict[str, dict[str, Any]] = {
    **{name: {"adaptation_method": name} for name in _REGISTERED[:1]},
    "adabn": {"adaptation_method": "source_only", "corpus_normalization": True},  # corpus normalisation alone
    **{name: {"adaptation_method": name} for name in _REGISTERED[1:]},
    "no_decoupling": {"adaptation_method": "emodna", "use_decoupling": False},
    "no_class_alignment": {"adaptation_method": "emodna", "use_class_alignment": False},
    "no_corpus_alignment": {"adaptation_method": "emodna", "use_corpus_alignment": False},
    "fixed_threshold": {"adaptation_method": "emodna", "adaptive_threshold": False},
    "no_corpus_normalization": {"adaptation_method": "emodna", "corpus_normalization": False},
    "curriculum_threshold": {"adaptation_method": "emodna", "pseudo_label_selection": "curriculum"},
}
# The classical bar and the target-supervised ceiling (benchmarks/classical.py): no training run.
CLASSICAL = ("egemaps_lr_source", "egemaps_lr_corpus", "target_supervised")
DEFAULT_METHODS = ["egemaps_lr_source", "egemaps_lr_corpus", "target_supervised", *METHODS]
# Reference points of the "gap closed" column: no adaptation and the ceiling.
GAP_FROM, GAP_TO = "source_only", "target_supervised"
# --quick: a smoke-test budget (numbers are meaningless), one seed unless --seeds is given.
QUICK = {"max_steps": 4, "max_samples": 48}


def parse_cli(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Other options go to the recipe's argument parser (see python recipes/train.py --help).",
    )
    parser.add_argument(
        "--config", default=str(DEFAULT_CONFIG), help="Recipe YAML/JSON with the run settings."
    )
    parser.add_argument("--methods", nargs="+", choices=DEFAULT_METHODS, default=DEFAULT_METHODS)
    parser.add_argument(
        "--corpora",
        nargs="+",
        default=DEFAULT_CORPORA,
        help="Built-in synthetic presets (synth-a), NAME=DATASET (a recipe dataset source), or one YAML/JSON "
        "file with a `corpora:` list of recipe corpus entries ({name, dataset, split, label_column, ...}).",
    )
    parser.add_argument("--scheme", help="Label scheme (default: the config's).")
    parser.add_argument("--seeds", nargs="+", type=int, help="Training seeds (default: 0 1 2; --quick: 0).")
    parser.add_argument("--epochs", type=float, help="num_train_epochs of every run.")
    parser.add_argument("--max-steps", type=int, help="Optimisation steps of every run (overrides --epochs).")
    parser.add_argument(
        "--batch-size", type=int, help="Source rows per batch (as many target rows are added)."
    )
    parser.add_argument("--max-samples", type=int, help="At most this many utterances per split (debugging).")
    parser.add_argument(
        "--output", type=Path, help="Results folder (default: outputs/benchmarks/cross_corpus[_quick])."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"Smoke test: {QUICK['max_steps']} steps, {QUICK['max_samples']} utterances per split.",
    )
    args, recipe_argv = parser.parse_known_args(argv)
    if args.quick:
        args.max_steps = args.max_steps or QUICK["max_steps"]
        args.max_samples = args.max_samples or QUICK["max_samples"]
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.output = (
        args.output or ROOT / "outputs" / "benchmarks" / f"cross_corpus{'_quick' if args.quick else ''}"
    )
    for option, flag in (
        ("scheme", "--scheme"),
        ("epochs", "--num_train_epochs"),
        ("max_steps", "--max_steps"),
        ("batch_size", "--per_device_train_batch_size"),
        ("max_samples", "--max_samples_per_split"),
    ):
        if getattr(args, option) is not None:
            recipe_argv += [flag, str(getattr(args, option))]
    return args, recipe_argv


def parse_corpora(values: list[str], allowed_keys: set[str]) -> list[dict[str, Any]]:
    """Corpus entries `{name, dataset, ...}` (the keys of the recipe's `sources:` entries)."""
    if len(values) == 1 and values[0].lower().endswith((".yaml", ".yml", ".json")):
        loaded = yaml.safe_load(Path(values[0]).read_text(encoding="utf-8")) or {}  # JSON is YAML
        corpora = loaded.get("corpora", loaded.get("data", {}).get("corpora"))
        if not isinstance(corpora, list) or not all(
            isinstance(c, dict) and {"name", "dataset"} <= set(c) for c in corpora
        ):
            raise ValueError(
                f"{values[0]}: expected `corpora:` (top level or under `data:`), a list of mappings "
                "with at least `name` and `dataset`."
            )
    else:
        corpora = [
            {"name": name, "dataset": dataset or f"synthetic:{name}"}
            for name, _, dataset in (value.partition("=") for value in values)
        ]
    for corpus in corpora:
        if set(corpus) - allowed_keys:
            raise ValueError(
                f"Corpus {corpus['name']!r}: unknown keys {sorted(set(corpus) - allowed_keys)}; "
                f"allowed: {sorted(allowed_keys)}."
            )
    if len(corpora) < 2 or len({c["name"] for c in corpora}) != len(corpora):
        raise ValueError("--corpora needs at least two corpora with distinct names.")
    return corpora


def direction_args(base, source: dict[str, Any], target: dict[str, Any], corpus_keys: set[str]):
    """The base DataArguments with `source` as the only source corpus and `target` as the target."""
    from emodna_hf.arguments import DataArguments

    corpus_fields = {f"{side}_{key}" for side in ("source", "target") for key in corpus_keys}
    kwargs = {k: v for k, v in dataclasses.asdict(base).items() if k not in corpus_fields}
    for key, value in source.items():
        kwargs[f"source_{key}"] = {source["name"]: value} if key in ("label_map", "load_kwargs") else [value]
    kwargs.update({f"target_{key}": value for key, value in target.items()})
    return DataArguments(**kwargs)


def method_args(base, method: str):
    """The base ModelArguments plus the method's overrides (non-field ones go into config_overrides)."""
    from emodna_hf.arguments import ModelArguments

    names = {f.name for f in dataclasses.fields(ModelArguments)}
    overrides = METHODS[method]
    extra = {k: v for k, v in overrides.items() if k not in names}
    return dataclasses.replace(
        base,
        **{k: v for k, v in overrides.items() if k in names},
        config_overrides={**(base.config_overrides or {}), **extra} or None,
    )


def load_settings(config: str, corpora: list[str], recipe_argv: list[str]):
    """The corpus keys, corpus entries and the recipe's three argument groups of a benchmark (exits on bad input)."""
    from emodna_hf.experiment import DataArguments, parse_args

    corpus_keys = {f.name.removeprefix("target_") for f in dataclasses.fields(DataArguments)
                   if f.name.startswith("target_")}
    try:
        entries = parse_corpora(corpora, corpus_keys)
        base_model, base_data, base_training, _ = parse_args(["--config", config, *recipe_argv])
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    return corpus_keys, entries, base_model, base_data, base_training


def extract_up_front(corpora: list[dict[str, Any]], base_model, base_data, corpus_keys: set[str],
                     store_dir: str | None = None) -> float:
    """Every corpus decoded and its features put in the feature store once, before any run (returns seconds).

    Each corpus is read whole (all its utterances, as a target is), with the workers
    `emodna_hf.data.features.default_feature_workers` picks (openSMILE: one per core) unless
    `--preprocessing_num_workers` is given; every direction, split, method and seed then reads the store. Skipped
    when the features are not cached (a fine-tuned SSL backbone) or when nothing is cached on disk. `store_dir`:
    the feature store's cache folder (default: `--audio_cache_dir`, where the audio is decoded).
    """
    from emodna_hf.data import cache_features, load_corpus
    from emodna_hf.data.labels import SCHEMES
    from emodna_hf.data.storage import resolve_cache_dir
    from emodna_hf.experiment import build_model
    from emodna_hf.feature_extraction import create_feature_extractor
    from emodna_hf.preparation import normalize_waveforms

    started = time.time()
    model = build_model(base_model, list(SCHEMES[base_data.scheme]), [c["name"] for c in corpora],
                        base_data.sampling_rate)
    if (model.config.uses_ssl_backbone and not model.config.freeze_backbone) or base_model.cache_features is False \
            or resolve_cache_dir(base_data.audio_cache_dir) is None:
        return 0.0
    extractor = create_feature_extractor(model.config)
    for corpus in corpora:
        spec = direction_args(base_data, corpora[0 if corpus is not corpora[0] else 1], corpus, corpus_keys).target_spec()
        dataset, _ = load_corpus(spec, scheme=base_data.scheme, sampling_rate=base_data.sampling_rate,
                                 max_duration_s=base_data.max_duration_s, cache_dir=base_data.audio_cache_dir,
                                 num_proc=base_data.preprocessing_num_workers, require_labels=False)
        dataset = normalize_waveforms(dataset, extractor, f"Normalising {corpus['name']}",
                                      cache_dir=base_data.audio_cache_dir, num_proc=base_data.preprocessing_num_workers)
        cache_features(dataset, model, cache_dir=store_dir or base_data.audio_cache_dir,
                       num_proc=base_data.preprocessing_num_workers)
    return time.time() - started


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def format_cell(values: list[float]) -> str:
    if not values:
        return "—"
    mean = 100 * statistics.fmean(values)
    return f"{mean:.1f}" if len(values) == 1 else f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def results_table(
    runs: list[dict], methods: list[str], directions: list[tuple[str, str]], seeds: list[int], metric: str
) -> str:
    """One row per method, one column per direction, and an average column: each seed is averaged over the
    directions first, so its ± is the spread over seeds of the direction average (complete seeds only)."""
    value = {(r["method"], r["source"], r["target"], r["seed"]): r[metric] for r in runs}
    lines = [
        "| Method | " + " | ".join(f"{s} → {t}" for s, t in directions) + " | Average | Gap closed |",
        "|---" * (len(directions) + 3) + "|",
    ]

    def average(method: str) -> float | None:
        cells = [[value[method, s, t, seed] for seed in seeds if (method, s, t, seed) in value] for s, t in directions]
        return statistics.fmean(statistics.fmean(c) for c in cells) if all(cells) else None

    low, high = average(GAP_FROM), average(GAP_TO)
    for method in methods:
        cells = [
            format_cell([value[method, s, t, seed] for seed in seeds if (method, s, t, seed) in value])
            for s, t in directions
        ]
        averages = [
            statistics.fmean(value[method, s, t, seed] for s, t in directions)
            for seed in seeds
            if all((method, s, t, seed) in value for s, t in directions)
        ]
        mean = average(method)
        gap = (f"{100 * (mean - low) / (high - low):.0f}%" if None not in (mean, low, high) and high > low
               else "—")
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {format_cell(averages)} | {gap} |")
    return "\n".join(lines)


def report(
    runs: list[dict],
    methods: list[str],
    directions: list[tuple[str, str]],
    seeds: list[int],
    settings: dict[str, Any],
    command: str,
) -> str:
    model, data, training = settings["model"], settings["data"], settings["training"]
    wanted = {(m, s, t, seed) for m in methods for s, t in directions for seed in seeds}
    finished = sum((r["method"], r["source"], r["target"], r["seed"]) in wanted for r in runs)
    steps = training["max_steps"]
    budget = f"{steps} steps" if steps > 0 else f"{training['num_train_epochs']:g} epochs"
    batch = training["per_device_train_batch_size"]
    cap = data["max_samples_per_split"]
    lines = [
        "# Cross-corpus benchmark",
        "",
        f"`{command}`",
        "",
        f"Backbone {model['backbone_name_or_path'] or model['backbone_type']}, scheme {data['scheme']}, "
        f"{budget} of {batch} source + {batch} target utterances, learning rate {training['learning_rate']:g}"
        + (f", at most {cap} utterances per split" if cap else "")
        + f"; seeds {', '.join(map(str, seeds))}; {finished} of {len(wanted)} runs finished. Target metrics "
        "are transductive (the unlabelled target utterances adapted to); cells are mean ± sample std over "
        f"seeds, in %. Gap closed: (method − {GAP_FROM}) / ({GAP_TO} − {GAP_FROM}) on the averages; "
        f"{GAP_TO} is trained on the target's labels (speaker-independent cross-validation), a ceiling only.",
    ]
    for metric, title in (("target_uar", "Target UAR (%)"), ("target_war", "Target WAR (%)")):
        lines += ["", f"## {title}", "", results_table(runs, methods, directions, seeds, metric)]
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # an interrupted write never leaves a truncated file


def main(argv: list[str] | None = None) -> None:
    args, recipe_argv = parse_cli(argv)
    import datasets
    import transformers

    from emodna_hf.experiment import load_data, run_experiment

    corpus_keys, corpora, base_model, base_data, base_training = load_settings(args.config, args.corpora, recipe_argv)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "logs").mkdir(exist_ok=True)
    base_training = dataclasses.replace(
        base_training,
        output_dir=str(args.output / "trainer"),
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    settings = _jsonable(
        {
            "model": dataclasses.asdict(base_model),
            "data": {
                k: v
                for k, v in dataclasses.asdict(base_data).items()
                if k.removeprefix("source_").removeprefix("target_") not in corpus_keys
            },
            "training": {k: v for k, v in base_training.to_dict().items() if k not in ("output_dir", "seed")},
        }
    )
    by_name = {c["name"]: _jsonable(c) for c in corpora}  # corpus definitions: fixed once runs used them
    results_path, table_path = args.output / "cross_corpus.json", args.output / "cross_corpus.md"
    runs: list[dict] = []
    if results_path.exists():
        saved = json.loads(results_path.read_text(encoding="utf-8"))
        changed = sorted(k for k in settings if saved["settings"].get(k) != settings[k])
        changed += [name for name, corpus in saved["corpora"].items() if by_name.get(name, corpus) != corpus]
        if changed:
            sys.exit(
                f"error: {results_path} holds runs with other settings ({', '.join(changed)}); use another "
                "--output or delete it."
            )
        runs, by_name = saved["runs"], {**saved["corpora"], **by_name}

    logging.basicConfig(level=logging.WARNING)
    transformers.utils.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", message=".*pin_memory.*")  # DataLoader's default on a CPU-only machine
    command = " ".join(["python benchmarks/cross_corpus.py", *(sys.argv[1:] if argv is None else argv)])
    directions = list(itertools.permutations(corpora, 2))
    names = [(s["name"], t["name"]) for s, t in directions]
    done = {(r["method"], r["source"], r["target"], r["seed"]) for r in runs}
    plan = [
        (
            source,
            target,
            [
                (m, seed)
                for m in args.methods
                for seed in args.seeds
                if (m, source["name"], target["name"], seed) not in done
            ],
        )
        for source, target in directions
    ]
    total = len(directions) * len(args.methods) * len(args.seeds)
    count = total - sum(len(todo) for _, _, todo in plan)
    if count < total:
        seconds = extract_up_front(corpora, base_model, base_data, corpus_keys)
        print(f"Features of {len(corpora)} corpora in the feature store ({seconds:.0f} s)", flush=True)
    for source, target, todo in plan:
        if not todo:
            continue
        data_args = direction_args(base_data, source, target, corpus_keys)
        data = load_data(data_args)
        log_path = args.output / "logs" / f"{source['name']}_to_{target['name']}.log"
        for method, seed in todo:
            started = time.time()
            if method in CLASSICAL:
                from classical import run_classical  # benchmarks/ is the script's folder

                record = run_classical(method, data, base_data.sampling_rate, seed,
                                       speaker_normalization=base_data.speaker_normalization)
                record["train"] = {"steps": 0, "runtime_s": None}
            else:
                with open(log_path, "a", encoding="utf-8") as log, contextlib.redirect_stdout(log):
                    record = run_experiment(
                        method_args(base_model, method),
                        data_args,
                        dataclasses.replace(base_training, seed=seed),
                        data=data,
                        write_outputs=False,
                    )
            runs.append(
                {
                    "method": method,
                    "source": source["name"],
                    "target": target["name"],
                    "seed": seed,
                    "target_uar": record["target"]["uar"],
                    "target_war": record["target"]["war"],
                    "target_macro_f1": record["target"]["macro_f1"],
                    "source_uar": record.get("source", {}).get("uar"),
                    "steps": record["train"]["steps"],
                    "train_runtime_s": record["train"]["runtime_s"],
                    "wall_time_s": time.time() - started,
                }
            )
            _write(
                results_path, json.dumps({"settings": settings, "corpora": by_name, "runs": runs}, indent=1)
            )
            _write(table_path, report(runs, args.methods, names, args.seeds, settings, command))
            count += 1
            uar, war = record["target"]["uar"], record["target"]["war"]
            print(
                f"[{count}/{total}] {source['name']} → {target['name']} {method} seed {seed}: target UAR "
                f"{uar:.1%} WAR {war:.1%} ({time.time() - started:.0f} s)",
                flush=True,
            )
    text = report(runs, args.methods, names, args.seeds, settings, command)
    _write(table_path, text)
    print(f"\n{text}\nWrote {table_path} and {results_path}")


if __name__ == "__main__":
    main()
