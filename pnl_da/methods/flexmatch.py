"""FlexMatch (Zhang et al., NeurIPS 2021): FixMatch's hard pseudo labels under curriculum
thresholds, one per class, that rise with how many unlabeled images the model already predicts
confidently as that class. USB's semantics (semilearn/algorithms/flexmatch); see
pnl_da/losses/thresholds.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pnl_da.choice import Predict, View
from pnl_da.losses.thresholds import CurriculumThreshold
from pnl_da.methods.base import Batch, Method
from pnl_da.methods.fixmatch import confident_pseudo_label_loss
from pnl_da.methods.options import MethodConfig


@dataclass
class FlexMatchConfig(MethodConfig):
    name: str = "flexmatch"
    source_view: View = View.weak
    target_view: View = View.weak  # it reads unlabeled images (its own weak and strong views)
    predict: Predict = Predict.a  # one head
    threshold: float = 0.95  # tau: the highest threshold, and the bar an image is remembered at
    warmup: bool = True  # the never-remembered images count in the normaliser (threshold warm-up)
    weight: float = 1.0  # lambda_u


class FlexMatch(Method):
    name = "flexmatch"
    options = FlexMatchConfig
    summary = "FlexMatch: curriculum class thresholds from each class's learning effect"
    metrics = ("mask_rate",)  # the share of unlabeled images above their threshold
    order = 71
    ranges = {"threshold": (0, 1, True), "weight": (0, None, False)}

    def __init__(self, cfg, model, num_classes: int):
        super().__init__(cfg, model, num_classes)
        self.threshold = CurriculumThreshold(num_classes, cfg.threshold, cfg.warmup)

    def bind_sizes(self, source: int, target: int) -> None:
        self.threshold.size(target)

    def views(self) -> dict[str, tuple[str, ...]]:
        return {"source": (self.cfg.source_view,), "target": ("weak", "strong")}

    def logged_values(self) -> dict[str, float]:
        """The mean class threshold (it climbs from 0 towards method.threshold)."""
        return {"threshold": round(float(self.threshold.class_thresholds().mean()), 5)}

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        labeled, weak, strong = self.forward_all(batch.source[self.cfg.source_view],
                                                 batch.target["weak"], batch.target["strong"])
        probs = torch.softmax(weak.logits[0].detach().float(), dim=1)
        thresholds = self.threshold(probs, batch.target_index)
        unsup, used = confident_pseudo_label_loss(probs, strong.logits[0], thresholds)
        return {"cls": self.supervised_loss(labeled, batch.labels),
                "pseudo": self.cfg.weight * unsup,
                "mask_rate": used}
