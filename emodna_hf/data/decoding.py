"""The common layout of a loaded corpus (`output_features`) and the pass that decodes standard rows into it
(`decode_batch`), shared by `loading.load_corpus` and the streamed `streaming.load_streaming_corpus`."""

from __future__ import annotations

from typing import Any

import numpy as np
from datasets import ClassLabel, Features, List, Value

from ..modeling.modeling_emodna import MIN_INPUT_SECONDS
from .audio import AudioDecodeError, load_audio
from .labels import SCHEMES


def output_features(scheme: str) -> Features:
    """The features of every dataset `load_corpus` returns for `scheme`."""
    return Features(
        {
            "input_values": List(Value("float32")),
            "labels": ClassLabel(names=list(SCHEMES[scheme])),
            "speaker": Value("string"),
            "corpus": Value("string"),
            "utt_id": Value("string"),
        }
    )


def decode_batch(
    batch: dict[str, Any],
    audio_column: str,
    sampling_rate: int,
    max_duration_s: float | None,
    skip: bool,
    corpus: str,
) -> dict[str, list]:
    """Decode a batch of standard rows (`audio_column`, `labels`, `speaker`, `corpus`, `utt_id`) to the output
    columns, plus `audio_error` ("" or why a row's audio was refused, when `skip`; otherwise the error is raised
    naming the corpus and utterance)."""
    waves, errors = [], []
    for audio, utt_id in zip(batch[audio_column], batch["utt_id"], strict=True):
        try:
            waves.append(load_audio(audio, sampling_rate, max_duration_s=max_duration_s,
                                    min_duration_s=MIN_INPUT_SECONDS))
            errors.append("")
        except AudioDecodeError as error:
            if not skip:
                raise AudioDecodeError(f"Corpus {corpus!r}, utterance {str(utt_id)!r}: {error}") from error
            waves.append(np.zeros(0, dtype=np.float32))
            errors.append(str(error))
    # numpy formatting turns the None labels of an unlabelled corpus into NaN: back to None for the ClassLabel.
    labels = [None if label is None or label != label else int(label) for label in batch["labels"]]
    return {
        "input_values": waves,
        "labels": labels,
        "speaker": batch["speaker"],
        "corpus": batch["corpus"],
        "utt_id": batch["utt_id"],
        "audio_error": errors,
    }
