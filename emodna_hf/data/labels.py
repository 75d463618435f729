"""Label harmonisation: each corpus's raw labels -> canonical emotions -> the classes of a shared scheme.

Two steps, so that a corpus map is written once and serves every scheme:

1. a per-corpus map from raw label strings/codes to canonical emotion names (`CORPUS_LABEL_MAPS`);
2. a per-scheme map from canonical emotions to class names (`SCHEME_MAPS`): the 4-class protocol keeps
   angry/happy/neutral/sad; binary arousal and valence follow the cross-corpus table of Schuller et al.
   (2010).

See docs/labels.md for the tables, their sources and the choices made.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

from datasets import ClassLabel, Dataset

from .storage import read_column

SCHEMES: dict[str, tuple[str, ...]] = {
    "categorical4": ("angry", "happy", "neutral", "sad"),
    "arousal": ("low", "high"),
    "valence": ("negative", "positive"),
}

# "other" and "unknown" (no annotator agreement, IEMOCAP xxx, MSP-Podcast X) are known labels that no scheme
# places: they are dropped with a count rather than raising.
CANONICAL_EMOTIONS = frozenset(
    "angry happy neutral sad fear disgust surprise boredom calm contempt excited frustrated other "
    "unknown".split()
)

# Schuller et al. (2010), the cross-corpus mapping for EmoDB, eNTERFACE, ...; for calm, excited, frustrated
# and contempt see docs/labels.md. Emotions absent from a table (contempt for arousal, other/unknown) have no
# class there.
_HIGH_AROUSAL = "angry happy fear surprise excited frustrated"
_LOW_AROUSAL = "neutral sad boredom disgust calm"
_POSITIVE = "happy neutral surprise calm excited"
_NEGATIVE = "angry sad fear disgust boredom frustrated contempt"
_AROUSAL = dict.fromkeys(_HIGH_AROUSAL.split(), "high") | dict.fromkeys(_LOW_AROUSAL.split(), "low")
_VALENCE = dict.fromkeys(_POSITIVE.split(), "positive") | dict.fromkeys(_NEGATIVE.split(), "negative")
SCHEME_MAPS: dict[str, dict[str, str]] = {
    "categorical4": {e: e for e in SCHEMES["categorical4"]},
    "arousal": _AROUSAL,
    "valence": _VALENCE,
}


def _codes(pairs: str) -> dict[str, str]:
    """'A=angry B=sad' -> {'A': 'angry', 'B': 'sad'}: keeps the long tables below readable."""
    return dict(item.split("=") for item in pairs.split())


def iemocap_label_map(merge_excited: bool = True) -> dict[str, str]:
    """IEMOCAP's categorical labels; `merge_excited` folds excitement into happiness (the usual 4 classes)."""
    mapping = _codes(
        "ang=angry hap=happy exc=excited sad=sad neu=neutral fru=frustrated sur=surprise fea=fear "
        "dis=disgust oth=other xxx=unknown anger=angry happiness=happy excited=excited excitement=excited "
        "sadness=sad frustration=frustrated frustrated=frustrated surprised=surprise fearful=fear "
        "disgusted=disgust"
    )
    if merge_excited:
        mapping.update(exc="happy", excited="happy", excitement="happy")
    return mapping


_NAMES = _codes("angry=angry happy=happy neutral=neutral sad=sad fear=fear disgust=disgust surprise=surprise")

