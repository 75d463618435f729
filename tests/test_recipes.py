"""The user-facing recipes: train.py through `accelerate launch`, the output folder, evaluate_model.py, configs, manifests."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from huggingface_hub import ModelCard
from test_remote_code import run_remote_code_check

from emodna_hf.experiment import load_config_file, parse_args

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "recipes" / "configs").glob("*.yaml"))

def _load_script(name):
    """Import a recipe script by path (recipes/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"recipe_{name}", REPO / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


prepare_manifest = _load_script("prepare_manifest")

# A tiny budget of the default scenario: small generated corpora, two optimisation steps.
TINY_ARGS = [
    "--source_load_kwargs", '{"synth-a": {"n_per_class_per_speaker": 1, "n_speakers": 6}}',
    "--target_load_kwargs", "n_per_class_per_speaker=1,n_speakers=5",
    "--max_duration_s", "0.8", "--max_steps", "2", "--per_device_train_batch_size", "4",
    "--config_overrides", "tcn_hidden_size=16,tcn_num_blocks=2", "--max_projection_samples", "40",
    "--disable_tqdm", "true",
]


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), TOKENIZERS_PARALLELISM="false")
    return env


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """`accelerate launch recipes/train.py` (one CPU process) on the default config with a tiny budget."""
    tmp_path = tmp_path_factory.mktemp("recipe")
    output = tmp_path / "out"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu",
               str(REPO / "recipes" / "train.py"), "--output_dir", str(output), *TINY_ARGS]
    completed = subprocess.run(command, cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                               timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-5000:]
    return tmp_path, output, completed.stdout


