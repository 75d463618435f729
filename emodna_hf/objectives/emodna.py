"""Emo-DNA (reconstruction): contrastive emotion decoupling + dual-level (class and corpus) emotion alignment.

The terms, each switchable for the ablations (docs/method.md §3, §5):

* corpus-level alignment (`use_corpus_alignment`): DANN or MMD on the emotion embedding (`corpus_alignment`);
* contrastive decoupling (`use_decoupling`): SupCon over emotion projections with the corpus projections as extra
  negatives, plus a corpus classifier that makes the corpus-specific branch carry corpus identity (the branch,
  `DecouplingBranch`, belongs to this objective: the inference model never holds it);
* class-level alignment (`use_class_alignment`): confident target rows, selected by adaptive class-wise
  thresholds, are aligned with same-class source rows (contrastive or prototype) and trained on their
  pseudo-labels. Without it no pseudo-label is used anywhere.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..losses import (
    ClassPrototypeAlignmentLoss,
    ContrastiveDecouplingLoss,
    CrossCorpusClassAlignmentLoss,
    corpus_classification_loss,
    pseudo_label_cross_entropy,
)
from ..pseudo_labels import AdaptiveThresholdPseudoLabeler, CurriculumPseudoLabeler, momentum_for
from .base import AdaptationObjective, ObjectiveBatch
from .dann import DomainAdversarialObjective
from .mmd import MultiKernelMMDObjective
from .parts import mlp, weight_dtype


class DecouplingBranch(nn.Module):
    """Emo-DNA's corpus-specific branch and projection heads (docs/method.md §3).

    `E_c`: the corpus encoder over the pooled features *before* corpus normalisation (they keep the corpus
    information the emotion path is stripped of), `u = E_c(x)`; `g`, `g'`: the projectors whose L2-normalised
    outputs `z = g(h)`, `v = g'(u)` the contrastive losses compare; `C_c`: the corpus classifier on `u`.
    """

    def __init__(self, config, pooled_size: int):
        super().__init__()
        embedding_size = config.embedding_size
        self.corpus_encoder = mlp(pooled_size, config.encoder_hidden_size, embedding_size, config.encoder_dropout)
        self.emotion_projector = mlp(embedding_size, embedding_size, config.projection_size, 0.0)
        self.corpus_projector = mlp(embedding_size, embedding_size, config.projection_size, 0.0)
        self.corpus_classifier = nn.Sequential(nn.ReLU(), nn.Linear(embedding_size, config.num_corpora))

    def corpus_embeddings(self, pooled_features: Tensor) -> Tensor:
        return self.corpus_encoder(pooled_features.to(weight_dtype(self)))

    def forward(self, emotion_embeddings: Tensor, pooled_features: Tensor) -> dict[str, Tensor]:
        """`{"emotion_projections" z, "corpus_projections" v, "corpus_logits" C_c(u), "corpus_embeddings" u}`."""
        corpus_embeddings = self.corpus_embeddings(pooled_features)
        emotion_embeddings = emotion_embeddings.to(weight_dtype(self))
        return {
            "emotion_projections": nn.functional.normalize(self.emotion_projector(emotion_embeddings), dim=-1),
            "corpus_projections": nn.functional.normalize(self.corpus_projector(corpus_embeddings), dim=-1),
            "corpus_logits": self.corpus_classifier(corpus_embeddings),
            "corpus_embeddings": corpus_embeddings,
        }


def build_pseudo_labeler(config, target_size: int | None = None):
    """The adaptive rule of `config` (curriculum or FreeMatch), or the fixed threshold of the ablation."""
    if config.adaptive_threshold and config.pseudo_label_selection == "curriculum":
        # Remember at most one pass over the target corpus, so that stale predictions leave the memory.
        size = config.pseudo_label_memory_size
        if target_size:
            size = max(1, min(size, target_size))
        return CurriculumPseudoLabeler(
            config.num_labels, memory_size=size, warmup=config.pseudo_label_warmup,
            ramp=config.pseudo_label_ramp, max_fraction=config.pseudo_label_max_fraction,
            confidence_floor=config.pseudo_label_confidence_floor,
        )
    return AdaptiveThresholdPseudoLabeler(
        config.num_labels, momentum=config.threshold_momentum if config.threshold_momentum is not None else 0.99,
        fixed_threshold=None if config.adaptive_threshold else config.fixed_threshold,
    )


class EmoDnaObjective(AdaptationObjective):
    name = "emodna"
    title = "Emo-DNA (emotion decoupling and alignment)"
    description = (
        "Contrastive decoupling of an emotion-relevant from a corpus-specific embedding, class-level alignment of "
        "confidently pseudo-labelled target utterances with source utterances of the same emotion (adaptive "
        "class-wise thresholds), and corpus-level alignment of the emotion embedding."
    )

    def __init__(self, config, target_size: int | None = None, **kwargs):
        super().__init__(config, target_size=target_size, **kwargs)
        aligner = MultiKernelMMDObjective if config.corpus_alignment == "mmd" else DomainAdversarialObjective
        self.corpus_aligner = aligner(config)
        # Built whenever the pooled width is known (an ablation switch may turn the terms on or off later); a card
        # description needs no modules.
        self.decoupling_branch = DecouplingBranch(config, self.pooled_size) if self.pooled_size else None
        self.decoupling_loss = ContrastiveDecouplingLoss(config.contrastive_temperature)
        self.class_alignment_loss = (
            CrossCorpusClassAlignmentLoss(config.contrastive_temperature)
            if config.class_alignment == "contrastive"
            else ClassPrototypeAlignmentLoss(config.num_labels)
        )
        self.pseudo_labeler = build_pseudo_labeler(config, target_size)

    def loss_terms(self, batch: ObjectiveBatch):
        config, outputs = self.config, batch.outputs
        source, target = ~batch.is_target, batch.is_target
        terms, stats = self.classification(batch), {}
        if config.use_corpus_alignment:
            loss, stats = self.corpus_aligner.corpus_alignment(batch)
            terms["corpus_alignment"] = (loss, config.corpus_alignment_weight)
        if config.use_class_alignment:
            pseudo_labels, selected, pseudo_stats = self.pseudo_labels(outputs.logits[target], batch)
            stats.update(pseudo_stats)
        if config.use_decoupling or config.use_class_alignment and config.class_alignment == "contrastive":
            if self.decoupling_branch is None:
                raise ValueError("The Emo-DNA objective was built without pooled_size: its decoupling branch "
                                 "(corpus encoder, projectors) does not exist. Build it with "
                                 "build_objective(config, pooled_size=model.pooling.output_size).")
            branch = self.decoupling_branch(outputs.emotion_embeddings, outputs.pooled_features)
        if config.use_decoupling:
            # Positives share the emotion: source labels, plus confident target pseudo-labels once available.
            contrast_labels = batch.labels.clone()
            if config.use_class_alignment:
                contrast_labels[target] = pseudo_labels.masked_fill(~selected, -100)
            terms["decoupling"] = (
                self.decoupling_loss(branch["emotion_projections"], contrast_labels, branch["corpus_projections"]),
                config.decoupling_weight,
            )
            terms["corpus_classification"] = (
                corpus_classification_loss(branch["corpus_logits"], batch.corpus_ids),
                config.corpus_classification_weight,
            )
        if config.use_class_alignment:
            features = branch["emotion_projections"] if config.class_alignment == "contrastive" \
                else outputs.emotion_embeddings
            terms["class_alignment"] = (
                self.class_alignment_loss(features[source], batch.labels[source], features[target], pseudo_labels,
                                          selected),
                config.class_alignment_weight,
            )
            terms["pseudo_label"] = (
                pseudo_label_cross_entropy(outputs.logits[target], pseudo_labels, selected),
                config.pseudo_label_weight,
            )
        return terms, stats

    def evaluation_outputs(self, outputs) -> dict[str, Tensor]:
        """The corpus-specific embeddings `u`, where the branch is trained (`use_decoupling`)."""
        if self.decoupling_branch is None or not self.config.use_decoupling:
            return {}
        return {"corpus_embeddings": self.decoupling_branch.corpus_embeddings(outputs.pooled_features)}

    def pseudo_labels(self, target_logits, batch: ObjectiveBatch):
        """Update the thresholds with all processes' target predictions, then select confident local rows."""
        probs, progress = target_logits.detach().float().softmax(-1), batch.progress
        if isinstance(self.pseudo_labeler, CurriculumPseudoLabeler):
            self.pseudo_labeler.update(self.gather(probs))
            pseudo_labels, selected = self.pseudo_labeler.select(probs, progress)
            thresholds = self.pseudo_labeler.thresholds(progress)
            stats = {"pseudo_label_target_fraction": self.scalar(self.pseudo_labeler.fraction(progress))}
        else:
            momentum = self.config.threshold_momentum
            if momentum is None:  # the EMAs' time constant is a share of training, not a number of steps
                momentum = momentum_for(batch.total_updates, self.config.threshold_time_constant)
            self.pseudo_labeler.update(self.gather(probs), momentum=momentum)
            pseudo_labels, selected = self.pseudo_labeler.select(probs)
            thresholds = self.pseudo_labeler.thresholds()
            stats = {"threshold_global": self.scalar(self.pseudo_labeler.global_threshold)}
        if progress < self.config.pseudo_label_warmup:  # the classifier is unreliable before
            selected = torch.zeros_like(selected)
        stats["pseudo_label_mask_rate"] = selected.float().mean()
        stats.update({f"threshold_{self.config.id2label[c]}": thresholds[c] for c in range(len(thresholds))})
        return pseudo_labels, selected, stats

    def card_settings(self):
        config = self.config
        return {
            "adaptation_method": self.name,
            "use_decoupling": config.use_decoupling, "use_class_alignment": config.use_class_alignment,
            "use_corpus_alignment": config.use_corpus_alignment, "corpus_alignment": config.corpus_alignment,
            "class_alignment": config.class_alignment, "adaptive_threshold": config.adaptive_threshold,
            "pseudo_label_selection": config.pseudo_label_selection if config.adaptive_threshold else "fixed",
            "decoupling_weight": config.decoupling_weight, "class_alignment_weight": config.class_alignment_weight,
            "pseudo_label_weight": config.pseudo_label_weight,
            "corpus_alignment_weight": config.corpus_alignment_weight,
            "corpus_classification_weight": config.corpus_classification_weight,
            "pseudo_label_warmup": config.pseudo_label_warmup,
            "corpus_normalization": config.uses_corpus_normalization,
        }

    @classmethod
    def describe(cls, config):
        description = super().describe(config)
        ablated = [n for n in ("use_decoupling", "use_class_alignment", "use_corpus_alignment") if not getattr(config, n)]
        if ablated:
            description["name"] += f" — ablation without {', '.join(a[4:] for a in ablated)}"
        return description
