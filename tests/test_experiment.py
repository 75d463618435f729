"""emodna_hf.experiment: argument parsing (file < command line), validation, and run_experiment from Python."""

import dataclasses
import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from factories import tiny_ssl_backbone_config
from transformers import Trainer

from emodna_hf import EmoDnaConfig, experiment
from emodna_hf.experiment import DataArguments, ModelArguments, parse_args
from emodna_hf.trainer import EmoDnaTrainingArguments

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "recipes" / "configs" / "default.yaml"


def write_yaml(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_no_arguments_means_the_default_config():
    model_args, data_args, training_args, config_file = parse_args([], default_config=DEFAULT_CONFIG)
    assert config_file == str(DEFAULT_CONFIG)
    assert model_args.backbone_type == "opensmile" and model_args.adaptation_method == "emodna"
    assert data_args.source_name == ["synth-a"] and data_args.source_dataset == ["synthetic:synth-a"]
    assert data_args.target_name == "synth-b" and data_args.target_dataset == "synthetic:synth-b"
    assert data_args.scheme == "categorical4"
    assert training_args.output_dir == "outputs/default"
    assert training_args.metric_for_best_model is None and not training_args.load_best_model_at_end
    # TensorBoard when it is installed (neither file nor CLI chose); nothing otherwise. The suite must pass both ways.
    from transformers.integrations import is_tensorboard_available

    expected = ["tensorboard"] if is_tensorboard_available() else EmoDnaTrainingArguments(output_dir="x").report_to
    assert training_args.report_to == expected


def test_command_line_beats_the_file(tmp_path):
    config = write_yaml(tmp_path, """
model:
  adaptation_method: dann
  decoupling_weight: 0.3
data:
  sources:
    - {name: a, dataset: "synthetic:synth-a", label_map_name: synthetic}
    - {name: c, dataset: "synthetic:synth-c", label_map_name: synthetic, load_kwargs: {seed: 3}}
  target: {name: b, dataset: "synthetic:synth-b", label_map_name: synthetic}
  scheme: arousal
training:
  learning_rate: 1e-3
  num_train_epochs: 7
  report_to: none
  eval_strategy: no
""")
    args = parse_args(["--config", str(config), "--learning_rate", "5e-4", "--adaptation_method", "mmd",
                       "--use_decoupling", "false", "--scheme", "valence", "--source_split", "train"])
    model_args, data_args, training_args, _ = args
    assert training_args.learning_rate == 5e-4 and training_args.num_train_epochs == 7  # CLI wins, file stays
    assert training_args.report_to == []  # `report_to: none` in the file: no logger, TensorBoard installed or not
    assert training_args.eval_strategy == "no"
    assert model_args.adaptation_method == "mmd" and model_args.use_decoupling is False
    assert model_args.decoupling_weight == 0.3
    assert data_args.scheme == "valence"
    specs = data_args.source_specs()
    assert [s.name for s in specs] == ["a", "c"] and specs[1].load_kwargs == {"seed": 3}
    assert specs[0].label_map_name == "synthetic" and data_args.target_spec().label_map_name == "synthetic"
    # a positional config file works too (the HF examples' style)
    assert parse_args([str(config)]).training_args.learning_rate == 1e-3


def test_model_arguments_keep_config_defaults():
    assert ModelArguments().config_kwargs() == {}
    model_args = ModelArguments(adaptation_method="source_only", config_overrides="tcn_hidden_size=8,pooling=mean")
    assert model_args.config_kwargs() == {"adaptation_method": "source_only", "tcn_hidden_size": 8, "pooling": "mean"}
    model = experiment.build_model(ModelArguments(config_overrides={"tcn_num_blocks": 2}), ["low", "high"],
                                   ["a", "b", "c"])
    reference = EmoDnaConfig()
    for name in ("decoupling_weight", "pseudo_label_weight", "adaptive_threshold", "use_decoupling", "grl_gamma"):
        assert getattr(model.config, name) == getattr(reference, name), name
    assert model.config.num_corpora == 3 and model.config.id2label == {0: "low", 1: "high"}
    assert model.config.corpus_names == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(adaptation_method="coral"), "Unknown adaptation_method 'coral'"),
        (dict(backbone_type="whisper"), "Unknown backbone_type"),
        (dict(config_overrides="tcn_hiden_size=3"), "did you mean tcn_hidden_size"),
        (dict(config_overrides={"num_corpora": 5}), "derives it from the data"),
        (dict(decoupling_weight=0.2, config_overrides={"decoupling_weight": 0.1}), "set it once"),
        (dict(config_overrides="not json"), "key=value"),
    ],
)
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelArguments(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(scheme="sentiment"), "Unknown label scheme 'sentiment'"),
        (dict(source_dataset=["synthetic:synth-z"]), "unknown synthetic preset 'synth-z'"),
        (dict(source_name=["mycorpus"], source_dataset=["synthetic:synth-a"], source_label_map_name=["emdb"]),
         "no built-in label map 'emdb'"),
        (dict(source_name=["a", "b"], source_dataset=["synthetic:synth-a"]), "one dataset per source"),
        (dict(source_name=["synth-a", "synth-c"], source_dataset=["synthetic:synth-a", "synthetic:synth-c"],
              source_split=["a", "b", "c"]), "3 entries for 2 source corpora"),
        (dict(target_name="synth-a"), "unique"),
        (dict(source_dataset=["not a valid id!"]), "neither an existing local file"),
        (dict(source_label_map={"other": {"x": "angry"}}), "keyed by source corpus name"),
    ],
)
def test_bad_data_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataArguments(**kwargs)


