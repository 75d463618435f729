#!/usr/bin/env python
"""Adapt a trained audio-emotion classifier to an unlabelled target corpus, without source data.

    python recipes/adapt.py --model_name_or_path outputs/default --target_dataset /path/to/unlabelled/audio \
        --output_dir outputs/default-shot --adaptation_method shot --max_steps 200
    python recipes/adapt.py --model_name_or_path my-wav2vec2-ser-folder --target_dataset synthetic:synth-c \
        --output_dir outputs/w2v-tent --adaptation_method tent --max_steps 50 --learning_rate 1e-4
    python recipes/adapt.py --model_name_or_path outputs/default --target_dataset target.csv \
        --output_dir outputs/default-adabn --adaptation_method adabn

The checkpoint is ours (`EmoDnaForAudioClassification`) or a plain transformers `Wav2Vec2ForSequenceClassification`
/ `HubertForSequenceClassification` (a folder or a Hub id); the result has the same class and configuration, so a
transformers checkpoint still loads with `AutoModelForAudioClassification` without emodna_hf. Methods: SHOT (frozen
classifier; information maximisation + pseudo-labels), TENT (entropy minimisation of normalisation scales and
shifts), AdaBN (normalisation statistics re-estimated; no gradient step). The target is given like train.py's
(`--target_dataset`, `--target_label_column`, ...); labels, where it has them, only score the model before and
after. `--label_mapping '{"ang": "angry", ...}'` maps the checkpoint's label names to the scheme where they are not
already scheme classes or emotion names. Training flags are a transformers `TrainingArguments`' (`--max_steps`,
`--learning_rate`, `--per_device_train_batch_size`, `--seed`, ...) plus the method settings of
`emodna_hf.source_free.SourceFreeTrainingArguments`: `--help` lists them.

Writes OUTPUT_DIR: the adapted model and its feature extractor, README.md (model card), adaptation.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def parse(argv: list[str] | None = None):
    from transformers import HfArgumentParser

    from emodna_hf.adaptation import AdaptationArguments
    from emodna_hf.source_free import SourceFreeTrainingArguments

    parser = HfArgumentParser((AdaptationArguments, SourceFreeTrainingArguments), description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    return parser.parse_args_into_dataclasses(args=list(sys.argv[1:] if argv is None else argv))


def main(argv: list[str] | None = None) -> dict:
    import transformers

    from emodna_hf.adaptation import run_adaptation
    from emodna_hf.data import AudioDecodeError
    from emodna_hf.experiment import command_line

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S",
                        level=logging.WARNING, stream=sys.stdout)
    logging.getLogger("emodna_hf").setLevel(logging.INFO)
    try:
        adapt_args, training_args = parse(argv)
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    try:
        record = run_adaptation(adapt_args, training_args,
                                command=command_line([sys.argv[0], *(sys.argv[1:] if argv is None else argv)]))
    except (ValueError, FileNotFoundError, AudioDecodeError) as error:
        if os.environ.get("EMODNA_TRACEBACK"):
            raise
        sys.exit(f"error: {error}\n(set EMODNA_TRACEBACK=1 to see where it was raised)")
    print(f"{record['model']} ({record['model_class']}) adapted to {record['target']['name']} with "
          f"{record['method']['name']}:")
    for when in ("before", "after"):
        result = record[when]
        accuracy = (f"UAR {result['uar']:.3f}  WAR {result['war']:.3f}  macro-F1 {result['macro_f1']:.3f}  "
                    if result["labelled"] else "unlabelled: accuracy not measured  ")
        print(f"  {when:<6} {accuracy}IM {result['information_maximization']:.3f}  ({result['n']} utterances)")
    print(f"  output: {training_args.output_dir}")
    return record


if __name__ == "__main__":
    main()
