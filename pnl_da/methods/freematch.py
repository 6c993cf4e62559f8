"""FreeMatch (Wang et al., ICLR 2023): FixMatch's hard pseudo labels under self-adaptive
thresholds (a global moving average of the confidence, scaled per class by the moving average
of the predictions), plus a fairness term that keeps the kept images' predictions spread over
the classes. USB's semantics (semilearn/algorithms/freematch); see pnl_da/losses/thresholds.py."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pnl_da.losses.thresholds import SelfAdaptiveThreshold, fairness_loss
from pnl_da.methods.base import Batch
from pnl_da.methods.fixmatch import FixMatch, FixMatchConfig


@dataclass
class FreeMatchConfig(FixMatchConfig):
    name: str = "freematch"
    ema_decay: float = 0.999  # m: the moving averages behind the thresholds
    # w_f, the fairness term: USB's classic-CV configs (its argument default is 0.01)
    fairness_weight: float = 0.001


class FreeMatch(FixMatch):
    name = "freematch"
    options = FreeMatchConfig
    summary = "FreeMatch: self-adaptive (global and per-class) thresholds, fairness term"
    order = 72
    ranges = {**FixMatch.ranges, "ema_decay": (0, 1, False), "fairness_weight": (0, None, False)}

    @classmethod
    def inert_options(cls, cfg) -> dict[str, str]:
        return {**super().inert_options(cfg),
                "threshold": "FreeMatch sets its own thresholds (method.ema_decay)"}

    def __init__(self, cfg, model, num_classes: int):
        super().__init__(cfg, model, num_classes)
        self.threshold = SelfAdaptiveThreshold(num_classes, cfg.ema_decay)

    def logged_values(self) -> dict[str, float]:
        return {"threshold": round(float(self.threshold.tau), 5)}

    def bars(self, probs: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.threshold(probs)

    def extra_terms(self, probs: torch.Tensor, strong_logits: torch.Tensor,
                    kept: torch.Tensor) -> dict[str, torch.Tensor]:
        fairness = fairness_loss(strong_logits, kept, self.threshold.p_model,
                                 self.threshold.label_hist)
        return {"fairness": self.cfg.fairness_weight * fairness}