def test_missing_local_source_fails_before_loading(tmp_path):
    args = DataArguments(source_name=["emodb"], source_dataset=[str(tmp_path / "emodb" / "manifest.csv")])
    with pytest.raises(ValueError, match="neither an existing local file"):
        args.check_sources()
    ok = DataArguments(source_name=["emodb"], source_dataset=["someone/emodb"])  # a Hub id is looked up later
    assert ok.check_sources() == {"emodb": "hub", "synth-b": "synthetic"}


def test_config_file_errors(tmp_path):
    with pytest.raises(ValueError, match=r"'learning_rat' \(did you mean learning_rate"):
        parse_args(["--config", str(write_yaml(tmp_path, "learning_rat: 0.1\n"))])
    with pytest.raises(ValueError, match="needs 'name' and 'dataset'"):
        parse_args(["--config", str(write_yaml(tmp_path, "sources:\n  - {name: a}\n"))])
    with pytest.raises(FileNotFoundError):
        parse_args(["--config", str(tmp_path / "missing.yaml")])
    with pytest.raises(ValueError, match="Unknown label scheme"):
        parse_args(["--scheme", "sentiment"], default_config=DEFAULT_CONFIG)


@pytest.mark.parametrize("metric", ["target_uar", "eval_target_uar", None, "loss"])
def test_target_labels_never_select_models(tmp_path, metric):
    kwargs = dict(output_dir=str(tmp_path), load_best_model_at_end=True, eval_strategy="epoch",
                  save_strategy="epoch", report_to="none")
    if metric:
        kwargs["metric_for_best_model"] = metric
    with pytest.raises(ValueError, match="SOURCE"):
        experiment.check_model_selection(EmoDnaTrainingArguments(**kwargs))
    kwargs["metric_for_best_model"] = "source_uar"
    experiment.check_model_selection(EmoDnaTrainingArguments(**kwargs))


TINY_DATA = dict(
    source_load_kwargs={"synth-a": {"n_per_class_per_speaker": 1, "n_speakers": 6}},
    target_load_kwargs={"n_per_class_per_speaker": 1, "n_speakers": 5},
    max_duration_s=0.8,
    max_projection_samples=50,
)


def tiny_training_args(output_dir, **overrides):
    kwargs = dict(output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=4,
                  per_device_eval_batch_size=16, learning_rate=1e-3, report_to="none", use_cpu=True,
                  save_strategy="no", disable_tqdm=True, logging_steps=1, seed=0)
    kwargs.update(overrides)
    return EmoDnaTrainingArguments(**kwargs)


