"""Classifying utterances with a speaker-normalised model (`--speaker_normalization`, `config.speaker_normalization`).

Such a model standardises its cached features (openSMILE functionals, MFCC frames, ...) with the mean and standard
deviation of each utterance's speaker, computed over the speaker's utterances. It refuses input without them
(`pipeline()` on a bare array raises a `ValueError` saying so). Three ways to give them:

    # a corpus or a batch of utterances with their speaker ids (statistics over each speaker's utterances here)
    logits = predict_by_speaker(model, feature_extractor, waveforms, speakers)
    # one speaker, statistics from several of their utterances, then any utterance of theirs
    mean, std = model.speaker_statistics(feature_extractor(waves, sampling_rate=sr, padding=True,
                                                           return_tensors="pt")["input_values"])
    model(**feature_extractor(wave, sampling_rate=sr, return_tensors="pt"), speaker_mean=mean, speaker_std=std)
    # a corpus on disk: recipes/evaluate_model.py --corpus_speaker_column COLUMN

These give the numbers of the training run's own evaluation (the statistics are defined once, in
`modeling/speakers_emodna.py`). The statistics of one speaker come from the utterances passed together: pass all
of a speaker's utterances at once, as training and `evaluate_model` do (a speaker's mean and spread over two
utterances are a poor estimate).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .modeling import EmoDnaForAudioClassification


def predict_by_speaker(model: EmoDnaForAudioClassification, feature_extractor, waveforms: Sequence[np.ndarray],
                       speakers: Sequence[str], *, sampling_rate: int | None = None,
                       batch_size: int = 16) -> np.ndarray:
    """Logits `(utterances, num_labels)` of `waveforms` (1-D, at `sampling_rate`, default the model's), each
    standardised with the statistics of its speaker over that speaker's utterances among `waveforms`.

    A speaker-free model gets no statistics (its plain forward pass), so this runs any Emo-DNA model.
    """
    if len(waveforms) != len(speakers):
        raise ValueError(f"{len(waveforms)} waveforms but {len(speakers)} speaker ids: give one id per utterance.")
    missing = [i for i, s in enumerate(speakers) if s is None or str(s) == ""]
    if missing:
        raise ValueError(f"Utterances {missing[:10]} have no speaker id: a speaker-normalised model needs each "
                         "utterance's speaker (use the same id for every utterance of a speaker).")
    rate = sampling_rate or feature_extractor.sampling_rate
    by_speaker = getattr(model.config, "speaker_normalization", False)
    device = next(model.parameters()).device
    logits = np.zeros((len(waveforms), model.config.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        groups = {}
        for index, speaker in enumerate(speakers):
            groups.setdefault(str(speaker), []).append(index)
        for rows in (groups.values() if by_speaker else [list(range(len(waveforms)))]):
            values = feature_extractor([np.asarray(waveforms[i], dtype=np.float32) for i in rows],
                                       sampling_rate=rate)["input_values"]
            values = [np.asarray(v, dtype=np.float32) for v in values]
            statistics = {}
            if by_speaker:
                mean, std = model.speaker_statistics(values, batch_size=batch_size)
                statistics = {"speaker_mean": mean.to(device), "speaker_std": std.to(device)}
            for start in range(0, len(rows), batch_size):
                chunk = values[start:start + batch_size]
                batch = feature_extractor.pad({"input_values": chunk}, padding=True, return_attention_mask=True,
                                              return_tensors="pt")
                with torch.no_grad():
                    output = model(input_values=batch["input_values"].to(device),
                                   attention_mask=batch["attention_mask"].to(device), **statistics)
                logits[rows[start:start + batch_size]] = output.logits.float().cpu().numpy()
    finally:
        model.train(was_training)
    return logits
