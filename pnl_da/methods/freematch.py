"""FreeMatch (Wang et al., ICLR 2023): FixMatch's hard pseudo labels under self-adaptive
thresholds (a global moving average of the confidence, scaled per class by the moving average
of the predictions), plus a fairness term that keeps the kept images' predictions spread over
the classes. USB's semantics (semilearn/algorithms/freematch); see pnl_da/losses/thresholds.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pnl_da.choice import Predict, View
from pnl_da.losses.thresholds import SelfAdaptiveThreshold, fairness_loss
from pnl_da.methods.base import Batch, Method
from pnl_da.methods.fixmatch import confident_pseudo_label_loss
from pnl_da.methods.options import MethodConfig


@dataclass
class FreeMatchConfig(MethodConfig):
    name: str = "freematch"
    source_view: View = View.weak
    target_view: View = View.weak  # it reads unlabeled images (its own weak and strong views)
    predict: Predict = Predict.a  # one head
    ema_decay: float = 0.999  # m: the moving averages behind the thresholds
    weight: float = 1.0  # lambda_u
    # w_f, the fairness term: USB's classic-CV configs (its argument default is 0.01)
    fairness_weight: float = 0.001


class FreeMatch(Method):
    name = "freematch"
    options = FreeMatchConfig
    summary = "FreeMatch: self-adaptive (global and per-class) thresholds, fairness term"
    metrics = ("mask_rate",)  # the share of unlabeled images above their threshold
    order = 72
    ranges = {"ema_decay": (0, 1, False), "weight": (0, None, False),
              "fairness_weight": (0, None, False)}

    def __init__(self, cfg, model, num_classes: int):
        super().__init__(cfg, model, num_classes)
        self.threshold = SelfAdaptiveThreshold(num_classes, cfg.ema_decay)

    def views(self) -> dict[str, tuple[str, ...]]:
        return {"source": (self.cfg.source_view,), "target": ("weak", "strong")}

    def logged_values(self) -> dict[str, float]:
        return {"threshold": round(float(self.threshold.tau), 5)}

    def losses(self, batch: Batch, step: int) -> dict[str, torch.Tensor]:
        labeled, weak, strong = self.forward_all(batch.source[self.cfg.source_view],
                                                 batch.target["weak"], batch.target["strong"])
        probs = torch.softmax(weak.logits[0].detach().float(), dim=1)
        thresholds = self.threshold(probs)
        unsup, used = confident_pseudo_label_loss(probs, strong.logits[0], thresholds)
        mask = probs.max(dim=1).values >= thresholds
        fairness = fairness_loss(strong.logits[0], mask, self.threshold.p_model,
                                 self.threshold.label_hist)
        return {"cls": self.supervised_loss(labeled, batch.labels),
                "pseudo": self.cfg.weight * unsup,
                "fairness": self.cfg.fairness_weight * fairness,
                "mask_rate": used}
