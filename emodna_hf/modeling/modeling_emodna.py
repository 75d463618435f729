"""Emo-DNA model for cross-corpus speech emotion recognition.

Emo-DNA (Emotion Decoupling aNd Alignment learning; Ye et al., ACM MM 2023, arXiv 2308.02190) separates an
emotion-relevant representation from a corpus-specific one on top of a shared backbone, and aligns the emotion
representation across corpora at the class level (pseudo-labelled targets) and at the corpus level (adversarially).
This file holds the inference network: backbone, layer sum, pooling, corpus normalisation, the emotion encoder and
the classifier. The training-only parts (Emo-DNA's corpus branch and projectors, the corpus discriminator behind a
gradient reversal layer) belong to the adaptation methods that train them (`emodna_hf.objectives`), the losses to
`emodna_hf.losses` and the training loop to `emodna_hf.trainer`; see docs/method.md.

Shipped as remote code next to saved checkpoints: only `from .x import y` imports of files in this folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .backbones_emodna import front_end
from .configuration_emodna import EmoDnaConfig
from .layers_emodna import (  # noqa: F401 - CorpusNormalization and the pooling classes were defined here
    POOLING_CLASSES,
    AttentiveStatisticsPooling,
    CorpusNormalization,
    MaskedMeanPooling,
    WeightedLayerSum,
    weight_dtype,
)
from .speakers_emodna import HOW_TO_PROVIDE, normalize_features, speaker_statistics


@dataclass
class EmoDnaOutput(ModelOutput):
    """Output of [`EmoDnaForAudioClassification`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): Source cross-entropy over rows with `labels != -100`.
        logits (`torch.FloatTensor` of shape `(batch, num_labels)`): Emotion logits.
        emotion_embeddings (`(batch, embedding_size)`): Output of the emotion-relevant encoder (`h`), what the
            classifier reads.
        pooled_features (`(batch, pooled_size)`): The pooled backbone features before corpus normalisation (what
            Emo-DNA's corpus-specific branch reads).
        corpus_embeddings (`(batch, embedding_size)`): The corpus-specific embeddings `u` of Emo-DNA's corpus
            branch. Never set by the model (the branch is training-only and belongs to the method); the trainer adds
            them to evaluation outputs for the embedding reports.
    `emotion_embeddings` and `pooled_features` are returned only with `output_embeddings=True`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    emotion_embeddings: torch.FloatTensor | None = None
    pooled_features: torch.FloatTensor | None = None
    corpus_embeddings: torch.FloatTensor | None = None


# Shortest utterance the model classifies (openSMILE's pitch window is 60 ms; no emotion is audible in less).
MIN_INPUT_SECONDS = 0.1


def _mlp(input_size: int, hidden_size: int, output_size: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(input_size, hidden_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_size, output_size)
    )


class EmoDnaPreTrainedModel(PreTrainedModel):
    config: EmoDnaConfig
    config_class = EmoDnaConfig
    base_model_prefix = "emodna"
    main_input_name = "input_values"
    input_modalities = "audio"
    supports_gradient_checkpointing = True
    # Our forward takes no **kwargs and returns a plain mean loss: Trainer must scale it for gradient accumulation.
    accepts_loss_kwargs = False
    # Training-only heads that checkpoints saved before they moved to the adaptation methods still hold (corpus
    # branch, projectors, corpus discriminator): loading such a checkpoint skips them without a warning.
    _keys_to_ignore_on_load_unexpected = [
        r"^(corpus_encoder|emotion_projector|corpus_projector|corpus_classifier|domain_discriminator)\.",
    ]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """`PreTrainedModel.save_pretrained`, naming in config.json the pipeline that ships with the model
        (`pipeline_emodna.py`, copied into the folder as a relative import of this file): `pipeline(...,
        trust_remote_code=True)` then decodes files with soundfile and resamples with soxr, not ffmpeg/torchaudio."""
        from .pipeline_emodna import custom_pipelines

        self.config.custom_pipelines = custom_pipelines()
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's default (Kaiming-uniform) init for the heads and the TCN: the 0.02-normal fallback of
        # transformers is tuned for transformers, and it shrinks the small conv stack's signal. SSL backbones are
        # initialised by their own _init_weights (dispatched per sub-model by transformers).
        if isinstance(module, nn.Linear | nn.Conv1d):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, WeightedLayerSum):
            init.zeros_(module.layer_weights)


