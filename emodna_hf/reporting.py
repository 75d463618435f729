"""What a run leaves in its output folder besides the model: `metrics.json`, plots and the `README.md` model card.

* :func:`save_confusion_matrices` — one panel per evaluated set (rows: true class, columns: predicted class),
  coloured by row-normalised recall and annotated with counts.
* :func:`save_embedding_projection` — a 2-D projection (PCA, or t-SNE) of the emotion-relevant and the
  corpus-specific embeddings, each coloured by emotion and by corpus: decoupling and alignment made visible.
  :func:`embedding_silhouettes` puts numbers on the same picture.
* :func:`make_model_card` — the Hub model card, rendered from `emodna_hf/templates/model_card.md` (package data) with
  `huggingface_hub.ModelCard.from_template` (YAML metadata with a `model-index` of the target-corpus results).

matplotlib runs on the Agg backend: nothing here needs a display.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

METRICS_FILE = "metrics.json"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
EMBEDDINGS_FILE = "embeddings.png"





# --- JSON -------------------------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays become Python numbers/lists, NaN and inf become None."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def write_metrics(path: str | Path, record: Mapping[str, Any]) -> Path:
    """Write `record` as strict JSON (no NaN) with sorted-insertion order kept."""
    path = Path(path)
    path.write_text(json.dumps(json_safe(record), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path


# --- plots --------------------------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_confusion_matrices(
    path: str | Path,
    panels: Sequence[tuple[str, np.ndarray]],
    label_names: Sequence[str],
) -> Path:
    """One confusion-matrix panel per `(title, counts)`; counts is `(C, C)`, rows = true class.

    Cells are coloured by the row-normalised rate (the per-class recall on the diagonal) and show the count
    and the rate, so that classes of very different sizes stay readable.
    """
    plt = _pyplot()
    n = len(panels)
    size = 1.1 * len(label_names) + 1.6
    fig, axes = plt.subplots(1, n, figsize=(size * n + 0.8, size), squeeze=False, constrained_layout=True)
    image = None
    for ax, (title, counts) in zip(axes[0], panels, strict=True):
        counts = np.asarray(counts, dtype=np.int64)
        totals = counts.sum(axis=1, keepdims=True)
        rates = np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
        image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        for i in range(counts.shape[0]):
            for j in range(counts.shape[1]):
                text = f"{counts[i, j]}\n{rates[i, j]:.0%}" if totals[i, 0] else "–"
                ax.text(j, i, text, ha="center", va="center", fontsize=9,
                        color="white" if rates[i, j] > 0.55 else "black")
        ax.set_xticks(range(len(label_names)), label_names, rotation=30, ha="right")
        ax.set_yticks(range(len(label_names)), label_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="fraction of the true class")
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _project(embeddings: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str]:
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, max(2.0, (len(embeddings) - 1) / 3)))
        # Exact gradients for small sets: Barnes-Hut's threaded tree code is slower there (and oversubscribes).
        method = "exact" if len(embeddings) <= 300 else "barnes_hut"
        projected = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                         method=method).fit_transform(embeddings)
        return projected, "t-SNE"
    if method != "pca":
        raise ValueError(f"Unknown projection {method!r}; use 'pca' or 'tsne'.")
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed).fit(embeddings)
    explained = pca.explained_variance_ratio_.sum()
    return pca.transform(embeddings), f"PCA ({explained:.0%} of variance)"


def embedding_silhouettes(
    emotion_embeddings: np.ndarray, corpus_embeddings: np.ndarray | None, emotion_ids: np.ndarray,
    corpus_ids: np.ndarray
) -> dict[str, dict[str, float | None]]:
    """Silhouette scores (cosine) of each embedding grouped by emotion and by corpus.

    Decoupling and alignment show as: emotion embeddings with a clearly positive score by emotion and a score
    near 0 by corpus (corpora mixed); corpus embeddings with a positive score by corpus. None where a grouping
    has fewer than two groups. `corpus_embeddings` is `None` for a method without a trained corpus-specific branch
    (everything but Emo-DNA with decoupling): then only the emotion embeddings are scored.
    """
    from sklearn.metrics import silhouette_score

    def score(x: np.ndarray, groups: np.ndarray) -> float | None:
        n_groups = len(np.unique(groups))
        if n_groups < 2 or n_groups >= len(groups):
            return None
        return float(silhouette_score(x, groups, metric="cosine"))

    scores = {"emotion_embeddings": {"by_emotion": score(emotion_embeddings, emotion_ids),
                                     "by_corpus": score(emotion_embeddings, corpus_ids)}}
    if corpus_embeddings is not None:
        scores["corpus_embeddings"] = {"by_emotion": score(corpus_embeddings, emotion_ids),
                                       "by_corpus": score(corpus_embeddings, corpus_ids)}
    return scores


_MARKERS = ["o", "^", "s", "D", "v", "P", "X", "*"]


def save_embedding_projection(
    path: str | Path,
    emotion_embeddings: np.ndarray,
    corpus_embeddings: np.ndarray | None,
    emotion_ids: np.ndarray,
    corpus_ids: np.ndarray,
    label_names: Sequence[str],
    corpus_names: Sequence[str],
    *,
    method: str = "pca",
    seed: int = 0,
    silhouettes: Mapping[str, Mapping[str, float | None]] | None = None,
    title: str | None = None,
    predicted: np.ndarray | None = None,
) -> Path:
    """A 2×2 figure: rows = emotion-relevant / corpus-specific embeddings, columns = coloured by emotion / corpus
    (one row when `corpus_embeddings` is `None`: a method without a corpus-specific branch).

    Every point is one utterance, coloured by its true emotion; rows marked in `predicted` (utterances without a
    label, e.g. an unlabelled target) are coloured by the model's predicted class instead and drawn hollow, and the
    legend and titles say so. The marker shape always shows the corpus. Each embedding is projected on its own
    (`method`: "pca" or "tsne").
    """
    plt = _pyplot()
    emotion_ids, corpus_ids = np.asarray(emotion_ids), np.asarray(corpus_ids)
    predicted = np.zeros(len(emotion_ids), dtype=bool) if predicted is None else np.asarray(predicted, dtype=bool)
    emotion_colors = plt.get_cmap("tab10")
    corpus_colors = plt.get_cmap("Dark2")
    rows = [("emotion_embeddings", "Emotion-relevant embeddings", emotion_embeddings)]
    if corpus_embeddings is not None:
        rows.append(("corpus_embeddings", "Corpus-specific embeddings", corpus_embeddings))
    fig, axes = plt.subplots(len(rows), 2, figsize=(11.5, 5 * len(rows)), constrained_layout=True, squeeze=False)
    for row, (key, name, embeddings) in enumerate(rows):
        projected, how = _project(np.asarray(embeddings, dtype=np.float64), method, seed)
        for col, by in enumerate(("emotion", "corpus")):
            ax = axes[row, col]
            for c in range(len(corpus_names)):
                for e in range(len(label_names)):
                    color = emotion_colors(e % 10) if by == "emotion" else corpus_colors(c % 8)
                    for hollow in (False, True):
                        mask = (corpus_ids == c) & (emotion_ids == e) & (predicted == hollow)
                        if not mask.any():
                            continue
                        style = (dict(facecolors="none", edgecolors=[color], linewidths=0.9) if hollow
                                 else dict(color=color, linewidths=0))
                        ax.scatter(projected[mask, 0], projected[mask, 1], s=14, alpha=0.7,
                                   marker=_MARKERS[c % len(_MARKERS)], **style)
            # Legends list the colour key (and, in the emotion panel, the marker key for corpora).
            handles = []
            if by == "emotion":
                handles += [plt.Line2D([], [], ls="", marker="o", color=emotion_colors(e % 10), label=emotion)
                            for e, emotion in enumerate(label_names) if (emotion_ids == e).any()]
                handles += [plt.Line2D([], [], ls="", marker=_MARKERS[c % len(_MARKERS)], color="grey",
                                       label=corpus) for c, corpus in enumerate(corpus_names)
                            if (corpus_ids == c).any()]
                if predicted.any():
                    handles.append(plt.Line2D([], [], ls="", marker="o", markerfacecolor="none", color="grey",
                                              label="hollow: predicted class (no label)"))
            else:
                handles += [plt.Line2D([], [], ls="", marker=_MARKERS[c % len(_MARKERS)],
                                       color=corpus_colors(c % 8), label=corpus)
                            for c, corpus in enumerate(corpus_names) if (corpus_ids == c).any()]
            ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.8)
            score = (silhouettes or {}).get(key, {}).get(f"by_{by}")
            score_text = f" — silhouette {score:.2f}" if score is not None else ""
            colour_key = by
            if by == "emotion" and predicted.any():
                colour_key = "emotion (true; predicted where unlabelled)"
            ax.set_title(f"{name}, coloured by {colour_key}{score_text}", fontsize=10)
            ax.set_xlabel(f"{how}, component 1", fontsize=8)
            ax.set_ylabel("component 2", fontsize=8)
            ax.tick_params(labelsize=7)
    fig.suptitle(
        (title + "\n" if title else "")
        + "Alignment: emotion embeddings should group by emotion with corpora mixed"
        + (";\ncorpus embeddings should separate the corpora." if corpus_embeddings is not None else "."),
        fontsize=11,
    )
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --- model card ---------------------------------------------------------------------------------------------------




