"""build_uda_data: speaker-independent source splits, the target once (labels stop at the trainer), corpus ids."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import ClassLabel, Dataset

from emodna_hf.data import CorpusSpec, UDADataCollator, build_uda_data, split_source

SMALL = {"n_per_class_per_speaker": 2}


@pytest.fixture(scope="module")
def uda():
    sources = [
        CorpusSpec("synth-a", "synthetic:synth-a", load_kwargs=SMALL),
        CorpusSpec("synth-c", "synthetic:synth-c", load_kwargs=SMALL),
    ]
    target = CorpusSpec("synth-b", "synthetic:synth-b", load_kwargs=SMALL)
    return build_uda_data(sources, target, max_duration_s=1.5, source_eval_fraction=0.2, seed=0)


def test_source_split_is_speaker_independent_and_covers_every_source(uda):
    train_speakers, eval_speakers = set(uda.source_train["speaker"]), set(uda.source_eval["speaker"])
    assert train_speakers and eval_speakers and not train_speakers & eval_speakers
    for corpus_id, name in enumerate(uda.corpus_names[:2]):
        train_ids = [c for c in uda.source_train["corpus_id"] if c == corpus_id]
        eval_ids = [c for c in uda.source_eval["corpus_id"] if c == corpus_id]
        assert train_ids and eval_ids, name
        assert 0.1 <= len(eval_ids) / (len(eval_ids) + len(train_ids)) <= 0.3
    assert set(uda.source_train["corpus"]) == {"synth-a", "synth-c"}
    assert len(uda.source_train) + len(uda.source_eval) == 10 * 8 + 10 * 8


def test_the_target_is_loaded_once_and_its_labels_stop_at_the_trainers_gate(uda):
    from emodna_hf.trainer import UDATrainDataset

    assert uda.target_train is uda.target_eval is uda.target  # one dataset, named by role
    assert len(uda.target) == 8 * 4 * 2 and set(uda.target["corpus_id"]) == {2}
    assert uda.target_labelled  # labelled for scoring ...
    assert uda.corpus_names == ["synth-a", "synth-c", "synth-b"]
    assert uda.label_names == ["angry", "happy", "neutral", "sad"]
    for split in (uda.source_train, uda.source_eval, uda.target):
        assert split.features["labels"] == ClassLabel(names=uda.label_names)
    training = UDATrainDataset(uda.source_train, uda.target)  # ... and never read in training: the one gate
    assert "labels" not in training.target.column_names and "labels" in training.source.column_names
    assert all("labels" not in training[len(training.source) + i] for i in range(3))
    # The trainer's collator turns a mixed batch into labelled source rows and -100 target rows.
    batch = UDADataCollator()([training[0], training[len(training.source)]])
    assert batch["labels"][1] == -100 and batch["corpus_ids"].tolist() == [
        uda.source_train[0]["corpus_id"],
        2,
    ]
    assert batch["input_values"].shape[1] <= 24000


def test_unknown_speakers_get_a_stratified_random_split():
    labels = [0, 1, 2, 3] * 10
    dataset = Dataset.from_dict({"labels": labels, "speaker": ["x:unknown"] * 40, "corpus": ["x"] * 40})
    train, held, report = split_source(dataset, 0.25, seed=1)
    assert len(held) == 10 and sorted(train + held) == list(range(40))
    assert set(np.bincount(np.asarray(labels)[held], minlength=4).tolist()) <= {
        2,
        3,
    }  # 10 rows over 4 classes
    assert report["method"].startswith("stratified random")


def test_known_and_unknown_speakers_mixed():
    speakers = [f"x:s{i % 5}" for i in range(40)] + ["x:unknown"] * 20
    labels = [i % 4 for i in range(60)]
    dataset = Dataset.from_dict({"labels": labels, "speaker": speakers, "corpus": ["x"] * 60})
    train, held, report = split_source(dataset, 0.2, seed=0)
    known_train = {speakers[i] for i in train} - {"x:unknown"}
    known_held = {speakers[i] for i in held} - {"x:unknown"}
    assert known_held and not known_train & known_held
    assert "speaker-independent" in report["method"] and "unknown speakers" in report["method"]
    assert split_source(dataset, 0.0)[1] == []


def test_invalid_setups_raise():
    one = Dataset.from_dict({"labels": [0, 1], "speaker": ["x:s1"] * 2, "corpus": ["x"] * 2})
    with pytest.raises(ValueError, match="single known speaker"):
        split_source(one, 0.2)
    spec = CorpusSpec("synth-a", "synthetic:synth-a")
    with pytest.raises(ValueError, match="unique"):
        build_uda_data([spec], spec)
    with pytest.raises(ValueError, match="source_eval_fraction"):
        build_uda_data([spec], CorpusSpec("b", "synthetic:synth-b"), source_eval_fraction=1.0)


def _corpus(labels: list[str], speakers: int = 4) -> Dataset:
    rng = np.random.default_rng(0)
    return Dataset.from_dict({
        "audio": [{"array": rng.normal(0, 0.1, 3200).astype(np.float32), "sampling_rate": 16000} for _ in labels],
        "emotion": labels,
        "speaker": [f"s{i % speakers}" for i in range(len(labels))],
    })


def test_sources_lacking_classes_are_refused_naming_them_unless_allowed(caplog):
    only_angry = CorpusSpec("angry-only", _corpus(["angry"] * 12), label_map_name="casia")
    target = CorpusSpec("t", _corpus(["angry", "sad"] * 4), label_column="none")
    with pytest.raises(ValueError, match=r"no utterance of class\(es\) 'happy', 'neutral', 'sad'.*"
                                         r"--allow_missing_source_classes"):
        build_uda_data([only_angry], target)
    with caplog.at_level("WARNING"):
        data = build_uda_data([only_angry], target, allow_missing_source_classes=True)
    assert data.reports["source_classes"]["missing"] == ["happy", "neutral", "sad"]
    assert "will never predict them" in caplog.text
    # Classes found in another source are not missing: the check is on the sources together.
    only_others = CorpusSpec("others", _corpus(["happy", "neutral", "sad"] * 12), label_map_name="casia")
    data = build_uda_data([only_angry, only_others], target)
    assert data.reports["source_classes"]["missing"] == []


def test_source_classes_with_a_handful_of_utterances_are_warned_about(caplog):
    labels = ["angry"] * 20 + ["happy"] * 20 + ["neutral"] * 20 + ["sad"] * 3
    with caplog.at_level("WARNING"):
        data = build_uda_data([CorpusSpec("few", _corpus(labels), label_map_name="casia")],
                              CorpusSpec("t", _corpus(["angry"] * 4), label_column="none"))
    assert data.reports["source_classes"]["few"] == {"sad": 3}
    assert "sad (3)" in caplog.text and "angry" not in caplog.text.split("handful")[1]
