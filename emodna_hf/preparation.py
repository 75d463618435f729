"""What training and evaluation feed the model: corpora loaded and split, waveforms normalised as the saved
feature extractor does at inference, backbone features cached (and optionally standardised per speaker)."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, IterableDataset
from datasets.arrow_writer import ArrowWriter

from .arguments import DataArguments
from .data import UDAData, build_uda_data
from .data.storage import fingerprint, map_to_disk, resolve_cache_dir
from .data.streaming import is_streamed
from .modeling import EmoDnaForAudioClassification
from .modeling.backbones_emodna import BACKBONES, front_end

logger = logging.getLogger(__name__)


def load_data(data_args: DataArguments) -> UDAData:
    """Load and split the corpora of `data_args` (raw waveforms at `sampling_rate`; see `build_uda_data`).

    The sources are checked first (`DataArguments.check_sources`: local paths exist, the target shares no audio
    with a source), before anything is decoded: the one run-time check of every path that loads corpora."""
    data_args.check_sources()
    data = build_uda_data(
        data_args.source_specs(),
        data_args.target_spec(),
        scheme=data_args.scheme,
        sampling_rate=data_args.sampling_rate,
        max_duration_s=data_args.max_duration_s,
        source_eval_fraction=data_args.source_eval_fraction,
        seed=data_args.split_seed,
        cache_dir=data_args.audio_cache_dir,
        num_proc=data_args.preprocessing_num_workers,
        allow_missing_source_classes=data_args.allow_missing_source_classes,
    )
    cap = data_args.max_samples_per_split
    if cap:
        rng = np.random.default_rng(data_args.split_seed)

        def subset(dataset: Dataset | IterableDataset) -> tuple[Dataset | IterableDataset, np.ndarray | None]:
            if is_streamed(dataset):  # a stream has no length to draw from: its first rows
                return dataset.take(cap), None
            index = np.sort(rng.permutation(len(dataset))[:cap])
            return dataset.select(index.tolist()), index

        source_train, _ = subset(data.source_train)
        source_eval, _ = subset(data.source_eval) if is_streamed(data.source_eval) or len(data.source_eval) \
            else (data.source_eval, None)
        target, _ = subset(data.target)
        data = dataclasses.replace(data, source_train=source_train, source_eval=source_eval, target=target)
    return data


def evaluation_rows(dataset: Dataset | IterableDataset, max_rows: int, cache_dir: Path | None,
                    name: str) -> Dataset:
    """What evaluation reads of a set: a map-style dataset as it is; of a stream, its first `max_rows` rows.

    Evaluation needs a length and is repeated (at every `eval_steps`, then for the final metrics): the head of the
    stream is read once (decoded, normalised and, where cached, through the backbone front end, as the stream
    computes them) and written to an Arrow file in a temporary folder of `cache_dir`, removed when the process
    exits (in memory without a cache folder: keep `max_rows` small then).
    """
    if not is_streamed(dataset):
        return dataset
    head = dataset.take(max_rows)
    if cache_dir is None:
        return Dataset.from_list(list(head), features=dataset.features)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=f"streamed-{name}-", dir=cache_dir)
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "rows.arrow")
    with ArrowWriter(features=dataset.features, path=path) as writer:
        for row in head:
            writer.write(row)
        writer.finalize()
    return Dataset.from_file(path)


def _normalize_batch(batch: dict[str, Any], feature_extractor) -> dict[str, Any]:
    values = feature_extractor(list(batch["input_values"]), sampling_rate=feature_extractor.sampling_rate)
    return {"input_values": [np.asarray(v, dtype=np.float32) for v in values["input_values"]]}


def normalize_waveforms(dataset: Dataset, feature_extractor, desc: str, *,
                        cache_dir: str | os.PathLike | None = None, num_proc: int | None = None) -> Dataset:
    """Apply the saved feature extractor's waveform normalisation, so training sees what the pipeline feeds.

    With a `cache_dir` the normalised waveforms are written there in Arrow files, shard by shard
    (`emodna_hf.data.storage.map_to_disk`), named by the dataset's fingerprint and the feature extractor's
    settings; `num_proc` worker processes share each shard.
    """
    if not getattr(feature_extractor, "do_normalize", False):
        return dataset
    if is_streamed(dataset):  # normalised as it is read
        return dataset.map(_normalize_batch, batched=True, batch_size=64,
                           fn_kwargs={"feature_extractor": feature_extractor}, features=dataset.features)
    if not len(dataset):
        return dataset
    folder = resolve_cache_dir(cache_dir) if cache_dir is not None else None
    return map_to_disk(
        dataset.with_format("numpy", columns=["input_values"], output_all_columns=True),
        _normalize_batch,
        cache_dir=folder,
        name="normalised",
        key=fingerprint(dataset._fingerprint, feature_extractor.to_json_string()) if folder is not None else "",
        desc=desc,
        num_proc=num_proc,
        batched=True,
        batch_size=64,
        fn_kwargs={"feature_extractor": feature_extractor},
    ).with_format(None)


def prepare_inputs(data: UDAData, model: EmoDnaForAudioClassification, feature_extractor,
                   cache_features: bool | None = None, batch_size: int = 16,
                   speaker_normalization: bool | None = None) -> tuple[UDAData, bool]:
    """Normalised waveforms for every split, then (when wanted) cached backbone features.

    `cache_features=None` caches when the cached part is parameter-free or frozen (the tcn front end, a frozen
    SSL backbone): training then skips it every epoch and gives the same logits. The target (trained and
    evaluated on) is processed once. With speaker normalisation (`model.config.speaker_normalization`, which
    `speaker_normalization` may only repeat) every row also gets its speaker's statistics of the cached features
    (`data.speakers.add_speaker_statistics`), which the model applies in `forward`. Returns the new data and
    whether features were cached.
    """
    configured = getattr(model.config, "speaker_normalization", False)
    if speaker_normalization is not None and bool(speaker_normalization) != configured:
        raise ValueError(f"speaker_normalization={speaker_normalization} but the model's config says {configured}: "
                         "set config.speaker_normalization (the model applies the statistics).")
    splits = {"source (train)": data.source_train, "source (eval)": data.source_eval, "target": data.target}
    prepared = {name: prepare_dataset(ds, model, feature_extractor, name, cache_features=cache_features,
                                      batch_size=batch_size, cache_dir=data.cache_dir, num_proc=data.num_proc)
                for name, ds in splits.items()}
    source_train, source_eval, target = prepared.values()
    return (dataclasses.replace(data, source_train=source_train[0], source_eval=source_eval[0], target=target[0]),
            target[1])


def prepare_dataset(dataset: Dataset | IterableDataset, model: EmoDnaForAudioClassification, feature_extractor,
                    name: str, *, cache_features: bool | None = None, batch_size: int = 16,
                    cache_dir: str | os.PathLike | None = None,
                    num_proc: int | None = None) -> tuple[Dataset | IterableDataset, bool]:
    """One set as the model reads it, in training and in `evaluate_model` alike: waveforms normalised as the saved
    feature extractor does, then (when wanted, and always for a speaker-normalised model) cached backbone
    features and each row's speaker statistics. Returns the set and whether its features were cached.

    A speaker-normalised model needs speaker ids: a set whose speakers are all unknown is refused (it would be
    standardised as one group, i.e. per corpus, without saying so); unknown rows among known ones form one group
    per corpus, as in training, with a warning.
    """
    from .data import add_speaker_statistics
    from .data import cache_features as compute_cached_features

    # Every pass writes Arrow files to the cache folder (memory stays flat in corpus size; a second run reuses
    # them), with `num_proc` worker processes.
    disk = {"cache_dir": cache_dir, "num_proc": num_proc}
    dataset = normalize_waveforms(dataset, feature_extractor, f"Normalising {name}", **disk)
    config = model.config
    by_speaker = getattr(config, "speaker_normalization", False)  # (a model saved before the field: False)
    cacheable = front_end(config.backbone_type).can_cache(config)
    if cache_features and not cacheable:
        raise ValueError(f"cache_features needs a frozen backbone (freeze_backbone=True) for the "
                         f"{config.backbone_type!r} backbone, or a front end without trainable parameters "
                         f"({', '.join(repr(n) for n, f in BACKBONES.items() if f.cache == 'always')}).")
    if by_speaker and (not cacheable or cache_features is False):
        raise ValueError("speaker_normalization works on cached features: use the tcn or opensmile backbone, "
                         "or a frozen SSL backbone, with cache_features.")
    cached = cacheable if cache_features is None else bool(cache_features)
    if cached and (is_streamed(dataset) or len(dataset)):
        dataset = compute_cached_features(dataset, model, batch_size=batch_size, **disk)
    if by_speaker:
        if is_streamed(dataset):
            raise ValueError("speaker_normalization needs every utterance of a speaker at once: not with a streamed "
                             "corpus.")
        if len(dataset):
            check_speakers(dataset, name)
            dataset = add_speaker_statistics(dataset, **disk)
    return dataset, cached


def check_speakers(dataset: Dataset, name: str) -> None:
    """Refuse a set without any speaker id for a speaker-normalised model; warn about rows of unknown speakers."""
    from .data.labels import column_values

    speakers = column_values(dataset, "speaker")
    unknown = sum(str(s).endswith(":unknown") for s in speakers)
    if unknown == len(speakers):
        raise ValueError(
            f"The {name} set ({len(speakers)} utterances) has no speaker ids, and a speaker-normalised model "
            "standardises each speaker's features with that speaker's statistics: name the corpus's speaker column "
            "(--target_speaker_column / --source_speaker_column in training, --corpus_speaker_column in "
            "recipes/evaluate_model.py), or use a model trained speaker-free."
        )
    if unknown:
        logger.warning("%d of %d utterances of the %s set have no speaker id: they are standardised together, as "
                       "one group.", unknown, len(speakers), name)
