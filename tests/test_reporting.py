"""Output-folder reports: strict metrics JSON, readable plots, embedding scores, and the model card round trip."""

import json
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard

from emodna_hf import card as model_card
from emodna_hf import reporting


def test_json_safe_makes_strict_json(tmp_path):
    record = {"uar": np.float32(0.5), "recall": {"neutral": float("nan")}, "cm": np.eye(2, dtype=np.int64),
              "n": np.int64(3), "path": tmp_path}
    path = reporting.write_metrics(tmp_path / "metrics.json", record)
    loaded = json.loads(path.read_text())  # strict: json.loads accepts NaN, so check the text too
    assert "NaN" not in path.read_text()
    assert loaded == {"uar": 0.5, "recall": {"neutral": None}, "cm": [[1, 0], [0, 1]], "n": 3, "path": str(tmp_path)}


def _clustered(n_per=30, seed=0):
    """Emotion embeddings clustered by emotion and mixed over corpora; corpus embeddings by corpus."""
    rng = np.random.default_rng(seed)
    emotions = np.repeat(np.arange(4), 2 * n_per)
    corpora = np.tile(np.repeat(np.arange(2), n_per), 4)
    emotion_centres, corpus_centres = 5 * rng.normal(size=(4, 16)), 5 * rng.normal(size=(2, 16))
    emotion_emb = emotion_centres[emotions] + rng.normal(size=(len(emotions), 16))
    corpus_emb = corpus_centres[corpora] + rng.normal(size=(len(emotions), 16))
    return emotion_emb, corpus_emb, emotions, corpora


def test_silhouettes_show_decoupling():
    emotion_emb, corpus_emb, emotions, corpora = _clustered()
    scores = reporting.embedding_silhouettes(emotion_emb, corpus_emb, emotions, corpora)
    assert scores["emotion_embeddings"]["by_emotion"] > 0.5
    assert abs(scores["emotion_embeddings"]["by_corpus"]) < 0.1
    assert scores["corpus_embeddings"]["by_corpus"] > 0.5
    assert abs(scores["corpus_embeddings"]["by_emotion"]) < 0.1
    single = reporting.embedding_silhouettes(emotion_emb, corpus_emb, emotions, np.zeros_like(corpora))
    assert single["emotion_embeddings"]["by_corpus"] is None


@pytest.mark.parametrize("method", ["pca", pytest.param("tsne", marks=pytest.mark.slow)])
def test_plots_are_written(tmp_path, method):
    import matplotlib.image

    emotion_emb, corpus_emb, emotions, corpora = _clustered(n_per=10 if method == "pca" else 4)
    labels, names = ["angry", "happy", "neutral", "sad"], ["src", "tgt (target)"]
    projection = reporting.save_embedding_projection(
        tmp_path / "emb.png", emotion_emb, corpus_emb, emotions, corpora, labels, names, method=method,
        silhouettes=reporting.embedding_silhouettes(emotion_emb, corpus_emb, emotions, corpora), title="t",
    )
    matrix = reporting.save_confusion_matrices(
        tmp_path / "cm.png", [("target", np.array([[3, 1, 0, 0], [0, 4, 0, 0], [1, 0, 2, 1], [0, 0, 0, 0]])),
                              ("source", np.eye(4, dtype=int) * 5)], labels)
    for path, min_size in ((projection, (800, 800)), (matrix, (300, 500))):
        image = matplotlib.image.imread(path)
        assert image.shape[0] >= min_size[0] and image.shape[1] >= min_size[1]
        assert image[..., :3].std() > 0.05  # not blank