@pytest.mark.slow
def test_recipe_output_folder(trained_run):
    tmp_path, output, stdout = trained_run
    assert "synth-a → synth-b (categorical4)" in stdout
    assert "target synth-b" in stdout and "UAR" in stdout and "source synth-a" in stdout

    names = {p.name for p in output.iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "configuration_emodna.py",
            "modeling_emodna.py", "tcn_emodna.py", "README.md", "metrics.json", "confusion_matrix.png",
            "embeddings.png"} <= names
    assert "training_args.bin" not in names and not any(n.startswith("checkpoint-") for n in names)
    from transformers.integrations import is_tensorboard_available

    if is_tensorboard_available():  # TensorBoard logs when it is installed and not opted out
        assert any((output / "runs").rglob("events.out.tfevents.*"))

    config = json.loads((output / "config.json").read_text())
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel", "AutoModelForAudioClassification"}

    metrics = json.loads((output / "metrics.json").read_text())
    for side, corpus in (("target", "synth-b"), ("source", "synth-a")):
        block = metrics[side]
        assert block["corpus"] == corpus
        assert 0.0 <= block["uar"] <= 1.0 and 0.0 <= block["war"] <= 1.0 and 0.0 <= block["macro_f1"] <= 1.0
        assert set(block["recall"]) == {"angry", "happy", "neutral", "sad"}
        matrix = np.array(block["confusion_matrix"])
        assert matrix.shape == (4, 4) and matrix.sum() == block["n"]
        assert block["war"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert metrics["target"]["n"] == 20  # 5 speakers x 4 classes x 1, all target utterances
    assert metrics["config"]["training_args"]["max_steps"] == 2
    assert metrics["config"]["data_args"]["target_dataset"] == "synthetic:synth-b"
    assert metrics["config"]["model_config"]["tcn_hidden_size"] == 16
    assert metrics["train"]["steps"] == 2
    assert set(metrics["embedding_analysis"]["emotion_embeddings"]) == {"by_emotion", "by_corpus"}
    # Emo-DNA's corpus branch (the method's, not in model.safetensors) still gives the corpus-specific embeddings.
    assert set(metrics["embedding_analysis"]["corpus_embeddings"]) == {"by_emotion", "by_corpus"}
    from safetensors.torch import load_file

    assert not [k for k in load_file(output / "model.safetensors") if k.startswith(("corpus_encoder", "domain_"))]

    card = ModelCard.load(output / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "audio-classification"
    assert {"emodna", "speech-emotion-recognition", "domain-adaptation"} <= set(card.data.tags)
    values = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert values == {"UAR": metrics["target"]["uar"], "WAR": metrics["target"]["war"],
                      "Macro-F1": metrics["target"]["macro_f1"]}
    assert {r.task_type for r in card.data.eval_results} == {"audio-classification"}
    assert "accelerate launch" in card.text and "--max_steps 2" in card.text  # how to reproduce


@pytest.mark.slow
def test_recipe_model_loads_by_remote_code_alone(trained_run):
    tmp_path, output, _ = trained_run
    import torch

    from emodna_hf import EmoDnaForAudioClassification

    waveforms = np.random.default_rng(0).standard_normal((2, 12000)).astype(np.float32)
    model = EmoDnaForAudioClassification.from_pretrained(output).eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(waveforms)).logits.numpy()
    report = run_remote_code_check(output, waveforms, tmp_path)
    for key in ("audio_classification", "auto_model"):
        assert report[key]["module"].startswith("transformers_modules")
        np.testing.assert_allclose(np.array(report[key]["logits"]), expected, rtol=1e-5, atol=1e-6)
    assert sorted(s["label"] for s in report["pipeline"]) == ["angry", "happy", "neutral", "sad"]


@pytest.mark.slow
def test_second_run_into_the_same_folder_stops_before_training(trained_run):
    tmp_path, output, _ = trained_run
    before = (output / "model.safetensors").read_bytes()
    completed = subprocess.run([sys.executable, str(REPO / "recipes" / "train.py"), "--output_dir", str(output),
                                *TINY_ARGS], cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode != 0
    assert "--overwrite_output_dir" in completed.stderr and "Traceback" not in completed.stderr
    assert (output / "model.safetensors").read_bytes() == before


@pytest.mark.slow
def test_evaluate_recipe_on_another_corpus(trained_run):
    tmp_path, output, _ = trained_run
    evaluation = output  # into the model's own folder: the training outputs must survive
    training_files = {name: (output / name).read_bytes() for name in ("metrics.json", "confusion_matrix.png",
                                                                       "embeddings.png", "README.md")}
    completed = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "evaluate_model.py"), "--model_name_or_path", str(output),
         "--corpus_name", "synth-c", "synth-b", "--corpus_dataset", "synthetic:synth-c", "synthetic:synth-b",
         "--corpus_load_kwargs", '{"synth-c": {"n_per_class_per_speaker": 1, "n_speakers": 3}, '
                                 '"synth-b": {"n_per_class_per_speaker": 1, "n_speakers": 5}}',
         "--max_duration_s", "0.8", "--output_dir", str(evaluation), "--use_cpu"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    assert "synth-c" in completed.stdout and "UAR" in completed.stdout
    metrics = json.loads((evaluation / "eval_synth-c+synth-b.json").read_text())
    assert metrics["scheme"] == "categorical4" and set(metrics["corpora"]) == {"synth-c", "synth-b"}
    assert metrics["corpora"]["synth-c"]["n"] == 12
    # The same target utterances evaluated by evaluate_model.py and by the training run give the same numbers.
    trained = json.loads((output / "metrics.json").read_text())["target"]
    assert metrics["corpora"]["synth-b"]["uar"] == pytest.approx(trained["uar"])
    assert metrics["corpora"]["synth-b"]["confusion_matrix"] == trained["confusion_matrix"]
    trained_selection = json.loads((output / "metrics.json").read_text())["selection"]
    for criterion in ("target_im", "target_snd", "target_snd_embeddings"):  # label-free, the same outputs
        assert metrics["corpora"]["synth-b"]["selection"][criterion] == pytest.approx(trained_selection[criterion])
    assert (evaluation / "eval_synth-c+synth-b_confusion_matrix.png").stat().st_size > 10_000
    assert (evaluation / "eval_synth-c+synth-b_embeddings.png").stat().st_size > 10_000
    for name, content in training_files.items():
        assert (output / name).read_bytes() == content, f"evaluate_model.py replaced the training run's {name}"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_every_scenario_config_parses(config):
    model_args, data_args, training_args, _ = parse_args(["--config", str(config)])
    raw = load_config_file(config)
    assert training_args.output_dir == raw["output_dir"]
    assert training_args.metric_for_best_model is None  # never target-label model selection
    for spec in [*data_args.source_specs(), data_args.target_spec()]:
        source = str(spec.source)
        # Either runnable here (synthetic) or a path the user must adjust, marked as such in the file.
        assert source.startswith("synthetic:") or "/path/to/" in source, source
    if config.name != "default.yaml":
        text = config.read_text()
        assert text.count("PLACEHOLDER") >= 2 and "accelerate launch recipes/train.py --config" in text
        assert model_args.backbone_name_or_path in ("microsoft/wavlm-base-plus", "facebook/wav2vec2-base")
        assert data_args.scheme in config.name or data_args.scheme == "categorical4"


def test_scenario_configs_cover_the_issue():
    names = {p.name for p in CONFIGS}
    for scheme in ("arousal", "valence", "categorical4"):
        assert f"casia_to_emodb_{scheme}.yaml" in names and f"emodb_to_casia_{scheme}.yaml" in names
    assert {"emodb_to_enterface_arousal.yaml", "enterface_to_emodb_arousal.yaml", "iemocap_to_msp_podcast.yaml",
            "ravdess_to_crema_d.yaml", "default.yaml"} <= names


def test_train_script_reports_bad_input_clearly(tmp_path):
    train = _load_script("train")
    for args, message in (
        (["--target_dataset", "/nonexistent/target.csv", "--target_name", "emodb"], "neither an existing local file"),
        (["--scheme", "sentiment"], "Unknown label scheme 'sentiment'"),
        (["--source_dataset", "synthetic:nope"], "unknown synthetic preset"),
        (["--config", str(tmp_path / "missing.yaml")], "does not exist"),
        # a relative folder with a typo is a missing folder, not a Hub id to look up
        (["--target_dataset", f"{tmp_path.name}/no-such-corpus"], "neither an existing local file"),
    ):
        with pytest.raises(SystemExit) as exit_info:  # sys.exit("error: ..."): a message, no traceback
            previous_cwd = os.getcwd()
            os.chdir(tmp_path.parent)
            try:
                train.main(["--output_dir", str(tmp_path / "out"), *args])
            finally:
                os.chdir(previous_cwd)
        assert str(exit_info.value).startswith("error: ") and message in str(exit_info.value)
        assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_train_script_reports_data_errors_in_one_line(tmp_path):
    """A label the maps do not know, found while loading: one line naming it, no traceback."""
    corpus = tmp_path / "mine"
    _touch_wav(corpus / "a.wav")
    _touch_wav(corpus / "b.wav")
    (corpus / "metadata.csv").write_text("file_name,label\na.wav,angry\nb.wav,elated\n")
    completed = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "train.py"), "--output_dir", str(tmp_path / "out"),
         "--source_dataset", str(corpus)],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode != 0 and "Traceback" not in completed.stderr
    assert "error: Corpus 'mine', column 'label': unknown raw label(s) 'elated' (1 rows)" in completed.stderr


