"""The arguments of a run: `ModelArguments`, `DataArguments`, `EvaluationArguments`, with their validation.

* :class:`ModelArguments` — backbone and adaptation method. Every method field is an *optional override* of an
  :class:`~emodna_hf.EmoDnaConfig` field: left at None, the config's own default applies (EmoDnaConfig is the
  single source of default values).
* :class:`DataArguments` — one or several labelled source corpora, the unlabelled target corpus, the label
  scheme and audio options. Parallel `source_*` lists (a single value applies to every source) and `target_*`
  scalars; in YAML files also as `sources: [{name: ..., dataset: ...}]` and `target: {name: ..., dataset: ...}`.
* :class:`EvaluationArguments` — a saved model and the corpora to evaluate it on.
`emodna_hf.config_files` reads them from YAML/JSON files and the command line (`parse_args`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any

from .corpus_arguments import (  # noqa: F401 (re-exported: the corpus schema's helpers)
    _CORPUS_FIELDS,
    _HUB_ID,
    _NONE_STRINGS,
    _none_if_auto,
    _parse_mapping,
    check_corpus_source,
    check_sources,
    check_specs,
    corpus_specs,
    looks_like_local_path,
    normalise_corpus_lists,
)
from .data import NO_LABELS, SCHEMES, CorpusSpec
from .modeling import EmoDnaConfig
from .modeling.backbones_emodna import BACKBONES, front_end
from .modeling.configuration_emodna import CLASS_ALIGNMENT_TYPES, CORPUS_ALIGNMENT_TYPES
from .objectives import REGISTRY as ADAPTATION_METHODS
from .objectives import objective_class

# EmoDnaConfig's defaults, read from its signature: the help texts quote them, nothing here copies them.
_CONFIG_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(EmoDnaConfig.__init__).parameters.items()
    if p.default is not inspect.Parameter.empty
}


# Config fields that the run derives from the data; they cannot be overridden.
_DERIVED_CONFIG_FIELDS = ("id2label", "label2id", "num_labels", "num_corpora", "sampling_rate", "corpus_names")


def _override(name: str, help: str, **metadata: Any) -> Any:
    """A dataclass field that overrides EmoDnaConfig's `name` when set (None = keep the config default)."""
    return field(
        default=None, metadata={"help": f"{help} Default: EmoDnaConfig's ({_CONFIG_DEFAULTS[name]!r}).", **metadata}
    )


def _bool_override(name: str, help: str) -> Any:
    # nargs/const: `--flag` alone means True, `--flag false` False (HfArgumentParser's Optional[bool] needs a value).
    return _override(name, help, nargs="?", const=True)