def _card_info(**overrides):
    info = {
        "model_name": "emodna-emodb-to-casia",
        "repo_id": "me/emodna-emodb-to-casia",
        "sources": [{"corpus": "emodb", "dataset_id": "someone/emodb", "hub": True, "split": "train", "location": "Hub dataset",
                     "config_name": None, "language": "de", "style": "acted", "title": "EmoDB",
                     "mapping": {"W": "high", "T": "low", "X": None}}],
        "target": {"corpus": "casia", "dataset_id": "casia", "hub": False, "split": None, "location": "local files (csv)",
                   "config_name": None, "language": "zh", "style": "acted", "title": "CASIA",
                   "mapping": {"angry": "high", "sad": "low"}},
        "scheme": "arousal",
        "label_names": ["low", "high"],
        "languages": ["de", "zh"],
        "backbone": {"type": "wavlm", "base_model": "microsoft/wavlm-base-plus", "description": "WavLM"},
        "method": {"name": "Emo-DNA", "description": "d", "settings": {"adaptation_method": "emodna"}},
        "training": {"description": "2 epochs"},
        "results": [{"name": "casia (target)", "n": 10, "uar": 0.61234, "war": 0.7, "macro_f1": 0.6}],
        "target_metrics": {"uar": 0.61234, "war": 0.7, "macro_f1": 0.6, "recall": {"low": 0.5, "high": None}},
        "embedding_analysis": {"emotion_embeddings": {"by_emotion": 0.2, "by_corpus": None},
                               "corpus_embeddings": {"by_emotion": 0.0, "by_corpus": 0.4}},
        "files": {"confusion_matrix": "confusion_matrix.png", "embeddings": "embeddings.png"},
        "sampling_rate": 16000,
        "reproduce_command": "python recipes/train.py --config x.yaml",
        "versions": {"emodna_hf": "0", "transformers": "5", "torch": "2", "datasets": "5"},
        "extra_tags": ["emodna"],
    }
    info.update(overrides)
    return info


def test_model_card_metadata_round_trip(tmp_path):
    card = model_card.make_model_card(_card_info())
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data
    assert data.library_name == "transformers" and data.pipeline_tag == "audio-classification"
    assert {"emodna", "speech-emotion-recognition", "domain-adaptation"} <= set(data.tags)
    assert data.base_model == "microsoft/wavlm-base-plus"
    assert data.datasets == ["someone/emodb"]  # only Hub ids: a local manifest is no dataset id
    assert sorted(data.language) == ["de", "zh"]
    values = {r.metric_name: r.metric_value for r in data.eval_results}
    assert values == {"UAR": 0.61234, "WAR": 0.7, "Macro-F1": 0.6}
    assert {r.dataset_type for r in data.eval_results} == {"casia"}
    text = loaded.text
    assert "trust_remote_code=True" in text and "transductive" in text.lower()
    assert "`W` → high" in text and "`X` → dropped" in text
    assert "n/a" in text  # the missing silhouette / recall are shown as such, not crash the template
    assert "me/emodna-emodb-to-casia" in text
    assert "skipped" not in text  # nothing was skipped


def test_card_names_skipped_audio_and_notes(tmp_path):
    info = _card_info()
    info["target"] = dict(info["target"], skipped_audio={"casia/sad/broken": "empty file"})
    info["notes"] = ["features were standardised per speaker"]
    text = model_card.make_model_card(info).content
    assert "casia: 1 unreadable audio file(s) skipped" in text and "`casia/sad/broken` (empty file)" in text
    assert "**Note:** features were standardised per speaker." in text


def test_card_licence_and_inference_with_what_the_package_installs(tmp_path):
    card = model_card.make_model_card(_card_info())
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.license == "apache-2.0"
    text = loaded.text
    assert 'AutoFeatureExtractor.from_pretrained("me/emodna-emodb-to-casia", trust_remote_code=True)' in text
    assert 'classifier("speech.wav")' in text and '{"raw": samples, "sampling_rate": 8000}' in text
    assert "no ffmpeg and no torchaudio" in text
    assert "needs ffmpeg" not in text and "needs torchaudio" not in text
    assert "audEERING" not in text  # a WavLM model needs no openSMILE

    smile = model_card.make_model_card(_card_info(backbone={
        "type": "opensmile", "base_model": None, "description": "eGeMAPS", "feature_set": "eGeMAPSv02"})).content
    smile = " ".join(smile.split())  # line breaks as spaces
    assert "license: apache-2.0" in smile and "openSMILE eGeMAPSv02 functionals" in smile
    assert "research and personal use only" in smile and "commercial licence from audEERING" in smile
    assert "`opensmile` for this model's openSMILE front end" in smile