def _touch_wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(1600) / 16000
    sf.write(path, (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 16000)


def test_prepare_manifest_reads_the_original_layouts(tmp_path):
    from emodna_hf.data import CorpusSpec, load_corpus

    layouts = {
        "emodb": (["wav/03a01Fa.wav", "wav/08b02Tc.wav", "wav/11a05Wd.wav", "wav/README.txt"], 3),
        "ravdess": (["Actor_01/03-01-05-01-01-01-01.wav", "Actor_02/03-02-03-01-01-01-02.wav",
                     "Actor_02/03-01-01-01-01-01-02.wav"], 2),  # song files are skipped
        "crema-d": (["AudioWAV/1001_DFA_ANG_XX.wav", "AudioWAV/1002_IEO_SAD_HI.wav"], 2),
        "enterface05": (["subject 1/anger/sentence 1/s1_an_1.wav", "subject 12/sadness/sentence 2/s12_sa_2.wav"], 2),
        "casia": (["liuchanhg/angry/201.wav", "wangzhe/neutral/203.wav"], 2),
    }
    for corpus, (files, expected) in layouts.items():
        root = tmp_path / corpus
        for name in files:
            if name.endswith(".wav"):
                _touch_wav(root / name)
            else:
                (root / name).write_text("x")
        manifest = prepare_manifest.write_manifest(corpus, root)
        rows = list(csv.DictReader(open(manifest)))
        assert len(rows) == expected, corpus
        dataset, report = load_corpus(CorpusSpec(name=corpus, source=str(manifest)), scheme="categorical4")
        assert report["n_raw"] == expected and len(dataset) >= 1, corpus
    emodb_rows = list(csv.DictReader(open(tmp_path / "emodb" / "manifest.csv")))
    assert {(r["emotion"], r["speaker"]) for r in emodb_rows} == {("F", "03"), ("T", "08"), ("W", "11")}
    assert emodb_rows[0]["file_name"] == "wav/03a01Fa.wav"

    # IEMOCAP: labels from the EmoEvaluation files, speaker = session + gender.
    root = tmp_path / "IEMOCAP"
    evaluation = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    evaluation.parent.mkdir(parents=True)
    evaluation.write_text("% header\n[6.2 - 8.2]\tSes01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]\n"
                          "[10.0 - 11.5]\tSes01F_impro01_M001\texc\t[3.0, 3.5, 3.0]\n")
    for utt in ("Ses01F_impro01_F000", "Ses01F_impro01_M001"):
        _touch_wav(root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / f"{utt}.wav")
    rows = list(csv.DictReader(open(prepare_manifest.write_manifest("iemocap", root))))
    assert [(r["emotion"], r["speaker"]) for r in rows] == [("neu", "Ses01F"), ("exc", "Ses01M")]

    # MSP-Podcast: one split of the consensus labels.
    root = tmp_path / "msp"
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "MSP-PODCAST_0001_0008.wav,N,4,4,4,127,Female,Test1\nMSP-PODCAST_0002_0001.wav,A,6,2,5,Unknown,Male,Train\n")
    _touch_wav(root / "Audios" / "MSP-PODCAST_0001_0008.wav")
    manifest = prepare_manifest.write_manifest("msp-podcast", root, split="Test1")
    assert manifest.name == "manifest_Test1.csv"
    assert [r["emotion"] for r in csv.DictReader(open(manifest))] == ["N"]

    with pytest.raises(ValueError, match="No casia utterances"):
        prepare_manifest.write_manifest("casia", tmp_path / "emodb" / "wav")