CORPUS_LABEL_MAPS: dict[str, dict[str, str]] = {
    # Burkhardt et al. (2005): the 6th character of the file name (German initials), and the English names.
    "emodb": _codes(
        "W=angry L=boredom E=disgust A=fear F=happy T=sad N=neutral anger=angry boredom=boredom "
        "disgust=disgust fear=fear anxiety=fear happiness=happy sadness=sad neutral=neutral "
        "ärger=angry wut=angry langeweile=boredom ekel=disgust angst=fear freude=happy trauer=sad"
    ),
    "iemocap": iemocap_label_map(),
    # Livingstone & Russo (2018): the 3rd field of the file name, and the names of its documentation.
    "ravdess": _codes(
        "01=neutral 02=calm 03=happy 04=sad 05=angry 06=fear 07=disgust 08=surprise "
        "1=neutral 2=calm 3=happy 4=sad 5=angry 6=fear 7=disgust 8=surprise "
        "neutral=neutral calm=calm happy=happy sad=sad angry=angry fearful=fear disgust=disgust "
        "surprised=surprise"
    ),
    # Cao et al. (2014): the 3rd field of the file name.
    "crema-d": _codes(
        "ANG=angry DIS=disgust FEA=fear HAP=happy NEU=neutral SAD=sad anger=angry fearful=fear "
        "happiness=happy"
    )
    | _NAMES,
    # Martin et al. (2006): file-name codes and folder names.
    "enterface05": _codes(
        "an=angry di=disgust fe=fear ha=happy sa=sad su=surprise anger=angry happiness=happy sadness=sad"
    )
    | _NAMES,
    # CASIA (Tao et al. 2008) folder names.
    "casia": _NAMES,
    # Haq & Jackson (2009): file-name prefixes.
    "savee": _codes("a=angry d=disgust f=fear h=happy n=neutral sa=sad su=surprise"),
    # Dupuis & Pichora-Fuller (2010): the last word of the file name / folder name.
    "tess": _codes("ps=surprise pleasant_surprise=surprise pleasant_surprised=surprise") | _NAMES,
    # Costantini et al. (2014): file-name prefixes and the Italian names.
    "emovo": _codes(
        "rab=angry dis=disgust gio=happy neu=neutral pau=fear sor=surprise tri=sad rabbia=angry "
        "disgusto=disgust "
        "gioia=happy neutro=neutral paura=fear sorpresa=surprise tristezza=sad"
    ),
    # Lotfian & Busso (2019): EmoClass codes of the consensus label (X = no agreement).
    "msp-podcast": _codes(
        "A=angry C=contempt D=disgust F=fear H=happy N=neutral O=other S=sad U=surprise X=unknown"
    )
    | _NAMES
    | _codes("contempt=contempt other=other"),
    # The built-in generated presets (emodna_hf.data.synthetic: source_filter, espeak, flite, festvox): names, CREMA-D-style
    # and MSP-style codes, and those of the flite family: noun names, "joy", EMOVO's Italian names, EmoDB's letters.
    "synthetic": _codes(
        "ANG=angry HAP=happy NEU=neutral SAD=sad A=angry H=happy N=neutral S=sad anger=angry happiness=happy "
        "sadness=sad joy=happy rabbia=angry gioia=happy neutro=neutral tristezza=sad W=angry F=happy T=sad "
        # the festvox family: Czech, Finnish, Catalan and Russian names (ASCII)
        "hnev=angry radost=happy neutralni=neutral smutek=sad viha=angry ilo=happy neutraali=neutral suru=sad "
        "rabia=angry alegria=happy neutre=neutral tristesa=sad gnev=angry neitral=neutral grust=sad"
    )
    | _NAMES,
}

# What the model card says about each corpus of CORPUS_LABEL_MAPS (same keys): language and recording style.
CORPUS_FACTS: dict[str, dict[str, str]] = {
    "emodb": {"language": "de", "style": "acted", "title": "EmoDB (Berlin Database of Emotional Speech)"},
    "iemocap": {"language": "en", "style": "acted dyadic (scripted and improvised)", "title": "IEMOCAP"},
    "ravdess": {"language": "en", "style": "acted", "title": "RAVDESS"},
    "crema-d": {"language": "en", "style": "acted", "title": "CREMA-D"},
    "enterface05": {"language": "en", "style": "induced (read reactions)", "title": "eNTERFACE'05"},
    "casia": {"language": "zh", "style": "acted", "title": "CASIA Chinese emotional speech"},
    "savee": {"language": "en", "style": "acted", "title": "SAVEE"},
    "tess": {"language": "en", "style": "acted", "title": "TESS"},
    "emovo": {"language": "it", "style": "acted", "title": "EMOVO"},
    "msp-podcast": {"language": "en", "style": "natural (podcasts)", "title": "MSP-Podcast"},
    "synthetic": {"language": "", "style": "synthetic (generated by emodna_hf)", "title": "built-in synthetic"},
}
# Other names of known corpora (normalised: lowercase alphanumerics).
_ALIASES = {"berlin": "emodb", "enterface": "enterface05"}
# A corpus without a built-in map: its labels may be emotion names (any case, surrounding spaces) or common
# abbreviations; anything else is an error that lists the unknown labels (a label_map maps them).
GENERIC_LABEL_MAP: dict[str, str] = _NAMES | _codes(
    "anger=angry happiness=happy joy=happy sadness=sad fearful=fear disgusted=disgust surprised=surprise "
    "ang=angry hap=happy neu=neutral fea=fear dis=disgust sur=surprise"
)


