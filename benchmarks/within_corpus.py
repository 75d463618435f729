"""Within-corpus learnability: eGeMAPS functionals + logistic regression, leave-one-speaker-out, per corpus.

A check on a generated corpus, not a cross-corpus benchmark: it says whether a corpus's labels can be learnt
from its own audio by the classical recipe (each fold standardised with its training speakers' statistics,
class-balanced logistic regression, as in `classical.py`). Nothing crosses corpora, so it can be run on the
confirmation family without spending it.

    OMP_NUM_THREADS=1 python benchmarks/within_corpus.py --corpora synth-studio synth-call synth-it synth-radio
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from emodna_hf.data import CorpusSpec, load_corpus
from emodna_hf.data.labels import SCHEMES, column_values
from emodna_hf.metrics import classification_metrics

try:
    from classical import functionals
except ImportError:  # imported as benchmarks.within_corpus
    from benchmarks.classical import functionals


def loso_uar(features: np.ndarray, labels: np.ndarray, speakers: np.ndarray, label_names: list[str]) -> dict:
    """Leave-one-speaker-out predictions of a class-balanced logistic regression, scored together."""
    predictions = np.empty_like(labels)
    for speaker in np.unique(speakers):
        test = speakers == speaker
        mean, std = features[~test].mean(0), features[~test].std(0) + 1e-8
        model = LogisticRegression(max_iter=5000, class_weight="balanced")
        model.fit((features[~test] - mean) / std, labels[~test])
        predictions[test] = model.predict((features[test] - mean) / std)
    return classification_metrics(predictions, labels, label_names)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpora", nargs="+", required=True, help="synthetic preset names")
    parser.add_argument("--scheme", default="categorical4", choices=sorted(SCHEMES))
    parser.add_argument("--seed", type=int, default=0, help="generator seed of the corpora")
    parser.add_argument("--output", help="write the results as JSON here")
    args = parser.parse_args(argv)
    results = {}
    for name in args.corpora:
        start = time.perf_counter()
        spec = CorpusSpec(name=name, source=f"synthetic:{name}", load_kwargs={"seed": args.seed})
        dataset, report = load_corpus(spec, scheme=args.scheme)
        loaded = time.perf_counter() - start
        labels = np.asarray(column_values(dataset, "labels"))
        speakers = np.asarray(column_values(dataset, "speaker"))
        metrics = loso_uar(functionals(dataset, 16000), labels, speakers, list(SCHEMES[args.scheme]))
        results[name] = {"uar": metrics["uar"], "n": len(labels), "speakers": len(set(speakers)),
                         "classes": report["labels"]["classes"], "load_s": round(loaded, 1)}
        print(f"{name}: LOSO UAR {metrics['uar']:.3f} ({len(labels)} utterances, {len(set(speakers))} speakers, "
              f"classes {report['labels']['classes']}; generated and loaded in {loaded:.0f} s)", flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