@dataclass
class ModelArguments:
    """The backbone and the adaptation method (all method fields override EmoDnaConfig defaults when set)."""

    backbone_type: str | None = _override(
        "backbone_type",
        f"Backbone family: {', '.join(BACKBONES)}. Inferred from backbone_name_or_path when that is set.",
    )
    backbone_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Pretrained SSL checkpoint (Hub id such as microsoft/wavlm-base-plus, or a local folder) to "
            "start the backbone from. Without it an SSL backbone is randomly initialised (tests only)."
        },
    )
    backbone_revision: str | None = field(default=None, metadata={"help": "Revision of the SSL checkpoint."})
    freeze_backbone: bool | None = _bool_override("freeze_backbone", "Keep the whole SSL encoder frozen.")
    freeze_feature_encoder: bool | None = _bool_override(
        "freeze_feature_encoder", "Freeze only the SSL encoder's CNN feature encoder."
    )
    adaptation_method: str | None = _override(
        "adaptation_method", f"Adaptation method: {', '.join(ADAPTATION_METHODS)}."
    )
    use_decoupling: bool | None = _bool_override("use_decoupling", "Emo-DNA ablation: contrastive decoupling.")
    use_class_alignment: bool | None = _bool_override(
        "use_class_alignment", "Emo-DNA ablation: class-level alignment with target pseudo-labels."
    )
    use_corpus_alignment: bool | None = _bool_override(
        "use_corpus_alignment", "Emo-DNA ablation: corpus-level alignment."
    )
    corpus_normalization: bool | None = _bool_override(
        "corpus_normalization", "Per-corpus standardisation of the pooled features (None: on for Emo-DNA only)."
    )
    adaptive_threshold: bool | None = _bool_override(
        "adaptive_threshold", "Self-adaptive pseudo-label thresholds (False: fixed_threshold)."
    )
    fixed_threshold: float | None = _override("fixed_threshold", "Pseudo-label threshold when not adaptive.")
    corpus_alignment: str | None = _override(
        "corpus_alignment", f"Emo-DNA corpus-level alignment: {', '.join(CORPUS_ALIGNMENT_TYPES)}."
    )
    class_alignment: str | None = _override(
        "class_alignment", f"Emo-DNA class-level alignment: {', '.join(CLASS_ALIGNMENT_TYPES)}."
    )
    classification_weight: float | None = _override("classification_weight", "Weight of the source cross-entropy.")
    decoupling_weight: float | None = _override("decoupling_weight", "Weight of the decoupling loss.")
    corpus_classification_weight: float | None = _override(
        "corpus_classification_weight", "Weight of the corpus classification loss."
    )
    class_alignment_weight: float | None = _override("class_alignment_weight", "Weight of class-level alignment.")
    pseudo_label_weight: float | None = _override("pseudo_label_weight", "Weight of the pseudo-label loss.")
    corpus_alignment_weight: float | None = _override(
        "corpus_alignment_weight", "Weight of corpus-level alignment (also DANN/MMD)."
    )
    pseudo_label_warmup: float | None = _override(
        "pseudo_label_warmup", "Fraction of training before pseudo-labels are used."
    )
    contrastive_temperature: float | None = _override("contrastive_temperature", "Contrastive temperature.")
    grl_gamma: float | None = _override("grl_gamma", "Steepness of the gradient-reversal ramp.")
    cdan_entropy_conditioning: bool | None = _bool_override(
        "cdan_entropy_conditioning", "CDAN+E: weight rows by 1 + exp(-entropy) (False: plain CDAN)."
    )
    mcc_weight: float | None = _override("mcc_weight", "Weight of the minimum class confusion loss (mcc).")
    mcc_temperature: float | None = _override("mcc_temperature", "Softmax temperature of the MCC loss.")
    label_smoothing: float | None = _override("label_smoothing", "Label smoothing of the source cross-entropy.")
    corpus_statistics: str | None = _override(
        "corpus_statistics", "Corpus normalisation statistics in training: 'batch', 'dataset' (whole corpora; "
        "opensmile only) or 'auto' (the recipe default: 'dataset' for opensmile, else 'batch')."
    )
    class_balanced_loss: bool | None = _bool_override(
        "class_balanced_loss", "Weight the source cross-entropy by inverse class frequency."
    )
    input_noise_std: float | None = _override(
        "input_noise_std", "Gaussian noise on the emotion encoder's (normalised) input, in training."
    )
    input_dropout: float | None = _override("input_dropout", "Dropout on the emotion encoder's input, in training.")
    config_overrides: dict | str | None = field(
        default=None,
        metadata={
            "help": "Any other EmoDnaConfig fields, as JSON or key=value,key=value (e.g. "
            "'tcn_hidden_size=32,pooling=mean'); a mapping in YAML."
        },
    )
    cache_features: bool | None = field(
        default=None,
        metadata={
            "help": "Compute the parameter-free / frozen backbone features once and train on them (same logits, "
            "less work per epoch). Default: on for the tcn backbone and for a frozen SSL backbone.",
            "nargs": "?",
            "const": True,
        },
    )

    def __post_init__(self):
        self.config_overrides = _parse_mapping(self.config_overrides, "config_overrides")
        for name, choices in (
            ("backbone_type", tuple(BACKBONES)),
            ("adaptation_method", ADAPTATION_METHODS),
            ("corpus_alignment", CORPUS_ALIGNMENT_TYPES),
            ("class_alignment", CLASS_ALIGNMENT_TYPES),
        ):
            value = getattr(self, name)
            if value is not None and value not in choices:
                raise ValueError(f"Unknown {name} {value!r}; expected one of {', '.join(map(repr, choices))}.")
        if self.adaptation_method is not None:
            if objective_class(self.adaptation_method).batches != "source_and_target":
                raise ValueError(f"adaptation_method {self.adaptation_method!r} is source-free (it trains on the "
                                 "target alone): adapt a trained checkpoint with recipes/adapt.py.")
        for key in self.config_overrides or {}:
            if key in _DERIVED_CONFIG_FIELDS:
                raise ValueError(f"config_overrides cannot set {key!r}: the run derives it from the data.")
            if key not in _CONFIG_DEFAULTS:
                close = difflib.get_close_matches(key, list(_CONFIG_DEFAULTS), n=3)
                raise ValueError(
                    f"config_overrides: {key!r} is not an EmoDnaConfig field"
                    + (f" (did you mean {', '.join(close)}?)" if close else "")
                )
            if hasattr(self, key) and getattr(self, key) is not None:
                raise ValueError(f"{key!r} is set both directly and in config_overrides; set it once.")

    def config_kwargs(self) -> dict[str, Any]:
        """The EmoDnaConfig fields this run sets explicitly (everything else keeps the config default)."""
        names = [f.name for f in dataclasses.fields(self) if f.name in _CONFIG_DEFAULTS]
        kwargs = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        kwargs.update(self.config_overrides or {})
        if kwargs.get("corpus_statistics") == "auto":  # whole-corpus statistics need a fixed utterance-level front end
            backbone = None if self.backbone_name_or_path else kwargs.get("backbone_type",
                                                                          _CONFIG_DEFAULTS["backbone_type"])
            fixed = backbone is not None and front_end(backbone).utterance_level
            kwargs["corpus_statistics"] = "dataset" if fixed else "batch"
        return kwargs