@pytest.mark.slow
def test_run_experiment_from_python_with_a_mocked_push(tmp_path, monkeypatch):
    """The benchmark path: no files, shared data, arguments reused untouched; and the push flow, offline."""
    from huggingface_hub import CommitInfo, HfApi, RepoUrl

    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    data_args = DataArguments(**TINY_DATA)
    model_args = ModelArguments(config_overrides={"tcn_hidden_size": 16, "tcn_num_blocks": 2})
    training_args = tiny_training_args(tmp_path / "run", push_to_hub=True, hub_model_id="me/emo-tiny")
    data = experiment.load_data(data_args)
    events = []
    commit = CommitInfo(commit_url="https://huggingface.co/me/emo-tiny/commit/1", commit_message="m",
                        commit_description="", oid="1", pr_url=None)
    with mock.patch.object(HfApi, "create_repo", autospec=True,
                           side_effect=lambda *a, **k: events.append("create_repo")
                           or RepoUrl("https://huggingface.co/me/emo-tiny")), \
         mock.patch.object(HfApi, "create_commit", autospec=True,
                           side_effect=lambda *a, **k: events.append(("commit", k["operations"])) or commit), \
         mock.patch.object(experiment.EmoDnaTrainer, "train", autospec=True,
                           side_effect=lambda self, **k: events.append("train")
                           or Trainer.train(self, **k)):
        record = experiment.run_experiment(model_args, data_args, training_args, data=data)

    assert events[0] == "create_repo" and events[1] == "train"  # the repo exists before training starts
    uploaded = {op.path_in_repo for op in events[2][1]}
    assert {"README.md", "config.json", "model.safetensors", "metrics.json", "confusion_matrix.png",
            "embeddings.png", "preprocessor_config.json", "modeling_emodna.py"} <= uploaded
    assert record["hub"]["repo_id"] == "me/emo-tiny"
    assert training_args.push_to_hub is True  # the caller's arguments are not modified
    assert set(record["target"]) >= {"uar", "war", "macro_f1", "recall", "n", "confusion_matrix"}
    assert record["target"]["n"] == len(data.target_eval) and record["train"]["steps"] == 2
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["target"]["uar"] == record["target"]["uar"]

    # A second run on the same data, another method, no output folder: what a benchmark loop does.
    again = experiment.run_experiment(
        dataclasses.replace(model_args, adaptation_method="source_only"), data_args,
        tiny_training_args(tmp_path / "run2"), data=data, write_outputs=False,
    )
    assert again["config"]["model_config"]["adaptation_method"] == "source_only"
    assert not (tmp_path / "run2" / "metrics.json").exists()
    assert set(again["embedding_analysis"]["emotion_embeddings"]) == {"by_emotion", "by_corpus"}


@pytest.mark.slow
def test_ssl_backbone_from_a_local_checkpoint(tmp_path):
    """A (tiny, random) WavLM checkpoint folder as backbone_name_or_path: frozen, trained, saved, reloaded."""
    from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

    torch.manual_seed(0)
    fields = {k: v for k, v in tiny_ssl_backbone_config("wavlm").items() if k != "model_type"}
    AutoModel.from_config(AutoConfig.for_model("wavlm", **fields)).save_pretrained(tmp_path / "wavlm-tiny")
    record = experiment.run_experiment(
        ModelArguments(backbone_name_or_path=str(tmp_path / "wavlm-tiny"), freeze_backbone=True),
        DataArguments(**TINY_DATA), tiny_training_args(tmp_path / "run"),
    )
    model = AutoModelForAudioClassification.from_pretrained(tmp_path / "run")
    assert model.config.backbone_type == "wavlm" and model.config.freeze_backbone
    assert record["config"]["model_config"]["backbone_type"] == "wavlm"
    card = (tmp_path / "run" / "README.md").read_text()
    assert "base_model" not in card.split("---")[1]  # a local folder is no Hub id


