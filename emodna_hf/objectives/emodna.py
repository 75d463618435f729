"""Emo-DNA (reconstruction): contrastive emotion decoupling + dual-level (class and corpus) emotion alignment.

The terms, each switchable for the ablations (docs/method.md §3, §5):

* corpus-level alignment (`use_corpus_alignment`): DANN or MMD on the emotion embedding (`corpus_alignment`);
* contrastive decoupling (`use_decoupling`): SupCon over emotion projections with the corpus projections as extra
  negatives, plus a corpus classifier that makes the corpus-specific branch carry corpus identity;
* class-level alignment (`use_class_alignment`): confident target rows, selected by adaptive class-wise
  thresholds, are aligned with same-class source rows (contrastive or prototype) and trained on their
  pseudo-labels. Without it no pseudo-label is used anywhere.
"""

from __future__ import annotations

import torch

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
        terms, stats = {}, {}
        if config.use_corpus_alignment:
            loss, stats = self.corpus_aligner.corpus_alignment(batch)
            terms["corpus_alignment"] = (loss, config.corpus_alignment_weight)
        if config.use_class_alignment:
            pseudo_labels, selected, pseudo_stats = self.pseudo_labels(outputs.logits[target], batch)
            stats.update(pseudo_stats)
        if config.use_decoupling:
            # Positives share the emotion: source labels, plus confident target pseudo-labels once available.
            contrast_labels = batch.labels.clone()
            if config.use_class_alignment:
                contrast_labels[target] = pseudo_labels.masked_fill(~selected, -100)
            terms["decoupling"] = (
                self.decoupling_loss(outputs.emotion_projections, contrast_labels, outputs.corpus_projections),
                config.decoupling_weight,
            )
            terms["corpus_classification"] = (
                corpus_classification_loss(outputs.corpus_logits, batch.corpus_ids),
                config.corpus_classification_weight,
            )
        if config.use_class_alignment:
            features = outputs.emotion_projections if config.class_alignment == "contrastive" \
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
