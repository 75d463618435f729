"""Label harmonisation: built-in corpus maps, schemes, drops with counts, and errors naming unknown labels."""

from __future__ import annotations

import pytest
from datasets import ClassLabel, Dataset

from emodna_hf.data import (
    CANONICAL_EMOTIONS,
    CORPUS_LABEL_MAPS,
    PRESETS,
    SCHEMES,
    get_label_map,
    harmonize_labels,
    iemocap_label_map,
)

# Each corpus's label inventory as its documentation gives it, and the emotions they must become.
CORPUS_LABELS = {
    "emodb": {
        "W": "angry",
        "L": "boredom",
        "E": "disgust",
        "A": "fear",
        "F": "happy",
        "T": "sad",
        "N": "neutral",
    },
    "iemocap": {
        "ang": "angry",
        "hap": "happy",
        "exc": "happy",
        "sad": "sad",
        "neu": "neutral",
        "fru": "frustrated",
        "sur": "surprise",
        "fea": "fear",
        "dis": "disgust",
        "oth": "other",
        "xxx": "unknown",
    },
    "ravdess": {
        "01": "neutral",
        "02": "calm",
        "03": "happy",
        "04": "sad",
        "05": "angry",
        "06": "fear",
        "07": "disgust",
        "08": "surprise",
    },
    "crema-d": {
        "ANG": "angry",
        "DIS": "disgust",
        "FEA": "fear",
        "HAP": "happy",
        "NEU": "neutral",
        "SAD": "sad",
    },
    "enterface05": {
        "an": "angry",
        "di": "disgust",
        "fe": "fear",
        "ha": "happy",
        "sa": "sad",
        "su": "surprise",
    },
    "casia": {
        "angry": "angry",
        "fear": "fear",
        "happy": "happy",
        "neutral": "neutral",
        "sad": "sad",
        "surprise": "surprise",
    },
    "savee": {
        "a": "angry",
        "d": "disgust",
        "f": "fear",
        "h": "happy",
        "n": "neutral",
        "sa": "sad",
        "su": "surprise",
    },
    "tess": {
        "angry": "angry",
        "disgust": "disgust",
        "fear": "fear",
        "happy": "happy",
        "neutral": "neutral",
        "ps": "surprise",
        "pleasant_surprise": "surprise",
        "sad": "sad",
    },
    "emovo": {
        "rab": "angry",
        "dis": "disgust",
        "gio": "happy",
        "neu": "neutral",
        "pau": "fear",
        "sor": "surprise",
        "tri": "sad",
    },
    "msp-podcast": {
        "A": "angry",
        "C": "contempt",
        "D": "disgust",
        "F": "fear",
        "H": "happy",
        "N": "neutral",
        "O": "other",
        "S": "sad",
        "U": "surprise",
        "X": "unknown",
    },
}

# Binary arousal / valence per canonical emotion (docs/labels.md); None = not placed, dropped.
AROUSAL_VALENCE = {
    "angry": ("high", "negative"),
    "happy": ("high", "positive"),
    "neutral": ("low", "positive"),
    "sad": ("low", "negative"),
    "fear": ("high", "negative"),
    "disgust": ("low", "negative"),
    "boredom": ("low", "negative"),
    "surprise": ("high", "positive"),
    "calm": ("low", "positive"),
    "excited": ("high", "positive"),
    "frustrated": ("high", "negative"),
    "contempt": (None, "negative"),
    "other": (None, None),
    "unknown": (None, None),
}


def corpus(labels: list, column: str = "emotion") -> Dataset:
    return Dataset.from_dict({column: labels, "idx": list(range(len(labels)))})


def test_every_corpus_has_a_map_covering_its_label_set():
    assert set(CORPUS_LABELS) | {"synthetic"} == set(CORPUS_LABEL_MAPS)
    for name, expected in CORPUS_LABELS.items():
        mapping = {k.casefold(): v for k, v in get_label_map(name).items()}
        assert {raw: mapping[raw.casefold()] for raw in expected} == expected, name
    assert set(AROUSAL_VALENCE) == CANONICAL_EMOTIONS


