"""Configuration of the Emo-DNA model (``model_type="emodna"``).

This file is shipped as remote code next to saved checkpoints: it imports transformers' configuration classes and
the front-end registry of this folder (`backbones_emodna.py`), nothing else from emodna_hf.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig

from .backbones_emodna import BACKBONES, front_end
from .opensmile_emodna import OPENSMILE_FEATURE_SETS

POOLING_TYPES = ("mean", "attentive_stats")
CORPUS_ALIGNMENT_TYPES = ("adversarial", "mmd")
CLASS_ALIGNMENT_TYPES = ("contrastive", "prototype")
PSEUDO_LABEL_SELECTIONS = ("curriculum", "freematch")


class EmoDnaConfig(PreTrainedConfig):
    r"""Configuration of [`EmoDnaForAudioClassification`].

    The model is: waveform → backbone (a wav2vec2-family SSL encoder, or the light MFCC + bidirectional temporal
    convolutional network "tcn") → learnable weighted sum over backbone layers → masked pooling → two encoders on the
    pooled vector: the **emotion-relevant** encoder (followed by the emotion classifier) and the **corpus-specific**
    encoder (followed by a corpus classifier), each with a projection head for the contrastive decoupling loss; and a
    corpus discriminator behind a gradient reversal layer on the emotion embedding (corpus-level alignment).

    Args:
        backbone_type (`str`, defaults to `"tcn"`):
            `"tcn"` (log-mel MFCCs computed in the model + TIM-Net-style bidirectional dilated causal convolutions;
            trains on a CPU in minutes), `"opensmile"` (openSMILE utterance functionals such as eGeMAPS, computed in
            the model; needs the `opensmile` package; the recipes' CPU default) or one of `"wav2vec2"`, `"hubert"`,
            `"wavlm"`, `"data2vec-audio"`.
        opensmile_feature_set (`str`, defaults to `"eGeMAPSv02"`):
            Functionals of the `"opensmile"` backbone: `"eGeMAPSv02"` (88), `"GeMAPSv01b"` (62) or
            `"ComParE_2016"` (6373). `pooling` is not used with them (one vector per utterance).
        backbone_config (`dict` or `PreTrainedConfig`, *optional*):
            Configuration of the SSL encoder; its `model_type` must equal `backbone_type`. Defaults to that family's
            default (base-size) configuration. Ignored for `"tcn"`.
        sampling_rate (`int`, defaults to 16000): Rate of the waveforms the model takes.
        freeze_backbone (`bool`, defaults to `False`):
            Keep the whole SSL encoder frozen (and in eval mode); its features can then be cached once.
        freeze_feature_encoder (`bool`, defaults to `True`): Freeze only the SSL encoder's CNN feature encoder.
        use_weighted_layer_sum (`bool`, defaults to `True`):
            Learnable softmax-weighted sum over all backbone layers (SUPERB practice; for `"tcn"`, over the
            multi-scale block outputs as in TIM-Net). If `False`, the last layer is used.
        n_fft, win_length_ms, hop_length_ms, n_mels, n_mfcc, f_min, f_max:
            Front end of the `"tcn"` backbone. `n_mfcc=0` uses log-mel energies directly.
        cepstral_mean_normalization (`bool`, defaults to `True`):
            Subtract each utterance's mean from its MFCCs (over valid frames): removes stationary channel colouring,
            the cheapest corpus-invariance there is.
        tcn_hidden_size, tcn_num_blocks, tcn_kernel_size, tcn_dropout:
            Width, number of temporal-aware blocks (dilations 1, 2, 4, ...), kernel and dropout of the TCN.
        pooling (`str`, defaults to `"attentive_stats"`): `"mean"` or `"attentive_stats"` (attentive mean and std).
        attention_hidden_size (`int`, defaults to 128): Hidden size of the attentive pooling scorer.
        encoder_hidden_size (`int`, defaults to 256): Hidden size of the emotion and corpus encoders.
        embedding_size (`int`, defaults to 128): Size of the emotion-relevant and corpus-specific embeddings.
        projection_size (`int`, defaults to 64): Output size of the contrastive projection heads.
        discriminator_hidden_size (`int`, defaults to 128): Hidden size of the corpus discriminator.
        encoder_dropout (`float`, defaults to 0.1): Dropout in encoders, classifier and discriminator.
        num_corpora (`int`, defaults to 2):
            Number of corpora seen in training (source corpora + the target corpus); size of the corpus classifier
            and discriminator outputs.
        corpus_normalization (`bool`, *optional*):
            Standardise the pooled features of the emotion branch per corpus in training and with the target
            corpus's statistics at inference (AdaBN / domain-specific normalisation): first- and second-moment
            corpus-level alignment. `None` (default) = on for `"emodna"`, off for the baselines. When off with the
            `"opensmile"` backbone, the functionals are standardised with the source corpora's statistics instead
            (their raw scales differ by orders of magnitude).
        corpus_statistics (`str`, defaults to `"batch"`):
            Which statistics the corpus normalisation standardises with in training: `"batch"` (each corpus's rows
            in the batch, AdaBN-style, with running statistics for inference) or `"dataset"` (each corpus's mean and
            variance over all its training rows, set by [`EmoDnaTrainer`] before training and used throughout:
            the classical per-corpus standardisation; only for front ends without trainable parameters before
            pooling, i.e. `"opensmile"`).
        input_noise_std (`float`, defaults to 0.0):
            Standard deviation of Gaussian noise added in training to the (corpus-normalised) input of the emotion
            encoder: a regulariser against fitting the source corpus's exact feature values.
        input_dropout (`float`, defaults to 0.0): Dropout on the input of the emotion encoder, in training.
        speaker_normalization (`bool`, defaults to `False`):
            The cached features (the output of `compute_cacheable_features`) are standardised per speaker with the
            mean and standard deviation over all that speaker's utterances (`--speaker_normalization`; speaker ids
            are metadata, not emotion labels). Such a model needs every input's speaker statistics
            (`forward(speaker_mean=..., speaker_std=...)`, from `speaker_statistics`) and refuses input without
            them; see `speakers_emodna.py`.
        label_smoothing (`float`, defaults to 0.0): Label smoothing of the source cross-entropy.
        class_balanced_loss (`bool`, defaults to `False`):
            Weight the source cross-entropy by inverse class frequency in the source training rows (each class
            weighs as much in total, as the classical bar's `class_weight="balanced"`), so that a source corpus
            with skewed label priors (mostly neutral, say) does not teach the classifier those priors.
        adaptation_method (`str`, defaults to `"emodna"`):
            What [`EmoDnaTrainer`] optimises: `"emodna"`, or a baseline: `"source_only"`, `"dann"`, `"mmd"` (the
            registry of `emodna_hf.objectives`).
        use_decoupling, use_class_alignment, use_corpus_alignment (`bool`, default `True`):
            Switch the Emo-DNA components (ablations). Only read when `adaptation_method="emodna"`.
        adaptive_threshold (`bool`, defaults to `True`):
            Per-class adaptive pseudo-label thresholds; `False` uses `fixed_threshold` (ablation).
        pseudo_label_selection (`str`, defaults to `"freematch"`):
            The adaptive rule: `"freematch"` (FreeMatch's self-adaptive class-wise thresholds, EMAs whose time
            constant is a fixed share of training) or `"curriculum"` (class-wise thresholds from a memory of recent
            target predictions that select a share of the target growing with training progress, in proportion
            to the predicted classes). See docs/method.md §3.4.
        pseudo_label_ramp (`float`, defaults to 0.8):
            `"curriculum"`: training progress at which the selected share reaches `pseudo_label_max_fraction`
            (it grows linearly from 0 at `pseudo_label_warmup`).
        pseudo_label_max_fraction (`float`, defaults to 1.0): `"curriculum"`: the largest selected share.
        pseudo_label_memory_size (`int`, defaults to 2048):
            `"curriculum"`: target predictions remembered for the thresholds (at most the target corpus's size).
        pseudo_label_confidence_floor (`float`, defaults to 0.0):
            `"curriculum"`: no class threshold goes below this probability.
        fixed_threshold (`float`, defaults to 0.9): Confidence threshold when `adaptive_threshold=False`.
        threshold_momentum (`float`, *optional*):
            `"freematch"`: EMA momentum of the threshold state. `None` (default) derives it from the length of
            training so that the EMA's time constant is `threshold_time_constant` of all updates, whatever the
            number of steps: λ = 1 − 1 / (threshold_time_constant · updates).
        threshold_time_constant (`float`, defaults to 0.125): see `threshold_momentum`.
        corpus_alignment (`str`, defaults to `"adversarial"`): Emo-DNA corpus-level alignment: `"adversarial"` or `"mmd"`.
        class_alignment (`str`, defaults to `"contrastive"`): Emo-DNA class-level alignment: `"contrastive"` or `"prototype"`.
        contrastive_temperature (`float`, defaults to 0.1): Temperature of the contrastive losses.
        classification_weight, decoupling_weight, corpus_classification_weight, class_alignment_weight,
        pseudo_label_weight, corpus_alignment_weight (`float`):
            Weights of the loss terms (see docs/method.md).
        pseudo_label_warmup (`float`, defaults to 0.2):
            Fraction of training before target pseudo-labels are used (the classifier is unreliable before).
        grl_gamma (`float`, defaults to 10.0): Steepness of the DANN ramp `2 / (1 + exp(-gamma p)) - 1`.
        mmd_kernel_multipliers (`list[float]`): Bandwidth multipliers of the multi-kernel MMD.
        cdan_entropy_conditioning (`bool`, defaults to `True`): CDAN+E: weight each row of the conditional
            adversarial loss by `1 + exp(-H(p))` (confident predictions count more); `False`: plain CDAN.
        cdan_randomized_dim (`int`, defaults to 1024): CDAN: output size of the randomized multilinear map, used
            when `embedding_size × num_labels` exceeds 4096 (below, the exact outer product is used).
        mcc_weight (`float`, defaults to 1.0): Weight of the minimum class confusion loss (`adaptation_method="mcc"`).
        mcc_temperature (`float`, defaults to 2.5): Temperature of the softmax the MCC loss rescales (Jin et al.).
    """

    model_type = "emodna"
    sub_configs = {"backbone_config": AutoConfig}

    def __init__(
        self,
        backbone_type: str = "tcn",
        backbone_config: dict | PreTrainedConfig | None = None,
        opensmile_feature_set: str = "eGeMAPSv02",
        sampling_rate: int = 16000,
        freeze_backbone: bool = False,
        freeze_feature_encoder: bool = True,
        use_weighted_layer_sum: bool = True,
        n_fft: int = 512,
        win_length_ms: float = 25.0,
        hop_length_ms: float = 20.0,
        n_mels: int = 64,
        n_mfcc: int = 39,
        f_min: float = 20.0,
        f_max: float | None = None,
        cepstral_mean_normalization: bool = True,
        tcn_hidden_size: int = 64,
        tcn_num_blocks: int = 6,
        tcn_kernel_size: int = 2,
        tcn_dropout: float = 0.1,
        pooling: str = "attentive_stats",
        attention_hidden_size: int = 128,
        encoder_hidden_size: int = 256,
        embedding_size: int = 128,
        projection_size: int = 64,
        discriminator_hidden_size: int = 128,
        encoder_dropout: float = 0.1,
        num_corpora: int = 2,
        corpus_normalization: bool | None = None,
        corpus_statistics: str = "batch",
        input_noise_std: float = 0.0,
        input_dropout: float = 0.0,
        speaker_normalization: bool = False,
        label_smoothing: float = 0.0,
        class_balanced_loss: bool = False,
        adaptation_method: str = "emodna",
        use_decoupling: bool = True,
        use_class_alignment: bool = True,
        use_corpus_alignment: bool = True,
        adaptive_threshold: bool = True,
        fixed_threshold: float = 0.9,
        threshold_momentum: float | None = None,
        threshold_time_constant: float = 0.125,
        pseudo_label_selection: str = "freematch",
        pseudo_label_ramp: float = 0.8,
        pseudo_label_max_fraction: float = 1.0,
        pseudo_label_memory_size: int = 2048,
        pseudo_label_confidence_floor: float = 0.0,
        corpus_alignment: str = "adversarial",
        class_alignment: str = "contrastive",
        contrastive_temperature: float = 0.1,
        classification_weight: float = 1.0,
        decoupling_weight: float = 0.1,
        corpus_classification_weight: float = 0.1,
        class_alignment_weight: float = 0.1,
        pseudo_label_weight: float = 0.5,
        corpus_alignment_weight: float = 0.5,
        pseudo_label_warmup: float = 0.2,
        grl_gamma: float = 10.0,
        mmd_kernel_multipliers: list[float] | tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0),
        cdan_entropy_conditioning: bool = True,
        cdan_randomized_dim: int = 1024,
        mcc_weight: float = 1.0,
        mcc_temperature: float = 2.5,
        **kwargs: Any,
    ):
        declared = front_end(backbone_type)
        _check_choice("pooling", pooling, POOLING_TYPES)
        _check_choice("corpus_statistics", corpus_statistics, ("batch", "dataset"))
        if corpus_statistics == "dataset" and not declared.utterance_level:
            utterance_level = [name for name, f in BACKBONES.items() if f.utterance_level]
            raise ValueError("corpus_statistics='dataset' needs features that training does not change before "
                             f"pooling: an utterance-level front end ({', '.join(map(repr, utterance_level))}).")
        # adaptation_method is checked against the registry of emodna_hf.objectives by the trainer and the recipes:
        # a saved model must load (remote code) whatever method trained it.
        if not isinstance(adaptation_method, str) or not adaptation_method:
            raise ValueError(f"adaptation_method must be a method name, got {adaptation_method!r}")
        _check_choice("corpus_alignment", corpus_alignment, CORPUS_ALIGNMENT_TYPES)
        _check_choice("class_alignment", class_alignment, CLASS_ALIGNMENT_TYPES)
        _check_choice("pseudo_label_selection", pseudo_label_selection, PSEUDO_LABEL_SELECTIONS)
        _check_choice("opensmile_feature_set", opensmile_feature_set, tuple(OPENSMILE_FEATURE_SETS))
        if not 0.0 <= pseudo_label_warmup <= pseudo_label_ramp <= 1.0:
            raise ValueError(
                "Need 0 <= pseudo_label_warmup <= pseudo_label_ramp <= 1, got "
                f"{pseudo_label_warmup} and {pseudo_label_ramp}."
            )
        if not 0.0 < threshold_time_constant <= 1.0:
            raise ValueError(f"threshold_time_constant must be in (0, 1], got {threshold_time_constant}")
        if not 0.0 < pseudo_label_max_fraction <= 1.0:
            raise ValueError(f"pseudo_label_max_fraction must be in (0, 1], got {pseudo_label_max_fraction}")
        if num_corpora < 2:
            raise ValueError(f"num_corpora must be >= 2 (at least one source and one target corpus), got {num_corpora}")

        self.backbone_type = backbone_type
        self.backbone_config = _build_backbone_config(backbone_type, backbone_config)
        self.opensmile_feature_set = opensmile_feature_set
        self.sampling_rate = sampling_rate
        self.freeze_backbone = freeze_backbone
        self.freeze_feature_encoder = freeze_feature_encoder
        self.use_weighted_layer_sum = use_weighted_layer_sum
        self.n_fft = n_fft
        self.win_length_ms = win_length_ms
        self.hop_length_ms = hop_length_ms
        self.n_mels = n_mels
        self.n_mfcc = n_mfcc
        self.f_min = f_min
        self.f_max = f_max
        self.cepstral_mean_normalization = cepstral_mean_normalization
        self.tcn_hidden_size = tcn_hidden_size
        self.tcn_num_blocks = tcn_num_blocks
        self.tcn_kernel_size = tcn_kernel_size
        self.tcn_dropout = tcn_dropout
        self.pooling = pooling
        self.attention_hidden_size = attention_hidden_size
        self.encoder_hidden_size = encoder_hidden_size
        self.embedding_size = embedding_size
        self.projection_size = projection_size
        self.discriminator_hidden_size = discriminator_hidden_size
        self.encoder_dropout = encoder_dropout
        self.num_corpora = num_corpora
        self.corpus_normalization = corpus_normalization
        self.corpus_statistics = corpus_statistics
        self.input_noise_std = input_noise_std
        self.input_dropout = input_dropout
        self.speaker_normalization = bool(speaker_normalization)
        self.label_smoothing = label_smoothing
        self.class_balanced_loss = class_balanced_loss
        self.adaptation_method = adaptation_method
        self.use_decoupling = use_decoupling
        self.use_class_alignment = use_class_alignment
        self.use_corpus_alignment = use_corpus_alignment
        self.adaptive_threshold = adaptive_threshold
        self.fixed_threshold = fixed_threshold
        self.threshold_momentum = threshold_momentum
        self.threshold_time_constant = threshold_time_constant
        self.pseudo_label_selection = pseudo_label_selection
        self.pseudo_label_ramp = pseudo_label_ramp
        self.pseudo_label_max_fraction = pseudo_label_max_fraction
        self.pseudo_label_memory_size = pseudo_label_memory_size
        self.pseudo_label_confidence_floor = pseudo_label_confidence_floor
        self.corpus_alignment = corpus_alignment
        self.class_alignment = class_alignment
        self.contrastive_temperature = contrastive_temperature
        self.classification_weight = classification_weight
        self.decoupling_weight = decoupling_weight
        self.corpus_classification_weight = corpus_classification_weight
        self.class_alignment_weight = class_alignment_weight
        self.pseudo_label_weight = pseudo_label_weight
        self.corpus_alignment_weight = corpus_alignment_weight
        self.pseudo_label_warmup = pseudo_label_warmup
        self.grl_gamma = grl_gamma
        self.mmd_kernel_multipliers = [float(m) for m in mmd_kernel_multipliers]
        if mcc_temperature <= 0 or cdan_randomized_dim < 1:
            raise ValueError(f"mcc_temperature must be > 0 and cdan_randomized_dim >= 1, got {mcc_temperature} and "
                             f"{cdan_randomized_dim}.")
        self.cdan_entropy_conditioning = cdan_entropy_conditioning
        self.cdan_randomized_dim = cdan_randomized_dim
        self.mcc_weight = mcc_weight
        self.mcc_temperature = mcc_temperature
        # A saved folder must load through every Auto class we promise, including in a process that never
        # imported emodna_hf (trust_remote_code); save_pretrained merges the entries of the saved object's class.
        kwargs.setdefault(
            "auto_map",
            {
                "AutoConfig": "configuration_emodna.EmoDnaConfig",
                "AutoModel": "modeling_emodna.EmoDnaForAudioClassification",
                "AutoModelForAudioClassification": "modeling_emodna.EmoDnaForAudioClassification",
            },
        )
        # The extra outputs the trainer asks for are not predictions: keep them out of Trainer's eval gathering.
        kwargs.setdefault(
            "keys_to_ignore_at_inference",
            [
                "emotion_embeddings",
                "pooled_features",
                "corpus_embeddings",
            ],
        )
        super().__init__(**kwargs)
        if not self.label2id:
            # id2label alone would otherwise save label2id=None, which breaks label lookups after loading.
            self.label2id = {name: int(i) for i, name in self.id2label.items()}
        _check_label_maps(self.id2label, self.label2id)

    @property
    def uses_ssl_backbone(self) -> bool:
        return front_end(self.backbone_type).ssl

    @property
    def feature_standardization(self) -> str | None:
        """How the pooled features are standardised: `"corpus"` (each corpus with its own statistics; the target's
        at inference), `"source"` (with the source corpora's statistics; openSMILE functionals without corpus
        normalisation, the classical "source-fitted standardisation") or `None`."""
        if self.uses_corpus_normalization:
            return "corpus"
        return "source" if front_end(self.backbone_type).utterance_level else None

    @property
    def uses_corpus_normalization(self) -> bool:
        """`corpus_normalization`, where `None` means: on for Emo-DNA, off for the baselines (their classic form)."""
        if self.corpus_normalization is None:
            return self.adaptation_method == "emodna"
        return self.corpus_normalization


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"Unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}.")


def _build_backbone_config(
    backbone_type: str, backbone_config: dict | PreTrainedConfig | None
) -> PreTrainedConfig | None:
    if not front_end(backbone_type).ssl:
        if backbone_config is not None:
            raise ValueError(f"backbone_config is only used with an SSL backbone_type, not with {backbone_type!r}.")
        return None
    if backbone_config is None:
        return AutoConfig.for_model(backbone_type)
    if isinstance(backbone_config, dict):
        model_type = backbone_config.get("model_type", backbone_type)
        if model_type != backbone_type:
            raise ValueError(f"backbone_config has model_type {model_type!r} but backbone_type is {backbone_type!r}.")
        fields = {k: v for k, v in backbone_config.items() if k != "model_type"}
        return AutoConfig.for_model(backbone_type, **fields)
    if backbone_config.model_type != backbone_type:
        raise ValueError(
            f"backbone_config has model_type {backbone_config.model_type!r} but backbone_type is {backbone_type!r}."
        )
    return backbone_config


def _check_label_maps(id2label: dict, label2id: dict) -> None:
    """Both maps must describe the same bijection (stale or hand-edited maps are a common slip)."""
    forward = {int(i): str(name) for i, name in id2label.items()}
    backward = {str(name): int(i) for name, i in label2id.items()}
    if sorted(forward) != list(range(len(forward))):
        raise ValueError(f"id2label ids must be 0..{len(forward) - 1}, got {sorted(forward)}.")
    if {name: i for i, name in forward.items()} != backward:
        raise ValueError(f"id2label {forward} and label2id {backward} disagree; pass two maps that invert each other.")


EmoDnaConfig.register_for_auto_class()
