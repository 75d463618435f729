#!/usr/bin/env python
"""Evaluate a trained Emo-DNA model (an output folder or a Hub model id) on one or more corpora.

    python recipes/evaluate_model.py --model_name_or_path outputs/default \
        --corpus_name synth-c --corpus_dataset synthetic:synth-c --output_dir outputs/default-on-synth-c
    python recipes/evaluate_model.py --model_name_or_path you/emodna-emodb-to-casia --corpus_name savee \
        --corpus_dataset /path/to/savee/manifest.csv --output_dir outputs/savee

Corpora are given like the training sources (`--corpus_name a b --corpus_dataset X Y`, optional
`--corpus_split`, `--corpus_label_column`, `--corpus_label_map_name`, ...); the label scheme is the model's.
Also accepts `--config FILE.yaml` (flat keys, or `corpora: [{name, dataset, ...}]`), overridden by the command
line. Writes OUTPUT_DIR/eval_<corpora>.json (per corpus: UAR, WAR, macro-F1, per-class recall and the confusion
matrix where the corpus has labels; for every corpus the predicted class shares, mean confidence and the label-free
criteria), eval_<corpora>_predictions.parquet (one row per utterance: corpus, utt_id, speaker, predicted_label,
confidence, probability_<class>, label where known), eval_<corpora>_confusion_matrix.png (labelled corpora only) and
eval_<corpora>_embeddings.png (never the training run's own metrics.json and plots, so OUTPUT_DIR may be the model's
folder), and prints a summary. The whole corpus is evaluated. A corpus without labels (no label column, the usual
case for a new corpus) is evaluated too: predictions and class shares, no accuracy.
"""

from __future__ import annotations

import argparse
import logging
import sys


def parse(argv: list[str] | None = None):
    from transformers import HfArgumentParser

    from emodna_hf.arguments import EvaluationArguments
    from emodna_hf.config_files import load_config_file

    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser(EvaluationArguments, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    if known.config:
        values = load_config_file(known.config)
        dests = {a.dest for a in parser._actions}
        unknown = sorted(set(values) - dests)
        if unknown:
            raise ValueError(f"{known.config}: unknown argument(s) {unknown}")
        parser.set_defaults(**values)
        for action in parser._actions:  # values from the file satisfy required arguments
            if action.dest in values:
                action.required = False
    (eval_args,) = parser.parse_args_into_dataclasses(args=rest)
    return eval_args


def main(argv: list[str] | None = None) -> dict:
    from emodna_hf.evaluation import evaluate_model

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.WARNING, stream=sys.stdout)
    logging.getLogger("emodna_hf").setLevel(logging.INFO)
    try:
        eval_args = parse(argv)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    try:
        record = evaluate_model(eval_args)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    print(f"{eval_args.model_name_or_path} ({record['scheme']}):")
    for name, metrics in record["corpora"].items():
        if metrics["labelled"]:
            print(f"  {name:<14} UAR {metrics['uar']:.3f}  WAR {metrics['war']:.3f}  "
                  f"macro-F1 {metrics['macro_f1']:.3f}  ({metrics['n']} utterances)")
        else:
            shares = ", ".join(f"{k} {v:.0%}" for k, v in metrics["predicted_distribution"].items())
            print(f"  {name:<14} unlabelled: predicted {shares}  ({metrics['n']} utterances)")
    print(f"  output: {record['output_dir']} ({', '.join(record.get('files', {}).values())})")
    return record


if __name__ == "__main__":
    main()