def test_synthetic_presets_use_the_synthetic_map():
    for preset in PRESETS.values():
        mapping = get_label_map(preset.name)
        assert [mapping[raw] for raw in preset.labels] == ["angry", "happy", "neutral", "sad"]


def test_maps_have_no_case_collisions_and_only_canonical_targets():
    for name, mapping in CORPUS_LABEL_MAPS.items():
        folded: dict[str, str] = {}
        for raw, emotion in mapping.items():
            assert emotion in CANONICAL_EMOTIONS, (name, raw, emotion)
            assert folded.setdefault(raw.casefold(), emotion) == emotion, (name, raw)


@pytest.mark.parametrize(
    "alias", ["EmoDB", "emo-db", "Berlin", "CREMA-D", "cremad", "eNTERFACE'05", "MSP-Podcast"]
)
def test_corpus_name_aliases(alias):
    assert get_label_map(alias)


@pytest.mark.parametrize("name", sorted(CORPUS_LABELS))
def test_full_label_sets_harmonise_under_every_scheme(name):
    raws = list(CORPUS_LABELS[name])
    rows = raws * 2 + raws[:1]  # the first label appears three times
    for scheme in SCHEMES:
        dataset, report = harmonize_labels(corpus(rows), corpus=name, label_column="emotion", scheme=scheme)
        assert isinstance(dataset.features["labels"], ClassLabel)
        assert dataset.features["labels"].names == list(SCHEMES[scheme])
        expected = []
        for raw in rows:
            emotion = CORPUS_LABELS[name][raw]
            target = emotion if scheme == "categorical4" else AROUSAL_VALENCE[emotion][scheme == "valence"]
            expected.append(target if target in SCHEMES[scheme] else None)
        kept = [SCHEMES[scheme].index(t) for t in expected if t is not None]
        assert dataset["labels"][:] == kept
        assert report["n_in"] == len(rows) and report["n_out"] == len(kept)
        dropped = {raw: rows.count(raw) for raw, t in zip(rows, expected, strict=True) if t is None}
        assert report["dropped"] == dropped


def test_out_of_scheme_labels_are_dropped_with_counts():
    rows = ["W", "W", "A", "A", "A", "L", "N", "T", "F"]
    dataset, report = harmonize_labels(
        corpus(rows), corpus="emodb", label_column="emotion", scheme="categorical4"
    )
    assert report["dropped"] == {"A": 3, "L": 1}
    assert report["classes"] == {"angry": 2, "happy": 1, "neutral": 1, "sad": 1}
    assert dataset["idx"][:] == [0, 1, 6, 7, 8]  # the other columns stay aligned with their labels
    assert dataset["labels"][:] == [0, 0, 2, 3, 1]


def test_row_order_of_selected_or_shuffled_datasets_is_respected():
    rows = ["W", "A", "T", "F", "N", "L"]
    shuffled = corpus(rows).shuffle(seed=0).select([5, 0, 3, 1, 2, 4])
    dataset, _ = harmonize_labels(shuffled, corpus="emodb", label_column="emotion", scheme="categorical4")
    expected = {"W": 0, "F": 1, "N": 2, "T": 3}
    assert [expected[rows[i]] for i in dataset["idx"]] == dataset["labels"][:]


def test_unknown_labels_raise_naming_values_corpus_and_column():
    rows = ["ang", "hap", "joy", "Joy ", "bored", "sad"]
    with pytest.raises(ValueError) as info:
        harmonize_labels(corpus(rows, "cat"), corpus="iemocap", label_column="cat", scheme="categorical4")
    message = str(info.value)
    for part in ("'iemocap'", "'cat'", "'joy'", "'Joy '", "'bored'"):
        assert part in message
    assert "'ang'" not in message