def test_a_streamed_hub_corpus_is_a_hub_dataset_of_the_card(tmp_path):
    from emodna_hf.data import CorpusSpec

    streamed = model_card.corpus_info(CorpusSpec(name="emodb", source="someone/emodb", streaming=True),
                                      {"source_kind": "stream"})
    assert streamed["hub"] and streamed["dataset_id"] == "someone/emodb" and streamed["language"] == "de"
    assert streamed["split"] == "train" and streamed["location"] == "Hub dataset (streamed)"
    (tmp_path / "mine").mkdir()
    local = model_card.corpus_info(CorpusSpec(name="mine", source=str(tmp_path / "mine"), streaming=True),
                                   {"source_kind": "stream"})
    assert not local["hub"] and local["dataset_id"] == "mine"
    card = model_card.make_model_card(_card_info(sources=[dict(_card_info()["sources"][0], **streamed)])).data
    assert card.datasets == ["someone/emodb"]


def test_predicted_colours_are_said_in_the_card_and_the_plot(tmp_path):
    from unittest import mock

    import matplotlib.axes

    analysis = dict(_card_info()["embedding_analysis"], n_predicted_colour=12)
    text = model_card.make_model_card(_card_info(embedding_analysis=analysis)).content
    assert "12 points, hollow markers) are coloured by the class the model predicts" in " ".join(text.split())
    assert "the model predicts" not in model_card.make_model_card(_card_info()).content

    emotion_emb, corpus_emb, emotions, corpora = _clustered(n_per=10)
    titles, legends = [], []
    set_title, legend = matplotlib.axes.Axes.set_title, matplotlib.axes.Axes.legend
    with mock.patch.object(matplotlib.axes.Axes, "set_title", autospec=True,
                           side_effect=lambda ax, text, **kw: titles.append(text) or set_title(ax, text, **kw)), \
         mock.patch.object(matplotlib.axes.Axes, "legend", autospec=True,
                           side_effect=lambda ax, **kw: legends.append([h.get_label() for h in kw["handles"]])
                           or legend(ax, **kw)):
        reporting.save_embedding_projection(tmp_path / "emb.png", emotion_emb, corpus_emb, emotions, corpora,
                                            ["angry", "happy", "neutral", "sad"], ["src", "tgt"],
                                            predicted=corpora == 1)
    assert sum("coloured by emotion (true; predicted where unlabelled)" in t for t in titles) == 2
    assert sum("hollow: predicted class (no label)" in labels for labels in legends) == 2


def test_missing_template_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="template"):
        model_card.make_model_card(_card_info(), template_path=tmp_path / "nope.md")


def test_corpus_facts():
    assert model_card.corpus_facts("CREMA-D")["language"] == "en"
    assert model_card.corpus_facts("enterface")["title"].startswith("eNTERFACE")
    assert model_card.corpus_facts("synth-b")["style"].startswith("synthetic")
    assert model_card.corpus_facts("my-corpus") == {"language": "", "style": "", "title": ""}


def test_one_registry_of_known_corpora():
    from emodna_hf.data.labels import CORPUS_FACTS, CORPUS_LABEL_MAPS, get_label_map, known_corpus

    assert set(CORPUS_FACTS) == set(CORPUS_LABEL_MAPS)  # every corpus with a label map has card facts
    for alias, key in (("Berlin", "emodb"), ("eNTERFACE", "enterface05"), ("cremad", "crema-d"),
                       ("MSP_Podcast", "msp-podcast"), ("synth-en", "synthetic")):
        assert known_corpus(alias) == key
        assert get_label_map(alias) == CORPUS_LABEL_MAPS[key]
        assert model_card.corpus_facts(alias) == CORPUS_FACTS[key]
    assert known_corpus("my-corpus") is None


@pytest.mark.slow
def test_a_wheel_install_ships_the_card_template(tmp_path):
    """A non-editable install must find the template inside the package (no repository next to it)."""
    import subprocess
    import sys
    import zipfile

    repo = Path(__file__).resolve().parents[1]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(tmp_path), str(repo)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(tmp_path.glob("emodna_hf-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    assert (tmp_path / "site" / "emodna_hf" / "templates" / "model_card.md").is_file()
    # The extracted package, imported without the repository, resolves its default template there.
    code = ("import emodna_hf.card as r, pathlib; p = pathlib.Path(r.DEFAULT_TEMPLATE); "
            "print(p.is_file(), p.is_relative_to(pathlib.Path.cwd()))")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path / "site")}
    checked = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "site", env=env, capture_output=True,
                             text=True, timeout=120)
    assert checked.stdout.split() == ["True", "True"], checked.stderr[-2000:]
