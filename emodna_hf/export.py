"""Deployment: ONNX export checked with onnxruntime, `torch.export` programs, and the inputs either one takes.

What the exported graphs compute, per backbone:

| backbone | graph inputs | graph output |
|---|---|---|
| `tcn`, `wav2vec2`, `hubert`, `wavlm`, `data2vec-audio` | `input_values` float32 `(batch, samples)`, `attention_mask` int64 `(batch, samples)` | `logits` `(batch, num_labels)` |
| `opensmile` | `input_features` float32 `(batch, n_functionals)` (88 for eGeMAPSv02) | `logits` `(batch, num_labels)` |

Batch and length axes are dynamic: one graph takes any batch of right-padded utterances, as the saved feature
extractor pads them (`padding=True`, `return_attention_mask=True`; cast the mask to int64). The `tcn` front end
is inside the graph (its STFT is a real-valued convolution). The `opensmile` functionals are not: openSMILE is a
C++ library called per utterance, which no graph can hold, so the graph starts at the functionals and the front
end stays in Python (the `opensmile` package; :func:`onnx_inputs` computes them as the model does, and the
`emodna.front_end` metadata entry of the .onnx file names it). A graph cannot raise either: the checks that
refuse NaN, too-short or silent input in `forward` are not in it; callers check their audio. A speaker-normalised
model (`config.speaker_normalization`) is refused: its graph would need each input's speaker statistics.

    from emodna_hf.export import export_onnx
    export_onnx("outputs/default")          # writes outputs/default/model.onnx, checked with onnxruntime
    # or: python recipes/export_onnx.py outputs/default

Requires the `onnx` extra (`pip install "emodna_hf[onnx]"`: onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .modeling import EmoDnaForAudioClassification
from .modeling.backbones_emodna import front_end as declared_front_end
from .modeling.modeling_emodna import MIN_INPUT_SECONDS

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
# Weights above this go to an external `model.onnx.data` file (protobuf's limit is 2 GiB).
EXTERNAL_DATA_BYTES = 1_500_000_000


class _WaveformClassifier(nn.Module):
    """`(input_values, attention_mask)` → logits: the inference path of a waveform backbone."""

    def __init__(self, model: EmoDnaForAudioClassification):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_values=input_values, attention_mask=attention_mask).logits


class _FunctionalsClassifier(nn.Module):
    """`input_features (batch, n_features)` → logits: the model after an utterance-level front end (openSMILE
    functionals) that runs outside the graph (`FrontEnd.graph_input == "features"`)."""

    def __init__(self, model: EmoDnaForAudioClassification):
        super().__init__()
        self.model = model

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.model(input_features=input_features.unsqueeze(1)).logits


def _shape_oblivious():
    """Let torch.export treat sizes 0 and 1 like any other size.

    Without it, a dynamic batch axis traced from a batch of 2 is valid for batches of 2 or more only, and guards
    such as "more than one frame" cannot be proven from the minimum length. (A private switch of torch; the
    tests check that the programs it gives are exact for batch 1.)
    """
    try:
        from torch.fx.experimental import _config as fx_config

        return fx_config.patch(backed_size_oblivious=True)
    except (ImportError, AttributeError):  # pragma: no cover - other torch versions
        return contextlib.nullcontext()


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random waveforms of `lengths` samples, right-padded: `input_values` `(batch, max(lengths))` float32 and
    an int64 `attention_mask` of the same shape (normalised like speech through the feature extractor)."""
    generator = torch.Generator().manual_seed(seed)
    total = max(lengths)
    input_values = torch.zeros(len(lengths), total)
    attention_mask = torch.zeros(len(lengths), total, dtype=torch.long)
    for row, length in enumerate(lengths):
        # A harmonic tone with noise: finite openSMILE functionals (pitch, loudness), unlike silence.
        t = torch.arange(length) / 16000
        tone = sum(torch.sin(2 * torch.pi * (120 + 40 * row) * k * t) / k for k in range(1, 5))
        input_values[row, :length] = 0.3 * tone + 0.05 * torch.randn(length, generator=generator)
        attention_mask[row, :length] = 1
    return input_values, attention_mask


