"""Per-speaker normalisation of the cached features: the statistics and how the model applies them.

A model trained with `config.speaker_normalization=True` saw every utterance's cached features (the part of the
forward pass that `compute_cacheable_features` returns: openSMILE functionals, MFCC frames, a frozen SSL
encoder's layers) standardised with its speaker's mean and standard deviation, computed over all that speaker's
utterances. The model therefore needs those two vectors with every input; this file is the one definition of
them, shared by training (`emodna_hf.data.speakers`), evaluation and inference
(`EmoDnaForAudioClassification.speaker_statistics` and `forward(speaker_mean=..., speaker_std=...)`).

Shipped as remote code next to saved checkpoints: imports only numpy and torch.
"""

from __future__ import annotations

import numpy as np
import torch

# Added to every standard deviation: a feature that is constant for a speaker (e.g. a functional that is 0 in
# every utterance) is divided by this instead of by zero.
STD_EPSILON = 1e-5

HOW_TO_PROVIDE = (
    "Compute a speaker's statistics from their utterances with `mean, std = model.speaker_statistics(waveforms)` "
    "(the feature extractor's output for several utterances of that one speaker) and pass "
    "`model(..., speaker_mean=mean, speaker_std=std)` (or the pipeline "
    "`{\"raw\": audio, \"sampling_rate\": sr, \"speaker_mean\": mean, \"speaker_std\": std}`); evaluate a corpus "
    "with a speaker column with "
    "`recipes/evaluate_model.py --corpus_speaker_column COLUMN` or `emodna_hf.speakers.predict_by_speaker`."
)


def frame_moments(features: list[np.ndarray]) -> tuple[int, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations (float64) of every valid frame of `features`.

    Each item is one utterance's cached features, valid frames only; the feature axis is the last one in every
    layout (`(frames, n_mfcc)`, `(1, n_functionals)`, `(layers, frames, hidden)`), so every other axis counts as
    frames.
    """
    frames = np.concatenate([np.asarray(f, dtype=np.float64).reshape(-1, np.shape(f)[-1]) for f in features])
    mean = frames.mean(0)
    return len(frames), mean, ((frames - mean) ** 2).sum(0)


def merge_moments(a: tuple | None, b: tuple) -> tuple[int, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations of two groups of frames together (Chan et al. 1979), so that a
    speaker's statistics can be merged shard by shard without holding all their frames."""
    if a is None:
        return b
    (n_a, mean_a, m2_a), (n_b, mean_b, m2_b) = a, b
    n = n_a + n_b
    delta = mean_b - mean_a
    return n, mean_a + delta * n_b / n, m2_a + m2_b + delta ** 2 * n_a * n_b / n


def statistics_from_moments(moments: tuple[int, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """`(mean, std)` float32 vectors: the population standard deviation plus `STD_EPSILON`."""
    n, mean, m2 = moments
    return mean.astype(np.float32), (np.sqrt(m2 / n) + STD_EPSILON).astype(np.float32)


def normalize_features(features: torch.Tensor, feature_mask: torch.Tensor, speaker_mean: torch.Tensor,
                       speaker_std: torch.Tensor) -> torch.Tensor:
    """`(features - mean) / std` for each row with its speaker's statistics `(batch, feature_size)`; padded
    frames stay 0 (as they were when the normalised features were padded in training)."""
    batch, size = features.shape[0], features.shape[-1]
    for name, value in (("speaker_mean", speaker_mean), ("speaker_std", speaker_std)):
        if value.dim() == 1:
            value = value.unsqueeze(0)
        if value.dim() != 2 or value.shape[-1] != size or value.shape[0] not in (1, batch):
            raise ValueError(
                f"{name} must have shape (batch, {size}) or ({size},) (one value per cached feature), got "
                f"{tuple(value.shape)} for a batch of {batch}."
            )
    shape = (-1, *[1] * (features.dim() - 2), size)  # broadcast over layers and frames
    mean = speaker_mean.to(device=features.device, dtype=torch.float32).reshape(shape)
    std = speaker_std.to(device=features.device, dtype=torch.float32).reshape(shape)
    normalized = (features.float() - mean) / std
    # Frames are the second-to-last axis in every layout; the mask is (batch, frames).
    valid = feature_mask.to(device=features.device, dtype=torch.bool)
    valid = valid.reshape(batch, *[1] * (features.dim() - 3), valid.shape[-1], 1)
    return torch.where(valid, normalized, torch.zeros((), dtype=normalized.dtype, device=normalized.device))


def _waveform_list(model, input_values, attention_mask) -> list[torch.Tensor]:
    """One speaker's utterances as 1-D float32 tensors (valid samples only)."""
    if torch.is_tensor(input_values) or (isinstance(input_values, np.ndarray) and input_values.dtype != object):
        values, mask = model._check_waveform(torch.as_tensor(input_values, dtype=torch.float32), attention_mask)
        lengths = mask.sum(-1).tolist() if mask is not None else [values.shape[-1]] * values.shape[0]
        return [row[: int(n)] for row, n in zip(values, lengths, strict=True)]
    # A list (or object array) of 1-D waveforms of different lengths, as the feature extractor returns them.
    return [torch.as_tensor(np.asarray(w, dtype=np.float32)).reshape(-1) for w in input_values]


@torch.no_grad()
def speaker_statistics(model, input_values, attention_mask=None, batch_size: int = 16):
    """`EmoDnaForAudioClassification.speaker_statistics`: the cached features of the speaker's utterances, in
    batches through `compute_cacheable_features`, merged into one `(mean, std)`."""
    waves = _waveform_list(model, input_values, attention_mask)
    if not waves:
        raise ValueError("speaker_statistics needs at least one utterance of the speaker.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    moments = None
    try:
        for start in range(0, len(waves), batch_size):
            chunk = waves[start:start + batch_size]
            batch = torch.zeros(len(chunk), max(len(w) for w in chunk))
            mask = torch.zeros(batch.shape, dtype=torch.long)
            for i, wave in enumerate(chunk):
                batch[i, : len(wave)], mask[i, : len(wave)] = wave, 1
            model._refuse_unclassifiable(batch, mask)
            features, frame_mask = model.compute_cacheable_features(batch.to(device), mask.to(device))
            frames = frame_mask.sum(1).tolist()
            rows = [row.narrow(row.dim() - 2, 0, n).float().cpu().numpy()
                    for row, n in zip(features, frames, strict=True)]
            moments = merge_moments(moments, frame_moments(rows))
    finally:
        model.train(was_training)
    mean, std = statistics_from_moments(moments)
    return torch.from_numpy(mean), torch.from_numpy(std)
