"""A speaker-normalised run (`--speaker_normalization true`) deploys: evaluate_model.py, the Python API and the
saved model give the numbers of the run's own final evaluation."""

import json
import subprocess
import sys

import numpy as np
import pytest
from test_recipes import REPO, TINY_ARGS, _env

TARGET_KWARGS = {"n_per_class_per_speaker": 1, "n_speakers": 5}  # TINY_ARGS's target: 20 utterances


@pytest.fixture(scope="module")
def speaker_run(tmp_path_factory):
    """recipes/train.py on the default scenario (opensmile functionals), speaker-normalised, with a tiny budget."""
    tmp_path = tmp_path_factory.mktemp("speaker-recipe")
    output = tmp_path / "out"
    args = [arg if arg != "2" else "6" for arg in TINY_ARGS]  # --max_steps 6: predictions that are not all alike
    completed = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "train.py"), "--output_dir", str(output), *args,
         "--speaker_normalization", "true"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    return tmp_path, output


@pytest.mark.slow
def test_evaluate_model_reproduces_a_speaker_normalised_run(speaker_run):
    tmp_path, output = speaker_run
    config = json.loads((output / "config.json").read_text())
    assert config["speaker_normalization"] is True
    assert (output / "speakers_emodna.py").is_file()  # the remote code that applies the statistics
    completed = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "evaluate_model.py"), "--model_name_or_path", str(output),
         "--corpus_name", "synth-b", "--corpus_dataset", "synthetic:synth-b", "--corpus_speaker_column", "speaker",
         "--corpus_load_kwargs", json.dumps({"synth-b": TARGET_KWARGS}), "--max_duration_s", "0.8",
         "--output_dir", str(tmp_path / "eval"), "--use_cpu"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    evaluated = json.loads((tmp_path / "eval" / "eval_synth-b.json").read_text())["corpora"]["synth-b"]
    run = json.loads((output / "metrics.json").read_text())
    assert evaluated["n"] == run["target"]["n"] == 20
    assert evaluated["uar"] == pytest.approx(run["target"]["uar"])
    assert evaluated["confusion_matrix"] == run["target"]["confusion_matrix"]
    # Functions of the logits: the same logits, not only the same arg-max.
    for criterion in ("target_im", "target_snd", "target_snd_embeddings"):
        assert evaluated["selection"][criterion] == pytest.approx(run["selection"][criterion], rel=1e-5, abs=1e-6)
    assert evaluated["mean_confidence"] == pytest.approx(run["target"]["mean_confidence"], rel=1e-5)
    # Utterance by utterance: the same predicted class and probabilities.
    from datasets import load_dataset

    trained = load_dataset("parquet", data_files=str(output / "predictions.parquet"), split="train").to_pandas()
    again = load_dataset("parquet", data_files=str(tmp_path / "eval" / "eval_synth-b_predictions.parquet"),
                         split="train").to_pandas()
    trained, again = (frame.sort_values("utt_id").reset_index(drop=True) for frame in (trained, again))
    assert list(trained["utt_id"]) == list(again["utt_id"]) and list(trained["speaker"]) == list(again["speaker"])
    assert list(trained["predicted_label"]) == list(again["predicted_label"])
    for name in [c for c in trained.columns if c.startswith("probability_")]:
        np.testing.assert_allclose(again[name], trained[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_python_api_and_card_of_a_speaker_normalised_run(speaker_run):
    from huggingface_hub import ModelCard
    from transformers import AutoFeatureExtractor, pipeline

    from emodna_hf import EmoDnaForAudioClassification
    from emodna_hf.data import CorpusSpec, load_corpus
    from emodna_hf.data.labels import column_values
    from emodna_hf.metrics import confusion_matrix
    from emodna_hf.speakers import predict_by_speaker

    _, output = speaker_run
    run = json.loads((output / "metrics.json").read_text())["target"]
    model = EmoDnaForAudioClassification.from_pretrained(output).eval()
    extractor = AutoFeatureExtractor.from_pretrained(output)
    corpus, _ = load_corpus(CorpusSpec("synth-b", "synthetic:synth-b", load_kwargs=TARGET_KWARGS),
                            scheme="categorical4", sampling_rate=16000, max_duration_s=0.8)
    waves = [np.asarray(w, np.float32) for w in column_values(corpus, "input_values")]
    logits = predict_by_speaker(model, extractor, waves, column_values(corpus, "speaker"))
    labels = np.asarray(column_values(corpus, "labels"))
    assert confusion_matrix(logits.argmax(-1), labels, 4).tolist() == run["confusion_matrix"]
    with pytest.raises(ValueError, match="speaker_statistics"):
        pipeline("audio-classification", model=str(output), trust_remote_code=True)(waves[0])

    card = ModelCard.load(output / "README.md").text
    assert "speaker-normalised" in card and "model.speaker_statistics(" in card
    assert "--corpus_speaker_column" in card and "refuses" in card