def exportable(model: EmoDnaForAudioClassification, batch_size: int = 2) -> tuple[nn.Module, dict, dict]:
    """The model's inference path as a module for `torch.export` / `torch.onnx.export`.

    Returns `(module, example_kwargs, dynamic_shapes)`: the module maps the graph inputs of the table above to
    logits; `example_kwargs` are inputs to trace it with (a padded batch of `batch_size`); `dynamic_shapes`
    marks the batch axis (and the sample axis for waveforms, at least `MIN_INPUT_SECONDS` long) as dynamic.
    The model must be in eval mode (in training, corpus normalisation uses batch statistics).
    """
    if model.training:
        raise ValueError("Export a model in eval mode: call model.eval() first.")
    if getattr(model.config, "speaker_normalization", False):
        # The graph would have to take each input's speaker statistics; exporting without them would silently
        # drop the normalisation the model was trained with.
        raise ValueError("This model was trained speaker-normalised (config.speaker_normalization=True): its "
                         "inference needs each input's speaker statistics, which the exported graphs do not take. "
                         "Export is not supported for it; run it in PyTorch (emodna_hf.speakers.predict_by_speaker, "
                         "recipes/evaluate_model.py --corpus_speaker_column) or train a speaker-free model to deploy "
                         "with ONNX.")
    batch = torch.export.Dim.DYNAMIC
    minimum = int(MIN_INPUT_SECONDS * model.config.sampling_rate)
    lengths = [minimum * 6 - 37 * row for row in range(batch_size)]
    input_values, attention_mask = padded_batch(lengths)
    if declared_front_end(model.config.backbone_type).graph_input == "features":
        with torch.no_grad():
            functionals, _ = model.backbone.front_end(input_values, attention_mask)
        return (_FunctionalsClassifier(model).eval(), {"input_features": functionals[:, 0]},
                {"input_features": {0: batch}})
    samples = torch.export.Dim.DYNAMIC(min=minimum)
    axes = {0: batch, 1: samples}
    return (_WaveformClassifier(model).eval(), {"input_values": input_values, "attention_mask": attention_mask},
            {"input_values": axes, "attention_mask": axes})


def export_program(model: EmoDnaForAudioClassification) -> torch.export.ExportedProgram:
    """`torch.export.export` of the inference path (inputs and dynamic axes as in the module docstring).

    `program.module()(**inputs)` gives the logits; the program can be saved with `torch.export.save`,
    compiled ahead of time (AOTInductor) or lowered to other runtimes.
    """
    module, example, dynamic_shapes = exportable(model)
    with _shape_oblivious():
        return torch.export.export(module, (), kwargs=example, dynamic_shapes=dynamic_shapes)


_OUTSIDE_FRONT_ENDS: dict[str, nn.Module] = {}


def _outside_front_end(config) -> nn.Module:
    """The front end that runs outside the graph (it has no weights), built once per setting of the fields it
    depends on (`FrontEnd.cache_fields`)."""
    declared = declared_front_end(config.backbone_type)
    key = json.dumps({name: getattr(config, name, None) for name in declared.cache_fields}, sort_keys=True,
                     default=str)
    if key not in _OUTSIDE_FRONT_ENDS:
        if len(_OUTSIDE_FRONT_ENDS) >= 4:
            _OUTSIDE_FRONT_ENDS.pop(next(iter(_OUTSIDE_FRONT_ENDS)))
        _OUTSIDE_FRONT_ENDS[key] = declared.build(config).front_end
    return _OUTSIDE_FRONT_ENDS[key]


def onnx_inputs(model_or_config, input_values, attention_mask=None) -> dict[str, np.ndarray]:
    """The ONNX graph's inputs for right-padded waveforms `(batch, samples)` (what the feature extractor gives).

    Waveform backbones: `input_values` as float32 and `attention_mask` as int64 (all ones if not given). The
    `opensmile` backbone: the functionals `input_features` `(batch, n_functionals)`, computed per utterance over
    its valid samples with the `opensmile` package, exactly as the PyTorch model does (non-finite values of a
    too-short utterance set to 0).
    """
    config = getattr(model_or_config, "config", model_or_config)
    input_values = torch.as_tensor(np.asarray(input_values, dtype=np.float32))
    if input_values.dim() == 1:
        input_values = input_values[None]
    if attention_mask is None:
        attention_mask = torch.ones(input_values.shape, dtype=torch.long)
    attention_mask = torch.as_tensor(np.asarray(attention_mask)).reshape(input_values.shape).long()
    if declared_front_end(config.backbone_type).graph_input == "features":
        functionals, _ = _outside_front_end(config)(input_values, attention_mask)
        return {"input_features": functionals[:, 0].numpy()}
    return {"input_values": input_values.numpy(), "attention_mask": attention_mask.numpy()}


@dataclass
class OnnxExport:
    """What :func:`export_onnx` wrote and how far onnxruntime's logits were from PyTorch's on a padded batch."""

    path: Path
    max_abs_difference: float | None
    input_names: list[str]


def _load(model_or_folder) -> tuple[EmoDnaForAudioClassification, Path | None]:
    if isinstance(model_or_folder, EmoDnaForAudioClassification):
        # A float32 eval copy: export must not change the caller's model (dtype, mode).
        return copy.deepcopy(model_or_folder).float().eval(), None
    folder = Path(model_or_folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} is not a saved model folder (no config.json).")
    return EmoDnaForAudioClassification.from_pretrained(folder, dtype=torch.float32).eval(), folder