@pytest.mark.slow
def test_an_unlabelled_target_folder_trains_and_is_reported_without_accuracy(tmp_path):
    """The normal case: a target folder of audio files with no labels at all."""
    import soundfile as sf

    from emodna_hf.data import make_synthetic_corpus

    target = tmp_path / "my-target"
    target.mkdir()
    for i, row in enumerate(make_synthetic_corpus("synth-b", n_per_class_per_speaker=1, n_speakers=4)):
        sf.write(target / f"utt{i:03d}.wav", np.asarray(row["audio"]["array"]), row["audio"]["sampling_rate"])
    output = tmp_path / "out"
    args = [arg for arg in TINY_ARGS if "target_load_kwargs" not in arg and "n_per_class_per_speaker=1,n_speakers=5" != arg]
    completed = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "train.py"), "--output_dir", str(output), "--target_name", "mine",
         "--target_dataset", str(target), *args],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "unlabelled: accuracy not measured" in completed.stdout
    metrics = json.loads((output / "metrics.json").read_text())
    target_metrics = metrics["target"]
    assert target_metrics["labelled"] is False and "uar" not in target_metrics and target_metrics["n"] == 16
    assert sum(target_metrics["predicted_distribution"].values()) == pytest.approx(1.0)
    assert metrics["data"]["mine"]["classes"] == {}
    card = (output / "README.md").read_text()
    assert "Target accuracy was not measured" in card and "model-index" not in card
    assert metrics["source"]["uar"] >= 0  # the held-out source is still scored