def test_declared_droppable_raw_labels_and_strict_mode():
    rows = ["ang", "xyz", None, "fea"]
    dataset, report = harmonize_labels(
        corpus(rows),
        corpus="iemocap",
        label_column="emotion",
        scheme="categorical4",
        drop_unmapped=["xyz", None],
    )
    assert dataset["labels"][:] == [0]
    assert report["dropped"] == {"xyz": 1, "None": 1, "fea": 1}
    with pytest.raises(ValueError, match=r"\['fea'\] have no class in scheme 'categorical4'"):
        harmonize_labels(
            corpus(["ang", "fea"]),
            corpus="iemocap",
            label_column="emotion",
            scheme="categorical4",
            drop_unmapped=False,
        )


def test_label_map_overrides_extends_and_drops():
    rows = ["ang", "fru", "joy", "noise"]
    dataset, report = harmonize_labels(
        corpus(rows),
        corpus="iemocap",
        label_column="emotion",
        scheme="categorical4",
        label_map={"fru": "angry", "joy": "happy", "noise": None},
        drop_unmapped=False,
    )
    assert dataset["labels"][:] == [0, 0, 1]
    assert report["dropped"] == {"noise": 1}
    # A corpus without a built-in map works with a full label_map, and targets may be scheme classes directly.
    dataset, _ = harmonize_labels(
        corpus(["hi", "lo"]),
        corpus="my-corpus",
        label_column="emotion",
        scheme="arousal",
        label_map={"hi": "high", "lo": "low"},
    )
    assert dataset["labels"][:] == [1, 0]
    # Without a map, emotion names (any case, spaces) and common abbreviations need none; others are listed.
    dataset, _ = harmonize_labels(corpus([" Angry", "SAD", "neu", "happiness"]), corpus="my-corpus",
                                  label_column="emotion", scheme="categorical4")
    assert dataset["labels"][:] == [0, 3, 2, 1]
    with pytest.raises(ValueError, match=r"unknown raw label\(s\) 'x' \(2 rows\), 'y' \(1 rows\).*label_map"):
        harmonize_labels(corpus(["x", "y", "x"]), corpus="my-corpus", label_column="emotion", scheme="arousal")
    with pytest.raises(ValueError, match="'elated' is neither"):
        harmonize_labels(
            corpus(["x"]),
            corpus="my-corpus",
            label_column="emotion",
            scheme="arousal",
            label_map={"x": "elated"},
        )


def test_iemocap_excited_merge_is_optional():
    rows = ["hap", "exc", "exc"]
    merged, _ = harmonize_labels(
        corpus(rows), corpus="iemocap", label_column="emotion", scheme="categorical4"
    )
    assert merged["labels"][:] == [1, 1, 1]
    separate, report = harmonize_labels(
        corpus(rows),
        corpus="iemocap",
        label_column="emotion",
        scheme="categorical4",
        label_map=iemocap_label_map(merge_excited=False),
    )
    assert separate["labels"][:] == [1] and report["dropped"] == {"exc": 2}


def test_int_codes_case_and_existing_labels_column():
    dataset = Dataset.from_dict({"labels": [1, 5, 8, 2], "emotion": ["x"] * 4})
    out, report = harmonize_labels(dataset, corpus="RAVDESS", label_column="labels", scheme="valence")
    assert out["labels"][:] == [
        1,
        0,
        1,
        1,
    ]  # neutral positive, angry negative, surprise positive, calm positive
    assert out.column_names == ["emotion", "labels"]
    upper, _ = harmonize_labels(
        corpus(["ANG", "Neu"]), corpus="iemocap", label_column="emotion", scheme="arousal"
    )
    assert upper["labels"][:] == [1, 0]
    with pytest.raises(ValueError, match="Unknown label scheme"):
        harmonize_labels(corpus(["ang"]), corpus="iemocap", label_column="emotion", scheme="dimensional")
    with pytest.raises(ValueError, match="no label column 'emo'"):
        harmonize_labels(corpus(["ang"]), corpus="iemocap", label_column="emo", scheme="arousal")
