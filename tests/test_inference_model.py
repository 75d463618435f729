"""The saved model holds what inference uses (issue 20, item 2): no training-only part of a method reaches the
file, its logits are the trained model's, and checkpoints that still hold those parts load quietly."""

import logging

import pytest
import torch
from factories import LABELS, toy_corpus
from safetensors.torch import load_file, save_file
from transformers.utils import logging as transformers_logging

from emodna_hf import EmoDnaConfig, EmoDnaForAudioClassification
from emodna_hf.trainer import EmoDnaTrainer, EmoDnaTrainingArguments

INFERENCE_MODULES = ("backbone.", "layer_sum.", "pooling.", "corpus_normalization.", "emotion_encoder.", "classifier.")
TRAINING_ONLY = ("corpus_encoder.", "emotion_projector.", "corpus_projector.", "corpus_classifier.",
                 "domain_discriminator.")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The default configuration (tcn front end, Emo-DNA with every component) trained for a few steps."""
    out = tmp_path_factory.mktemp("inference")
    torch.manual_seed(0)
    config = EmoDnaConfig(id2label=dict(enumerate(LABELS)), pseudo_label_warmup=0.0)
    model = EmoDnaForAudioClassification(config)
    args = EmoDnaTrainingArguments(output_dir=str(out / "run"), per_device_train_batch_size=4, max_steps=3,
                                   learning_rate=3e-3, report_to="none", use_cpu=True, save_strategy="no",
                                   disable_tqdm=True)
    trainer = EmoDnaTrainer(model=model, args=args, train_dataset=toy_corpus(0, 12, 0.0, seed=1),
                            target_dataset=toy_corpus(1, 8, 35.0, seed=2, with_labels=False))
    trainer.train()
    trainer.save_model(str(out / "model"))
    return trainer, out / "model"


def _inputs():
    return toy_corpus(1, 4, 35.0, seed=9)


def test_the_saved_file_holds_only_the_inference_path(trained):
    trainer, folder = trained
    keys = set(load_file(folder / "model.safetensors"))
    assert keys and all(k.startswith(INFERENCE_MODULES) for k in keys), sorted(k for k in keys
                                                                               if not k.startswith(INFERENCE_MODULES))
    # The method's parts were trained (they exist, in the trainer, with gradients applied), just not saved.
    parts = trainer.objective.state_dict()
    assert any(k.startswith("decoupling_branch.corpus_encoder.") for k in parts)
    assert any(k.startswith("corpus_aligner.discriminator.") for k in parts)
    saved = sum(t.numel() for t in load_file(folder / "model.safetensors").values())
    method = sum(p.numel() for p in trainer.objective.parameters())
    print(f"saved model: {saved} values; the method's training-only parameters: {method}")
    assert method > 0


def test_the_saved_model_gives_the_trained_models_logits(trained):
    trainer, folder = trained
    loaded = EmoDnaForAudioClassification.from_pretrained(folder).eval()
    model = trainer.model.eval()
    batch = trainer.data_collator([_inputs()[i] for i in range(4)])
    with torch.no_grad():
        expected = model(batch["input_values"], batch["attention_mask"]).logits
        got = loaded(batch["input_values"], batch["attention_mask"]).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_a_checkpoint_with_the_old_training_heads_loads_quietly(trained, tmp_path, caplog):
    """Checkpoints saved before the methods owned their parts hold them in model.safetensors: they are skipped."""
    trainer, folder = trained
    old = tmp_path / "old"
    EmoDnaForAudioClassification.from_pretrained(folder).save_pretrained(old)
    state = load_file(old / "model.safetensors")
    size = trainer.model.config.embedding_size
    for name in TRAINING_ONLY:
        state[name + "0.weight"] = torch.randn(size, size)
    save_file(state, old / "model.safetensors", metadata={"format": "pt"})
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.enable_propagation()  # transformers' loggers do not reach caplog otherwise
    transformers_logging.set_verbosity_info()
    try:
        with caplog.at_level(logging.INFO):  # (without the ignore list transformers warns: UNEXPECTED keys)
            loaded = EmoDnaForAudioClassification.from_pretrained(old).eval()
    finally:
        transformers_logging.disable_propagation()
        transformers_logging.set_verbosity(verbosity)
    assert caplog.records  # the capture works (the loading logs what it reads at INFO)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "corpus_encoder" in r.getMessage()]
    assert not any(hasattr(loaded, name.rstrip(".")) for name in TRAINING_ONLY)
    reference = EmoDnaForAudioClassification.from_pretrained(folder).eval()
    batch = trainer.data_collator([_inputs()[i] for i in range(4)])
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch["input_values"], batch["attention_mask"]).logits,
                                   reference(batch["input_values"], batch["attention_mask"]).logits)
