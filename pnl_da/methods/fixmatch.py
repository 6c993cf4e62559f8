"""FixMatch (Sohn et al., 2020): confident weak-view predictions as hard pseudo labels for
the strong view of the same unlabeled image."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pnl_da.choice import Predict, View
from pnl_da.losses.distribution import DistributionAlignment
from pnl_da.methods.base import Batch, Method
from pnl_da.methods.options import MethodConfig


def confident(weak_probs: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """The images (B,) bool whose weak-view top probability reaches ``threshold`` (one number,
    or one per image)."""
    return weak_probs.detach().float().max(dim=1).values >= threshold


def pseudo_label_loss(weak_probs: torch.Tensor, strong_logits: torch.Tensor,
                      kept: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the strong view against the weak view's argmax, counted only on the
    ``kept`` images; averaged over the whole unlabeled batch (as FixMatch does)."""
    pseudo = weak_probs.detach().float().argmax(dim=1)
    per_image = F.cross_entropy(strong_logits.float(), pseudo, reduction="none")
    return (per_image * kept.float()).mean()


def confident_pseudo_label_loss(weak_probs: torch.Tensor, strong_logits: torch.Tensor,
                                threshold: float | torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor]:
    """``pseudo_label_loss`` on the ``confident`` images; returns it and the fraction of
    images used."""
    kept = confident(weak_probs, threshold)
    return pseudo_label_loss(weak_probs, strong_logits, kept), kept.float().mean()


@dataclass
class FixMatchConfig(MethodConfig):
    name: str = "fixmatch"
    source_view: View = View.weak
    target_view: View = View.weak  # it reads unlabeled images (its own weak and strong views)
    predict: Predict = Predict.a  # one head
    threshold: float = 0.95  # confidence above which a weak-view argmax becomes a pseudo label
    weight: float = 1.0  # lambda_u
    dist_align: bool = False  # distribution alignment (ReMixMatch) of the weak-view probabilities


class FixMatch(Method):
    name = "fixmatch"
    options = FixMatchConfig
    summary = "FixMatch: confident weak-view pseudo labels train the strong view"
    metrics = ("mask_rate",)  # the share of unlabeled images above the threshold
    order = 70
    ranges = {"threshold": (0, 1, False), "weight": (0, None, False)}

    def __init__(self, cfg, model, num_classes: int):
        super().__init__(cfg, model, num_classes)
        self.dist_align = DistributionAlignment(num_classes) if cfg.dist_align else None

    def views(self) -> dict[str, tuple[str, ...]]:
        return {"source": (self.cfg.source_view,), "target": ("weak", "strong")}

    def bars(self, probs: torch.Tensor, batch: Batch) -> float | torch.Tensor:
        """The confidence each unlabeled image must reach (FixMatch: one fixed number; the
        methods built on it set one per image)."""
        return self.cfg.threshold

    def extra_terms(self, probs: torch.Tensor, strong_logits: torch.Tensor,
                    kept: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms beside the pseudo labels' (none here; ``kept``: the images used)."""
        return {}

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        labeled, weak, strong = self.forward_all(batch.source[self.cfg.source_view],
                                                 batch.target["weak"], batch.target["strong"])
        probs = torch.softmax(weak.logits[0].detach().float(), dim=1)
        if self.dist_align is not None:
            probs = self.dist_align(probs)
        kept = confident(probs, self.bars(probs, batch))
        return {"cls": self.supervised_loss(labeled, batch.labels),
                "pseudo": self.cfg.weight * pseudo_label_loss(probs, strong.logits[0], kept),
                **self.extra_terms(probs, strong.logits[0], kept),
                "mask_rate": kept.float().mean()}