def _normalise_name(corpus: str) -> str:
    return re.sub(r"[^0-9a-z]", "", corpus.casefold())


def known_corpus(corpus: str) -> str | None:
    """The key of a known corpus (of `CORPUS_LABEL_MAPS` and `CORPUS_FACTS`) named `corpus`, else None.

    Name matching ignores case and punctuation ("CREMA-D" = "cremad"), knows a few other names ("berlin" =
    EmoDB), and 'synth-a', 'synth-en', ... are the 'synthetic' corpus.
    """
    key = _normalise_name(corpus)
    key = "synthetic" if key.startswith("synth") else _ALIASES.get(key, key)
    return next((name for name in CORPUS_LABEL_MAPS if _normalise_name(name) == key), None)


def corpus_facts(corpus: str) -> dict[str, str]:
    """Language / recording style / title of a known corpus, else empty strings."""
    key = known_corpus(corpus)
    return dict(CORPUS_FACTS[key]) if key else {"language": "", "style": "", "title": ""}


def get_label_map(corpus: str) -> dict[str, str]:
    """The built-in raw-label -> canonical-emotion map of a corpus (named as `known_corpus` matches)."""
    key = known_corpus(corpus)
    if key is not None:
        return dict(CORPUS_LABEL_MAPS[key])
    raise KeyError(
        f"No built-in label map for corpus {corpus!r}; known: {sorted(CORPUS_LABEL_MAPS)}. Pass label_map=..."
    )


def column_values(dataset: Dataset, name: str) -> list:
    """One column as a list in the dataset's row order (`Dataset.data` would ignore a select/shuffle), without
    reading or decoding any other column; a memory-mapped dataset shard by shard (`storage.read_column`)."""
    return read_column(dataset, name)


def _key(raw: object) -> str | None:
    """Lookup key of a raw label: case- and whitespace-insensitive; ints become strings; missing is None."""
    if raw is None or (isinstance(raw, float) and raw != raw):  # NaN from pandas-made CSVs
        return None
    return str(raw).strip().casefold()