class EmoDnaForAudioClassification(EmoDnaPreTrainedModel):
    """Emo-DNA speech emotion classifier: backbone → layer sum → pooling → corpus normalisation → emotion encoder →
    classifier, and nothing else (what `save_pretrained` writes is what inference uses).

    The adaptation methods (`emodna_hf.objectives`) own their training-only parts and read what they need from
    `forward(..., output_embeddings=True)`: the logits, the emotion embeddings and the pooled features.
    """

    def __init__(self, config: EmoDnaConfig):
        super().__init__(config)
        declared = front_end(config.backbone_type)  # what the front end declares (backbones_emodna.BACKBONES)
        self.backbone = declared.build(config)
        num_layers, hidden_size = declared.dims(config, self.backbone)
        self.layer_sum = WeightedLayerSum(num_layers) if config.use_weighted_layer_sum else None
        # Utterance functionals are one "frame": pooling them is the identity whatever config.pooling says.
        pooling = "mean" if declared.utterance_level else config.pooling
        self.pooling = POOLING_CLASSES[pooling](hidden_size, config)
        pooled_size, embedding_size = self.pooling.output_size, config.embedding_size

        standardization = config.feature_standardization
        self.corpus_normalization = (
            CorpusNormalization(pooled_size, config.num_corpora - 1, per_corpus=standardization == "corpus")
            if standardization
            else None
        )
        self.emotion_encoder = _mlp(pooled_size, config.encoder_hidden_size, embedding_size, config.encoder_dropout)
        self.classifier = nn.Sequential(
            nn.ReLU(), nn.Dropout(config.encoder_dropout), nn.Linear(embedding_size, config.num_labels)
        )
        self.post_init()
        self._apply_freezing()

    # --- backbone -------------------------------------------------------------------------------------------------

    def _apply_freezing(self) -> None:
        if self.config.uses_ssl_backbone:
            if self.config.freeze_backbone:
                self.backbone.requires_grad_(False)
            elif self.config.freeze_feature_encoder:
                # Not every family's base model has freeze_feature_encoder(); all name the CNN feature_extractor.
                self.backbone.feature_extractor.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.uses_ssl_backbone and self.config.freeze_backbone:
            # A frozen backbone stays deterministic (no dropout) so that cached features equal live ones.
            self.backbone.eval()
        return self

    def compute_cacheable_features(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The parameter-free (or frozen) part of the forward pass, to compute once and cache.

        Returns `(input_features, feature_mask)`: for the `"tcn"` backbone, MFCC frames `(batch, frames, n_mfcc)`;
        for `"opensmile"`, the functionals `(batch, 1, n_features)`; for a frozen SSL backbone, all hidden layers `(batch, layers, frames, hidden)`. Feed them back through
        `forward(input_features=..., feature_mask=...)`.
        """
        input_values, attention_mask = self._check_waveform(input_values, attention_mask)
        if not self.config.uses_ssl_backbone:
            return self.backbone.front_end(input_values, attention_mask)
        if not self.config.freeze_backbone:
            raise ValueError("Backbone features can only be cached when config.freeze_backbone=True.")
        return self._ssl_layers(input_values, attention_mask)

    def _ssl_layers(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        # The encoder's first convolution takes the waveform in the weights' dtype (bfloat16 / float16 models).
        input_values = input_values.to(self.backbone.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_backbone):
            outputs = self.backbone(input_values, attention_mask=attention_mask, output_hidden_states=True)
        # Pre-LayerNorm ("stable") encoders apply their final LayerNorm after the last collected hidden state;
        # use last_hidden_state as the top layer so that norm is part of the model (it equals it otherwise).
        layers = torch.stack((*outputs.hidden_states[:-1], outputs.last_hidden_state), dim=1)
        frames = layers.shape[2]
        if attention_mask is None:
            frame_mask = torch.ones(layers.shape[0], frames, dtype=torch.bool, device=layers.device)
        else:
            frame_mask = self.backbone._get_feature_vector_attention_mask(frames, attention_mask).bool()
        return layers, frame_mask

    def _backbone_layers(self, input_values, attention_mask, input_features, feature_mask, speaker_mean=None,
                         speaker_std=None):
        """`(batch, layers, frames, hidden)` and the frame mask, from waveforms or cached features (standardised
        with the speakers' statistics first when the model was trained so)."""
        if (input_values is None) == (input_features is None):
            raise ValueError("Pass exactly one of input_values (waveforms) and input_features (cached features).")
        self._check_speaker_statistics(speaker_mean, speaker_std)
        if input_values is not None:
            input_values, attention_mask = self._check_waveform(input_values, attention_mask)
            if not self.training and not torch.compiler.is_exporting():
                # (An exported graph cannot raise: these checks are host-side Python, skipped by torch.export
                # and the ONNX exporter; emodna_hf.export documents that its callers check inputs themselves.)
                self._refuse_unclassifiable(input_values, attention_mask)
            if self.config.uses_ssl_backbone:
                input_features, feature_mask = self._ssl_layers(input_values, attention_mask)
            else:
                input_features, feature_mask = self.backbone.front_end(input_values, attention_mask)
        else:
            expected_dims = 4 if self.config.uses_ssl_backbone else 3
            if input_features.dim() != expected_dims:
                raise ValueError(
                    f"input_features for a {self.config.backbone_type!r} backbone must have {expected_dims} dims, got "
                    f"shape {tuple(input_features.shape)}."
                )
            if feature_mask is None:
                feature_mask = torch.ones(input_features.shape[0], input_features.shape[-2], dtype=torch.bool)
            feature_mask = feature_mask.to(device=input_features.device, dtype=torch.bool)
        if self.config.speaker_normalization:
            input_features = normalize_features(input_features, feature_mask, speaker_mean, speaker_std)
        if self.config.uses_ssl_backbone:
            return input_features, feature_mask
        return self.backbone.encode_features(input_features, feature_mask), feature_mask

    def _check_speaker_statistics(self, speaker_mean, speaker_std) -> None:
        """A speaker-normalised model never guesses statistics; a speaker-free one never ignores them."""
        given = (speaker_mean is not None, speaker_std is not None)
        if self.config.speaker_normalization and not all(given):
            raise ValueError(
                "This model was trained on features standardised per speaker (config.speaker_normalization=True): "
                "every input needs its speaker's statistics (speaker_mean and speaker_std), and there are none "
                "here. " + HOW_TO_PROVIDE
            )
        if not self.config.speaker_normalization and any(given):
            raise ValueError("speaker_mean/speaker_std were given, but this model was trained speaker-free "
                             "(config.speaker_normalization=False) and would not use them.")

    @torch.no_grad()
    def speaker_statistics(
        self, input_values: torch.Tensor | list, attention_mask: torch.Tensor | None = None, batch_size: int = 16
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One speaker's `(speaker_mean, speaker_std)`, float32 vectors of the cached feature size, from several
        utterances of that speaker (the more, the better: training used all of a speaker's utterances in the
        corpus).

        Args:
            input_values: The speaker's waveforms as the saved feature extractor returns them: a padded batch
                `(utterances, samples)` with its `attention_mask`, or a list of 1-D waveforms.
            batch_size: Utterances run through the front end at once.

        The statistics are those of training (`emodna_hf.data.speakers`): mean and population standard deviation
        (+1e-5) over every valid frame of the cached features, in float64. Pass them to `forward` with any of
        the speaker's utterances (they broadcast over the batch).
        """
        return speaker_statistics(self, input_values, attention_mask, batch_size)

    def _check_waveform(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        if input_values.dim() == 1:
            input_values = input_values.unsqueeze(0)
        if input_values.dim() != 2:
            raise ValueError(
                f"input_values must be mono waveforms of shape (batch, samples) at {self.config.sampling_rate} Hz; "
                f"got shape {tuple(input_values.shape)}. Average the channels of multichannel audio first."
            )
        if attention_mask is not None:
            if attention_mask.dim() == 1:
                attention_mask = attention_mask.unsqueeze(0)
            if attention_mask.shape != input_values.shape:
                raise ValueError(
                    f"attention_mask shape {tuple(attention_mask.shape)} does not match input_values shape "
                    f"{tuple(input_values.shape)}."
                )
        return input_values, attention_mask

    def _refuse_unclassifiable(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None) -> None:
        """Inference gets a clear error instead of a confident label for input that holds no speech to classify.

        Refused: non-finite samples (NaN/inf), utterances shorter than `MIN_INPUT_SECONDS`, and digital silence
        (every valid sample exactly 0). Low-level noise is classified like any input: the model has no speech
        detector. Checked by `forward` on waveforms in eval mode only: training batches and feature caching come
        from the data layer.
        """
        if not torch.isfinite(input_values).all():
            raise ValueError("input_values contain NaN or infinite samples; check the audio file or array.")
        lengths = (attention_mask.sum(-1) if attention_mask is not None
                   else torch.full(input_values.shape[:1], input_values.shape[-1], device=input_values.device))
        minimum = int(MIN_INPUT_SECONDS * self.config.sampling_rate)
        if int(lengths.min()) < minimum:
            rows, samples = input_values.shape[0], input_values.shape[-1]
            # (samples, channels) audio passed as a batch gives "utterances" of one sample per channel.
            hint = (f" input_values has shape {tuple(input_values.shape)}: if that is one multichannel utterance "
                    "(samples, channels), mix it down to mono, or pass it through the model's feature extractor, "
                    "which does." if samples <= 8 < rows else "")
            raise ValueError(
                f"An utterance of {int(lengths.min())} samples is too short to classify: at least "
                f"{MIN_INPUT_SECONDS} s ({minimum} samples at {self.config.sampling_rate} Hz) is needed.{hint}"
            )
        valid = input_values.abs() if attention_mask is None else input_values.abs() * attention_mask
        if bool((valid.amax(-1) == 0).any()):
            raise ValueError("An utterance is digital silence (every sample is 0): there is no speech to classify.")

    # --- forward --------------------------------------------------------------------------------------------------

    def forward(
        self,
        input_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        input_features: torch.Tensor | None = None,
        feature_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        corpus_ids: torch.LongTensor | None = None,
        output_embeddings: bool = False,
        speaker_mean: torch.Tensor | None = None,
        speaker_std: torch.Tensor | None = None,
    ) -> EmoDnaOutput:
        r"""
        Args:
            input_values (`(batch, samples)`): Mono waveforms at `config.sampling_rate`, right-padded.
            attention_mask (`(batch, samples)`): 1 for real samples, 0 for padding.
            input_features: Cached output of [`compute_cacheable_features`], instead of `input_values`.
            feature_mask (`(batch, frames)`): Valid-frame mask of `input_features`.
            labels (`(batch,)`): Emotion ids; `-100` marks rows without a label (unlabelled target rows).
            corpus_ids (`(batch,)`): Training corpus of each row (target = `num_corpora - 1`), for the corpus
                normalisation: in training each corpus is standardised with its batch statistics; in evaluation
                with its running statistics (without ids, inference: the target's).
            output_embeddings: Also return what the adaptation methods read: the emotion embeddings and the pooled
                features before corpus normalisation.
            speaker_mean, speaker_std (`(batch, feature_size)` or `(feature_size,)`): Each row's speaker
                statistics of the cached features ([`speaker_statistics`]); required by, and only by, a model
                trained with `config.speaker_normalization=True`, which standardises the cached features with them.
        """
        layers, frame_mask = self._backbone_layers(input_values, attention_mask, input_features, feature_mask,
                                                   speaker_mean, speaker_std)
        hidden_states = self.layer_sum(layers) if self.layer_sum is not None else layers[:, -1]
        pooled = self.pooling(hidden_states, frame_mask)
        # The emotion branch sees corpus-normalised features; the corpus branch keeps the corpus information.
        emotion_input = pooled if self.corpus_normalization is None else self.corpus_normalization(pooled, corpus_ids)
        if self.training and self.config.input_noise_std:
            emotion_input = emotion_input + self.config.input_noise_std * torch.randn_like(emotion_input)
        emotion_input = nn.functional.dropout(emotion_input, self.config.input_dropout, self.training)
        # Pooling and normalisation statistics are float32 (layers_emodna); the encoders take their weights' dtype.
        compute_dtype = weight_dtype(self.emotion_encoder)
        emotion_embeddings = self.emotion_encoder(emotion_input.to(compute_dtype))
        logits = self.classifier(emotion_embeddings)

        loss = None
        if labels is not None:
            labels = labels.to(logits.device)
            if (labels != -100).any():
                loss = nn.functional.cross_entropy(
                    logits, labels, ignore_index=-100, label_smoothing=self.config.label_smoothing
                )
            else:
                # Keep the graph connected (DDP expects every used parameter to get a gradient).
                loss = logits.sum() * 0.0

        if not output_embeddings:
            return EmoDnaOutput(loss=loss, logits=logits)
        return EmoDnaOutput(loss=loss, logits=logits, emotion_embeddings=emotion_embeddings, pooled_features=pooled)

    @torch.no_grad()
    def pooled_features(self, input_values: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                        input_features: torch.Tensor | None = None, feature_mask: torch.Tensor | None = None,
                        speaker_mean: torch.Tensor | None = None,
                        speaker_std: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled features `(batch, P)` that the corpus normalisation standardises (no gradient)."""
        layers, frame_mask = self._backbone_layers(input_values, attention_mask, input_features, feature_mask,
                                                   speaker_mean, speaker_std)
        hidden_states = self.layer_sum(layers) if self.layer_sum is not None else layers[:, -1]
        return self.pooling(hidden_states, frame_mask)

    # --- construction from a pretrained SSL checkpoint -------------------------------------------------------------

    @classmethod
    def from_backbone_pretrained(
        cls, backbone_name_or_path: str, *, token: str | None = None, revision: str | None = None, **config_kwargs
    ) -> EmoDnaForAudioClassification:
        """Build a model whose SSL backbone starts from a pretrained checkpoint (Hub id or local folder).

        The emotion encoder and classifier are freshly initialised. `config_kwargs` go to [`EmoDnaConfig`] (e.g. `id2label`, `label2id`,
        `num_corpora`, `freeze_backbone`). Weight loading happens here, never in `__init__`, because
        `from_pretrained` builds models on the meta device.
        """
        backbone_config = AutoConfig.from_pretrained(backbone_name_or_path, token=token, revision=revision)
        config = EmoDnaConfig(
            backbone_type=backbone_config.model_type, backbone_config=backbone_config, **config_kwargs
        )
        model = cls(config)
        backbone = AutoModel.from_pretrained(backbone_name_or_path, token=token, revision=revision)
        # strict=False only for unexpected keys: pretraining-only heads (quantizer, projections) are not needed.
        missing, _ = model.backbone.load_state_dict(backbone.state_dict(), strict=False)
        if missing:
            raise ValueError(f"Backbone checkpoint {backbone_name_or_path!r} lacks weights: {missing[:5]}")
        return model


EmoDnaForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")