@dataclass
class DataArguments:
    """Source and target corpora, label scheme and audio options.

    `source_*` fields are parallel lists, one entry per source corpus (a single entry applies to all);
    `none`/`auto` entries mean "not set". `*_label_map` and `*_load_kwargs` are mappings: for sources keyed by
    corpus name.
    """

    source_name: list[str] = field(
        default_factory=lambda: ["synth-a"],
        metadata={"help": "Source corpus names (also select the built-in label map unless source_label_map_name)."},
    )
    source_dataset: list[str] = field(
        default_factory=lambda: ["synthetic:synth-a"],
        metadata={
            "help": "Where each source corpus is: a Hub dataset id, a local audiofolder / save_to_disk folder, a "
            "CSV/TSV/JSONL manifest or parquet file, or synthetic:<synth-a|synth-b|synth-c>."
        },
    )
    source_split: list[str] = field(default_factory=lambda: ["train"], metadata={"help": "Split of each source."})
    source_config_name: list[str] | None = field(default=None, metadata={"help": "Hub config of each source."})
    source_audio_column: list[str] = field(default_factory=lambda: ["audio"], metadata={"help": "Audio column."})
    source_label_column: list[str] | None = field(
        default=None, metadata={"help": "Label column (default: emotion, label, labels, ...)."}
    )
    source_speaker_column: list[str] | None = field(
        default=None, metadata={"help": "Speaker column (default: speaker, speaker_id, ...; used for splits)."}
    )
    source_utt_id_column: list[str] | None = field(default=None, metadata={"help": "Utterance-id column."})
    source_label_map_name: list[str] | None = field(
        default=None,
        metadata={"help": "Built-in label map per source (emodb, iemocap, ravdess, crema-d, enterface05, casia, "
                  "savee, tess, emovo, msp-podcast, synthetic) when the name is not one."},
    )
    source_label_map: dict | str | None = field(
        default=None,
        metadata={"help": "Extra raw-label -> emotion entries per source: {corpus: {raw: emotion or null}}."},
    )
    source_load_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": "Extra load_dataset / make_synthetic_corpus kwargs per source: {corpus: {...}}."},
    )
    target_name: str = field(default="synth-b", metadata={"help": "Target corpus name."})
    target_dataset: str = field(
        default="synthetic:synth-b", metadata={"help": "Where the target corpus is (as for source_dataset)."}
    )
    target_split: str | None = field(default="train", metadata={"help": "Split of the target corpus."})
    target_config_name: str | None = field(default=None, metadata={"help": "Hub config of the target."})
    target_audio_column: str = field(default="audio", metadata={"help": "Audio column of the target."})
    target_label_column: str | None = field(
        default=None,
        metadata={"help": "Label column of the target, used for scoring only. Default: found automatically, and a "
                  "target without one is unlabelled (the normal case: the report then gives label-free statistics); "
                  "'none' ignores any labels it has."},
    )
    target_speaker_column: str | None = field(default=None, metadata={"help": "Speaker column of the target."})
    target_utt_id_column: str | None = field(default=None, metadata={"help": "Utterance-id column of the target."})
    target_label_map_name: str | None = field(default=None, metadata={"help": "Built-in label map of the target."})
    target_label_map: dict | str | None = field(
        default=None, metadata={"help": "Extra raw-label -> emotion entries of the target: {raw: emotion}."}
    )
    target_load_kwargs: dict | str | None = field(
        default=None, metadata={"help": "Extra load_dataset / make_synthetic_corpus kwargs of the target."}
    )
    scheme: str = field(
        default="categorical4",
        metadata={"help": f"Label scheme: {', '.join(SCHEMES)} (classes: "
                  + "; ".join(f"{k}: {'/'.join(v)}" for k, v in SCHEMES.items()) + ")."},
    )
    sampling_rate: int = field(default=16000, metadata={"help": "Audio rate of the model (SSL checkpoints: 16000)."})
    max_duration_s: float | None = field(
        default=None, metadata={"help": "Centre-crop longer utterances to this many seconds (all splits)."}
    )
    source_eval_fraction: float = field(
        default=0.2, metadata={"help": "Share of each source corpus held out (speaker-independent when possible)."}
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the source train/eval split (kept across runs)."})
    on_bad_audio: str = field(default="raise", metadata={"help": "'raise' or 'skip' unreadable audio files."})
    audio_cache_dir: str | None = field(
        default="auto",
        metadata={"help": "Folder for the Arrow files of decoded audio, normalised waveforms and cached features "
                  "(memory-mapped: memory stays flat in corpus size; a second run reuses them). 'auto': "
                  "$EMODNA_HF_CACHE or <HF datasets cache>/emodna_hf; 'none': keep everything in memory."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Worker processes for decoding, normalising and feature caching "
                                "(Dataset.map num_proc). Unset: one for decoding; for openSMILE features one per "
                                "core (at most 8)."})
    source_streaming: bool = field(
        default=False,
        metadata={"help": "Stream the source corpora (load_dataset(..., streaming=True)): read as training goes, "
                  "never materialised; needs max_steps. Their held-out part is evaluated on its first "
                  "max_eval_samples rows."})
    target_streaming: bool = field(
        default=False,
        metadata={"help": "Stream the target corpus: adaptation reads it as a stream (needs max_steps); the target "
                  "metrics are those of its first max_eval_samples rows."})
    max_eval_samples: int = field(
        default=2000, metadata={"help": "Streamed corpora: the rows of a stream that are evaluated (its first ones, "
                                "materialised once in the cache folder)."})
    max_samples_per_split: int | None = field(
        default=None,
        metadata={"help": "Debugging: keep at most this many random utterances of each split (the target's "
                  "train and eval rows stay the same utterances)."},
    )
    max_projection_samples: int = field(
        default=300, metadata={"help": "Utterances per corpus in the 2-D embedding projection plot."}
    )
    projection: str = field(default="pca", metadata={"help": "Embedding projection: 'pca' or 'tsne'."})
    allow_source_target_overlap: bool = field(
        default=False,
        metadata={"help": "Allow a target that is, contains or lies inside a source's folder or file (a deliberate "
                  "in-domain experiment: the target's labelled utterances are then also training data)."},
    )
    allow_paths_outside_corpus: bool = field(
        default=False,
        metadata={"help": "Let a manifest or metadata file list audio outside its own folder ('../x.wav', absolute "
                  "paths). Off by default: a downloaded corpus's metadata must not read arbitrary local files."},
    )
    allow_missing_source_classes: bool = field(
        default=False,
        metadata={"help": "Train even when the source corpora together lack some classes of the scheme (the model "
                  "then never learns them). Off by default: such a run stops and names the missing classes."},
    )
    speaker_normalization: bool = field(
        default=False,
        metadata={"help": "Standardise the cached features per speaker (speaker ids are metadata, not emotion "
                  "labels; results are not comparable with speaker-free ones). The saved model applies each "
                  "input's speaker statistics and refuses input without them (see emodna_hf.speakers)."},
    )

    def __post_init__(self):
        if self.scheme not in SCHEMES:
            raise ValueError(f"Unknown label scheme {self.scheme!r}; choose one of {', '.join(SCHEMES)}.")
        if self.on_bad_audio not in ("raise", "skip"):
            raise ValueError(f"on_bad_audio must be 'raise' or 'skip', got {self.on_bad_audio!r}")
        if self.projection not in ("pca", "tsne"):
            raise ValueError(f"projection must be 'pca' or 'tsne', got {self.projection!r}")
        if not 0.0 <= self.source_eval_fraction < 1.0:
            raise ValueError(f"source_eval_fraction must be in [0, 1), got {self.source_eval_fraction}")
        if self.max_eval_samples < 1:
            raise ValueError(f"max_eval_samples must be at least 1, got {self.max_eval_samples}")
        normalise_corpus_lists(self, "source", role="source")
        for name in ("target_split", "target_config_name", "target_speaker_column", "target_utt_id_column",
                     "target_label_map_name"):
            setattr(self, name, _none_if_auto(getattr(self, name)))
        # 'none' says "no labels" for the target (not "choose for me"): keep it as the loader's NO_LABELS.
        column = self.target_label_column
        if isinstance(column, str) and column.strip().lower() in ("", "auto"):
            self.target_label_column = None
        elif isinstance(column, str) and column.strip().lower() in ("none", "null"):
            self.target_label_column = NO_LABELS
        for name in ("target_label_map", "target_load_kwargs"):
            setattr(self, name, _parse_mapping(getattr(self, name), name))
        check_specs([*self.source_specs(), self.target_spec()])

    def check_sources(self) -> dict[str, str]:
        """Every corpus source is readable in principle (local paths exist) and the target shares no files with a
        source (unless `allow_source_target_overlap`): `{corpus: kind}`, else ValueError."""
        return check_sources(self.source_specs(), self.target_spec(), allow_overlap=self.allow_source_target_overlap)

    def source_specs(self) -> list[CorpusSpec]:
        return [dataclasses.replace(spec, streaming=self.source_streaming)
                for spec in corpus_specs(self, "source", self.on_bad_audio)]

    def target_spec(self) -> CorpusSpec:
        return CorpusSpec(
            name=self.target_name,
            source=self.target_dataset,
            split=self.target_split,
            config_name=self.target_config_name,
            audio_column=self.target_audio_column or "audio",
            label_column=self.target_label_column,
            speaker_column=self.target_speaker_column,
            utt_id_column=self.target_utt_id_column,
            label_map_name=self.target_label_map_name,
            label_map=self.target_label_map,
            on_bad_audio=self.on_bad_audio,
            load_kwargs=dict(self.target_load_kwargs or {}),
            streaming=self.target_streaming,
            allow_paths_outside_corpus=self.allow_paths_outside_corpus,
        )


@dataclass
class EvaluationArguments:
    """Evaluate a saved model (folder or Hub id) on one or more corpora (`corpus_*` lists as for sources)."""

    model_name_or_path: str = field(metadata={"help": "Output folder of a run, or a Hub model id."})
    corpus_name: list[str] = field(metadata={"help": "Names of the corpora to evaluate on."})
    corpus_dataset: list[str] = field(
        metadata={"help": "Hub dataset id, local folder/manifest or synthetic:<preset> of each corpus."}
    )
    output_dir: str = field(default="outputs/evaluation", metadata={"help": "Where to write metrics and plots."})
    corpus_split: list[str] = field(default_factory=lambda: ["train"], metadata={"help": "Split of each corpus."})
    corpus_config_name: list[str] | None = field(default=None, metadata={"help": "Hub config of each corpus."})
    corpus_audio_column: list[str] = field(default_factory=lambda: ["audio"], metadata={"help": "Audio column."})
    corpus_label_column: list[str] | None = field(default=None, metadata={"help": "Label column."})
    corpus_speaker_column: list[str] | None = field(default=None, metadata={"help": "Speaker column."})
    corpus_utt_id_column: list[str] | None = field(default=None, metadata={"help": "Utterance-id column."})
    corpus_label_map_name: list[str] | None = field(default=None, metadata={"help": "Built-in label map."})
    corpus_label_map: dict | str | None = field(default=None, metadata={"help": "{corpus: {raw: emotion}}."})
    corpus_load_kwargs: dict | str | None = field(default=None, metadata={"help": "{corpus: {...}} load kwargs."})
    max_duration_s: float | None = field(default=None, metadata={"help": "Centre-crop longer utterances."})
    on_bad_audio: str = field(default="raise", metadata={"help": "'raise' or 'skip' unreadable audio."})
    batch_size: int = field(default=16, metadata={"help": "Utterances per forward pass."})
    revision: str | None = field(default=None, metadata={"help": "Model revision (Hub)."})
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run the model code stored with the model instead of the installed emodna_hf code."},
    )
    max_projection_samples: int = field(default=300, metadata={"help": "Utterances per corpus in the projection."})
    allow_paths_outside_corpus: bool = field(
        default=False, metadata={"help": "Let a manifest or metadata file list audio outside its own folder (as for "
                                 "training)."})
    projection: str = field(default="pca", metadata={"help": "'pca' or 'tsne'."})
    use_cpu: bool = field(default=False, metadata={"help": "Evaluate on the CPU even if a GPU is available."})
    audio_cache_dir: str | None = field(
        default="auto", metadata={"help": "Folder for the Arrow files of decoded and normalised audio (as for "
                                  "training: memory flat in corpus size, reused by a second evaluation); 'none': "
                                  "in memory."})
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Worker processes for decoding and normalising (Dataset.map num_proc)."})

    def __post_init__(self):
        if self.on_bad_audio not in ("raise", "skip"):
            raise ValueError(f"on_bad_audio must be 'raise' or 'skip', got {self.on_bad_audio!r}")
        if self.projection not in ("pca", "tsne"):
            raise ValueError(f"projection must be 'pca' or 'tsne', got {self.projection!r}")
        normalise_corpus_lists(self, "corpus")
        check_specs(self.corpus_specs())

    def check_sources(self) -> dict[str, str]:
        """Every corpus is readable in principle (local paths exist): `{corpus: kind}`, else ValueError."""
        return check_sources(self.corpus_specs())

    def corpus_specs(self) -> list[CorpusSpec]:
        return corpus_specs(self, "corpus", self.on_bad_audio)