def harmonize_labels(
    dataset: Dataset,
    *,
    corpus: str,
    label_column: str,
    scheme: str,
    label_map: Mapping[str, str | None] | None = None,
    drop_unmapped: bool | Iterable[str | None] = True,
) -> tuple[Dataset, dict]:
    """Give `dataset` an int `labels` column (a `ClassLabel` with the scheme's names) from its raw labels.

    Args:
        corpus: the corpus name; selects the built-in map (see `get_label_map`) and is named in errors.
        label_column: the column with the raw labels (strings or ints, matched case-insensitively).
        scheme: one of `SCHEMES`.
        label_map: raw label -> canonical emotion (or directly a class name of `scheme`, or None = drop). Its
            entries extend and override the built-in map; for a corpus without one it is the whole map.
        drop_unmapped: what to do with rows that get no class. Known emotions that the scheme cannot represent
            (fear under categorical4, other/unknown under every scheme) are dropped and counted when True (the
            default) and raise when False. An iterable additionally declares raw labels (None for missing
            values) that may be dropped although no map knows them. Unknown raw labels always raise otherwise.

    Returns:
        The filtered dataset with `labels` (an existing `labels` column is replaced) and a report:
        `{"corpus", "scheme", "label_column", "n_in", "n_out", "dropped": {raw: count},
        "classes": {class: count}, "mapping": {raw: class or None}}`.

    Raises:
        ValueError: naming the corpus, the column and every raw value that is neither mapped nor droppable.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown label scheme {scheme!r}; choose one of {sorted(SCHEMES)}")
    if label_column not in dataset.column_names:
        raise ValueError(
            f"Corpus {corpus!r} has no label column {label_column!r}; columns: {dataset.column_names}"
        )
    names = SCHEMES[scheme]
    mapping: dict[str | None, str | None] = {}
    try:
        mapping.update({_key(k): v for k, v in get_label_map(corpus).items()})
    except KeyError:  # no built-in map: emotion names and common abbreviations, extended by label_map
        mapping.update({_key(k): v for k, v in GENERIC_LABEL_MAP.items()})
    mapping.update({_key(k): v for k, v in (label_map or {}).items()})
    declared = set() if isinstance(drop_unmapped, bool) else {_key(v) for v in drop_unmapped}

    raw_values = column_values(dataset, label_column)
    counts = Counter(raw_values)
    unknown = sorted((r for r in counts if _key(r) not in mapping and _key(r) not in declared), key=repr)
    if unknown:
        listed = ", ".join(f"{raw!r} ({counts[raw]} rows)" for raw in unknown)
        raise ValueError(
            f"Corpus {corpus!r}, column {label_column!r}: unknown raw label(s) {listed}. Map them with a label_map "
            "(raw label -> emotion; None drops a label; recipes: --source_label_map '{\"corpus\": {\"raw\": "
            "\"angry\"}}' or --target_label_map '{\"raw\": \"angry\"}'), name a built-in map with label_map_name, "
            "or list them in drop_unmapped."
        )
    resolved = {raw: _to_class(mapping.get(_key(raw)), scheme, corpus) for raw in counts}
    # Rows mapped to None on purpose (label_map value None) or declared droppable never raise.
    explicit_drop = {k for k, v in mapping.items() if v is None} | declared
    unplaced = sorted(
        (r for r, c in resolved.items() if c is None and _key(r) not in explicit_drop), key=repr
    )
    if unplaced and drop_unmapped is False:
        raise ValueError(
            f"Corpus {corpus!r}, column {label_column!r}: label(s) {unplaced} have no class in scheme "
            f"{scheme!r} ({sum(counts[r] for r in unplaced)} rows) and drop_unmapped=False."
        )
    class_id = {name: i for i, name in enumerate(names)}
    keep, labels = [], []
    for i, raw in enumerate(raw_values):
        if resolved[raw] is not None:
            keep.append(i)
            labels.append(class_id[resolved[raw]])
    if len(keep) < len(raw_values):
        dataset = dataset.select(keep)
    if "labels" in dataset.column_names:
        dataset = dataset.remove_columns("labels")
    dataset = dataset.add_column("labels", labels, feature=ClassLabel(names=list(names)))
    report = {
        "corpus": corpus,
        "scheme": scheme,
        "label_column": label_column,
        "n_in": len(raw_values),
        "n_out": len(keep),
        "dropped": {str(r): counts[r] for r, c in resolved.items() if c is None},
        "classes": {name: labels.count(i) for name, i in class_id.items()},
        "mapping": {str(r): c for r, c in resolved.items()},
    }
    return dataset, report


def _to_class(target: str | None, scheme: str, corpus: str) -> str | None:
    """A map target (canonical emotion, class name or None) -> the scheme's class name, or None to drop."""
    if target is None or target in SCHEMES[scheme]:
        return target
    if target not in CANONICAL_EMOTIONS:
        raise ValueError(
            f"Corpus {corpus!r}: label map target {target!r} is neither a canonical emotion "
            f"({sorted(CANONICAL_EMOTIONS)}) nor a class of scheme {scheme!r} {list(SCHEMES[scheme])}."
        )
    return SCHEME_MAPS[scheme].get(target)