def test_a_target_without_a_label_column_loads_unlabelled(tmp_path):
    import soundfile as sf

    from emodna_hf.data import CorpusSpec, load_corpus

    for i in range(2):
        sf.write(tmp_path / f"u{i}.wav", np.full(4000, 0.01 * (i + 1), dtype=np.float32), 16000)
    (tmp_path / "metadata.csv").write_text("file_name,speaker\nu0.wav,s1\nu1.wav,s2\n")
    spec = CorpusSpec(name="mine", source=str(tmp_path))
    dataset, report = load_corpus(spec, require_labels=False)
    assert dataset["labels"] == [None, None] and report["labels"]["unlabelled"]
    with pytest.raises(ValueError, match="no label column"):
        load_corpus(spec)  # a source must have labels


def test_evaluate_recipe_names_a_missing_model_folder(tmp_path):
    evaluate = _load_script("evaluate_model")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--model_name_or_path", str(tmp_path / "no-such-run"), "--corpus_name", "synth-c",
                       "--corpus_dataset", "synthetic:synth-c", "--output_dir", str(tmp_path / "eval")])
    assert str(exit_info.value) == f"error: Model folder {tmp_path / 'no-such-run'} does not exist (pass a run's " \
                                   "output folder or a Hub model id)."


def test_an_empty_label_column_is_an_unlabelled_target_and_dropping_everything_is_an_error(tmp_path):
    from emodna_hf.data import CorpusSpec, load_corpus

    _touch_wav(tmp_path / "u0.wav")
    _touch_wav(tmp_path / "u1.wav")
    (tmp_path / "metadata.csv").write_text("file_name,label\nu0.wav,\nu1.wav,\n")
    dataset, report = load_corpus(CorpusSpec(name="mine", source=str(tmp_path), label_map={"": None}),
                                  require_labels=False)
    assert dataset["labels"] == [None, None] and report["labels"]["unlabelled"]
    (tmp_path / "metadata.csv").write_text("file_name,label\nu0.wav,x\nu1.wav,x\n")
    with pytest.raises(ValueError, match=r"no utterance is left after label mapping \(dropped: \{'x': 2\}\)"):
        load_corpus(CorpusSpec(name="mine", source=str(tmp_path), label_map={"x": None}), require_labels=False)


def test_a_source_lacking_classes_stops_the_recipe_naming_them(tmp_path):
    train = _load_script("train")
    source = tmp_path / "angry-only"
    for speaker in range(3):
        for i in range(4):
            _touch_wav(source / "angry" / f"s{speaker}_{i}.wav")
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--output_dir", str(tmp_path / "out"), "--source_name", "mine", "--source_dataset", str(source),
                    "--audio_cache_dir", "none", "--target_load_kwargs", "n_per_class_per_speaker=1,n_speakers=2"])
    assert "no utterance of class(es) 'happy', 'neutral', 'sad'" in str(exit_info.value)
    assert not (tmp_path / "out").exists()
    _, data_args, _, _ = parse_args(["--allow_missing_source_classes", "true"])
    assert data_args.allow_missing_source_classes


@pytest.mark.slow
@pytest.mark.parametrize(("method", "flags", "card_name"), [
    ("cdan", ["--cdan_entropy_conditioning", "true"], "CDAN+E"),
    ("mcc", ["--mcc_weight", "0.5", "--mcc_temperature", "2.0"], "MCC"),
])
def test_the_recipe_trains_the_new_methods(tmp_path, method, flags, card_name):
    """`--adaptation_method cdan|mcc` from train.py: the settings reach the config and the card, the saved model
    holds only the inference path, and the report has no corpus-specific embeddings (the methods have no such
    branch)."""
    from safetensors.torch import load_file

    output = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "train.py"), "--output_dir", str(output),
         "--adaptation_method", method, *flags, *TINY_ARGS],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    config = json.loads((output / "config.json").read_text())
    assert config["adaptation_method"] == method
    if method == "mcc":
        assert (config["mcc_weight"], config["mcc_temperature"]) == (0.5, 2.0)
    keys = load_file(output / "model.safetensors")
    assert not [k for k in keys if k.startswith(("corpus_encoder", "domain_discriminator", "discriminator",
                                                 "emotion_projector", "corpus_projector", "corpus_classifier"))]
    card = (output / "README.md").read_text()
    assert card_name in card and "| corpus-specific |" not in card
    metrics = json.loads((output / "metrics.json").read_text())
    assert "corpus_embeddings" not in metrics["embedding_analysis"]