def test_a_target_overlapping_a_source_is_refused(tmp_path):
    source, nested, other = tmp_path / "A", tmp_path / "A" / "B", tmp_path / "C"
    for folder in (source, nested, other):
        folder.mkdir(parents=True, exist_ok=True)
    (other / "one.csv").write_text("file_name,label\n")
    (other / "two.csv").write_text("file_name,label\n")

    def args(src, tgt, **kwargs):
        return DataArguments(source_name=["emodb"], source_dataset=[str(src)], target_name="casia",
                             target_dataset=str(tgt), **kwargs)

    for src, tgt in ((source, source), (source, nested), (nested, source), (other / "one.csv", other / "one.csv"),
                     (other, other / "one.csv")):
        with pytest.raises(ValueError, match="shares audio with source 'emodb'"):
            args(src, tgt).check_sources()
    args(other / "one.csv", other / "two.csv").check_sources()  # two manifests side by side are fine...
    (other / "three.csv").write_text("file_name,label\nx/a.wav,angry\n")
    (other / "four.csv").write_text("file_name,label\n./x/a.wav,sad\n")
    (tmp_path / "elsewhere.csv").write_text(f"file_name,label\n{source / 'b.wav'},sad\n")
    for src, tgt in ((other / "three.csv", other / "four.csv"), (source, tmp_path / "elsewhere.csv")):
        with pytest.raises(ValueError, match="shares audio with source 'emodb'"):
            args(src, tgt).check_sources()  # ...unless they list the same files, or files inside the source
    args(source, other).check_sources()
    args(source, nested, allow_source_target_overlap=True).check_sources()  # deliberate, and said so


def test_corpora_given_by_dataset_are_named_after_it(tmp_path):
    for name in ("A", "B"):
        (tmp_path / name).mkdir()
    (tmp_path / "C").mkdir()
    (tmp_path / "C" / "manifest.csv").write_text("file_name,label\n")
    _, data_args, _, _ = parse_args(["--source_dataset", str(tmp_path / "A"), "--target_dataset",
                                     str(tmp_path / "B")], default_config=DEFAULT_CONFIG)
    assert data_args.source_name == ["A"] and data_args.target_name == "B"  # not the demo's synth-a / synth-b
    _, data_args, _, _ = parse_args([f"--target_dataset={tmp_path / 'C' / 'manifest.csv'}", "--source_dataset",
                                     "someone/my-corpus", "synthetic:synth-c"], default_config=DEFAULT_CONFIG)
    assert data_args.source_name == ["my-corpus", "synth-c"] and data_args.target_name == "C"
    _, data_args, _, _ = parse_args(["--target_dataset", str(tmp_path / "B"), "--target_name", "mine"],
                                    default_config=DEFAULT_CONFIG)
    assert data_args.target_name == "mine" and data_args.source_name == ["synth-a"]  # named: kept; others: the file's


def test_summary_names_skipped_audio_and_an_unlabelled_target():
    record = {
        "scenario": {"sources": ["a"], "target": "b", "scheme": "categorical4"},
        "config": {"model_config": {"adaptation_method": "emodna"}},
        "target": {"corpus": "b", "labelled": False, "n": 4, "mean_confidence": 0.8,
                   "predicted_distribution": {"angry": 0.5, "happy": 0.0, "neutral": 0.25, "sad": 0.25}},
        "data": {"a": {"skipped_audio": {f"a/u{i}": "empty file" for i in range(7)}}, "b": {"skipped_audio": {}},
                 "split": {}},
        "output_dir": None, "wall_time_s": 1.0,
    }
    text = experiment.format_summary(record)
    assert "unlabelled: accuracy not measured; predicted angry 50%, happy 0%, neutral 25%, sad 25%" in text
    assert "skipped audio in a: 7 file(s): a/u0 (empty file)" in text and "and 2 more (metrics.json)" in text
    assert "skipped audio in b" not in text


def test_small_models_train_with_one_torch_thread_unless_the_user_chose(monkeypatch):
    import torch

    from emodna_hf.experiment import ModelArguments, choose_torch_threads

    previous = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(2)
        assert choose_torch_threads(ModelArguments()) == 1 and torch.get_num_threads() == 1  # opensmile default
        torch.set_num_threads(2)
        assert choose_torch_threads(ModelArguments(backbone_type="tcn")) == 1
        torch.set_num_threads(2)
        # An SSL backbone (here in one run of a sweep) keeps torch's own choice.
        assert choose_torch_threads(ModelArguments(backbone_type="tcn"), ModelArguments(backbone_type="wavlm")) is None
        assert choose_torch_threads(ModelArguments(backbone_name_or_path="some/wavlm")) is None
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert choose_torch_threads(ModelArguments()) is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
