"""The prosodic front end: openSMILE acoustic parameter functionals (eGeMAPS, ComParE) computed in the model.

Emotion in speech lives largely in pitch, loudness, voice quality and tempo; the Geneva Minimalistic Acoustic
Parameter Set (eGeMAPS v02, Eyben et al. 2016: 88 utterance-level functionals of 25 low-level descriptors) was made
for exactly that, and eGeMAPS + per-corpus standardisation + a linear classifier is the classical cross-corpus SER
baseline. This front end makes those functionals the first stage of the Emo-DNA model, so that the encoders,
adaptation losses and corpus normalisation work on top of them, and a saved model still takes raw audio
(`pipeline("audio-classification")`, remote code): the functionals are computed here, per utterance, over its
valid samples only (padding never changes them).

The features are not differentiable (openSMILE is C++ code run on the CPU); nothing before them has parameters.
Compute them once and cache them for training (`compute_cacheable_features`, as for the tcn front end).

Requires the `opensmile` package (PyPI; openSMILE's licence allows research and personal use, see its terms for
commercial use). Shipped as remote code: the import is optional so that models with other backbones load without it.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from torch import nn

from .frontend_emodna import FrontEnd

logger = logging.getLogger(__name__)

try:  # optional: only the opensmile backbones need it (a try block keeps transformers' import check quiet)
    import opensmile
except ImportError:  # pragma: no cover - exercised where opensmile is missing
    opensmile = None

# Feature sets and their functional counts (openSMILE 3 configurations shipped with the `opensmile` package).
OPENSMILE_FEATURE_SETS = {"eGeMAPSv02": 88, "GeMAPSv01b": 62, "ComParE_2016": 6373}
# Shortest input openSMILE's eGeMAPS configuration turns into finite functionals (its pitch window is 60 ms).
MIN_DURATION_S = 0.1


class OpenSmileFunctionals(nn.Module):
    """Waveform `(batch, samples)` → utterance functionals `(batch, 1, n_features)` and a one-frame mask.

    Each utterance is processed alone over its valid samples (`attention_mask`); non-finite functionals are set
    to 0 (openSMILE gives NaN for every functional of an utterance shorter than about 0.1 s: such rows are counted
    in a warning; the model refuses them at inference). The single "frame" lets the functionals travel through the
    same cache, collator and layer/pooling stages as frame-level features.
    """

    def __init__(self, config):
        super().__init__()
        if config.opensmile_feature_set not in OPENSMILE_FEATURE_SETS:
            raise ValueError(
                f"Unknown opensmile_feature_set {config.opensmile_feature_set!r}; expected one of "
                f"{', '.join(OPENSMILE_FEATURE_SETS)}."
            )
        self.feature_set = config.opensmile_feature_set
        self.sampling_rate = config.sampling_rate
        self.output_size = OPENSMILE_FEATURE_SETS[self.feature_set]
        self._smile = None

    def _extractor(self):
        if self._smile is None:
            if opensmile is None:
                raise ImportError(
                    f"This model computes openSMILE {self.feature_set} functionals from the audio and needs the "
                    "`opensmile` package: pip install opensmile"
                )
            self._smile = opensmile.Smile(
                feature_set=getattr(opensmile.FeatureSet, self.feature_set),
                feature_level=opensmile.FeatureLevel.Functionals,
            )
        return self._smile

    def __getstate__(self):  # the openSMILE handle is a C object: rebuild it after pickling (datasets.map hashing)
        state = self.__dict__.copy()
        state["_smile"] = None
        return state

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None):
        if torch.compiler.is_exporting():
            raise RuntimeError(
                "openSMILE functionals are computed by a C++ library per utterance and cannot be part of an "
                "exported graph. Export the model from its functionals instead: model(input_features=...) with "
                "the output of model.compute_cacheable_features, or emodna_hf.export.export_onnx(folder)."
            )
        smile = self._extractor()
        waves = input_values.detach().float().cpu().numpy()
        lengths = (
            attention_mask.sum(-1).cpu().tolist() if attention_mask is not None else [waves.shape[1]] * len(waves)
        )
        rows = []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Segment too short")  # counted below instead
            for wave, length in zip(waves, lengths, strict=True):
                wave = np.ascontiguousarray(wave[: int(length)])
                rows.append(smile.process_signal(wave, self.sampling_rate).to_numpy(dtype=np.float32)[0])
        features = np.stack(rows)
        empty = int(np.isnan(features).all(axis=1).sum())
        if empty:
            logger.warning("%d of %d utterances are too short for openSMILE %s functionals (< %s s): their "
                           "functionals are set to 0.", empty, len(rows), self.feature_set, MIN_DURATION_S)
        features = np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)
        features = torch.from_numpy(features).to(input_values.device).unsqueeze(1)
        return features, torch.ones(features.shape[:2], dtype=torch.bool, device=input_values.device)


class OpenSmileBackbone(nn.Module):
    """openSMILE functionals as a one-layer, one-frame "backbone": `(batch, 1, 1, n_features)` and its mask."""

    def __init__(self, config):
        super().__init__()
        self.front_end = OpenSmileFunctionals(config)
        self.num_layers = 1
        self.hidden_size = self.front_end.output_size

    def encode_features(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Functionals `(batch, 1, n_features)` → `(batch, 1 layer, 1 frame, n_features)`."""
        return features.unsqueeze(1)


def _describe(config, base: str | None) -> str:
    return (f"openSMILE {config.opensmile_feature_set} utterance functionals computed by the model from the waveform "
            "(needs the `opensmile` package, `pip install opensmile`; openSMILE's licence covers research and "
            "personal use only, commercial use needs a licence from audEERING), followed by the trained encoders.")


# No waveform normalisation: the loudness functionals carry emotion (angry speech is loud); gain differences between
# corpora are removed by the standardisation of the functionals instead. Exported from the functionals: openSMILE is
# C++ code that no graph can hold.
OPENSMILE = FrontEnd(
    name="opensmile",
    build=OpenSmileBackbone,
    describe=_describe,
    cache_fields=("backbone_type", "sampling_rate", "opensmile_feature_set"),
    normalize_waveform=False,
    graph_input="features",
    utterance_level=True,
    small=True,
    extract_in_workers=True,
)