def check_onnx(model: EmoDnaForAudioClassification, path: str | Path, lengths: list[int] | None = None) -> float:
    """Max |logit difference| between onnxruntime on `path` and the PyTorch model, on a padded batch of
    utterances of `lengths` samples (default: three lengths, none of them the traced ones)."""
    import onnxruntime

    rate = model.config.sampling_rate
    lengths = lengths or [int(1.3 * rate), int(0.45 * rate) + 11, int(0.8 * rate) + 3]
    input_values, attention_mask = padded_batch(lengths, seed=1)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(["logits"], onnx_inputs(model, input_values, attention_mask))[0]
    with torch.no_grad():
        torch_logits = model(input_values=input_values, attention_mask=attention_mask).logits.float().numpy()
    return float(np.abs(onnx_logits - torch_logits).max())


def export_onnx(
    model_or_folder: EmoDnaForAudioClassification | str | Path,
    path: str | Path | None = None,
    *,
    check: bool = True,
    atol: float = 1e-4,
    opset_version: int | None = None,
) -> OnnxExport:
    """Export the inference path to ONNX (dynamic batch and length axes), and check it with onnxruntime.

    Args:
        model_or_folder: A model, or a saved model folder (loaded in float32).
        path: Where to write; default `<folder>/model.onnx` (required for a model object). Weights over
            1.5 GB go to `<path>.data` beside it.
        check: Compare onnxruntime's logits with PyTorch's on a padded batch of three lengths the graph was
            not traced with, and raise `AssertionError` if they differ by more than `atol`.
        opset_version: ONNX opset (default: the exporter's).

    The .onnx file's metadata holds the input description, the front end, `id2label` and the sampling rate
    (`emodna.*` keys; `onnxruntime.InferenceSession(path).get_modelmeta().custom_metadata_map`).
    """
    model, folder = _load(model_or_folder)
    if path is None:
        if folder is None:
            raise ValueError("Pass a path to write the .onnx file to (or a saved model folder).")
        path = folder / ONNX_FILE
    path = Path(path)
    module, example, dynamic_shapes = exportable(model)
    with _shape_oblivious(), torch.no_grad():
        program = torch.onnx.export(
            module, (), kwargs=example, dynamic_shapes=dynamic_shapes, input_names=list(example),
            output_names=["logits"], opset_version=opset_version, dynamo=True, verbose=False,
        )
    config = model.config
    front_end = (f"{config.backbone_type} features, computed outside the graph (see emodna_hf.export.onnx_inputs): "
                 f"{declared_front_end(config.backbone_type).describe(config, None)}"
                 if declared_front_end(config.backbone_type).graph_input == "features"
                 else "waveform: right-padded mono audio, as the saved feature extractor returns it")
    program.model.metadata_props.update({
        "emodna.backbone_type": config.backbone_type,
        "emodna.front_end": front_end,
        "emodna.inputs": json.dumps({name: [str(tensor.dtype).removeprefix("torch."), list(tensor.shape[1:])]
                                     for name, tensor in example.items()}),
        "emodna.sampling_rate": str(config.sampling_rate),
        "emodna.id2label": json.dumps({str(k): v for k, v in config.id2label.items()}),
    })
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=size > EXTERNAL_DATA_BYTES)
    difference = None
    if check:
        difference = check_onnx(model, path)
        if not difference <= atol:
            raise AssertionError(f"onnxruntime logits of {path} differ from PyTorch's by {difference:.3g} "
                                 f"(> atol {atol}).")
        logger.info("Wrote %s; onnxruntime logits within %.2g of PyTorch's on a padded batch.", path, difference)
    return OnnxExport(path=path, max_abs_difference=difference, input_names=list(example))


class OnnxAudioClassifier:
    """Classify waveforms with an exported `model.onnx` and the folder's feature extractor (onnxruntime only;
    the opensmile backbone also needs the `opensmile` package for its front end).

        classifier = OnnxAudioClassifier("outputs/default")
        logits = classifier([wave_a, wave_b], sampling_rate=16000)   # numpy (batch, num_labels)
    """

    def __init__(self, folder: str | Path, providers: list[str] | None = None, **session_options):
        import onnxruntime
        from transformers import AutoConfig, AutoFeatureExtractor

        folder = Path(folder)
        self.config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        self.feature_extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
        options = onnxruntime.SessionOptions()
        for name, value in session_options.items():
            setattr(options, name, value)
        self.session = onnxruntime.InferenceSession(
            str(folder / ONNX_FILE), options, providers=providers or ["CPUExecutionProvider"])
        self.id2label = self.config.id2label

    def __call__(self, waveforms, sampling_rate: int | None = None) -> np.ndarray:
        features = self.feature_extractor(waveforms, sampling_rate=sampling_rate or self.config.sampling_rate,
                                          padding=True, return_attention_mask=True, return_tensors="np")
        inputs = onnx_inputs(self.config, features["input_values"], features["attention_mask"])
        return self.session.run(["logits"], inputs)[0]
