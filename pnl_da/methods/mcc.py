"""MCC (Jin et al., ECCV 2020): the supervised loss plus the Minimum Class Confusion of the
target predictions (pnl_da/losses/confusion.py), with tllib's semantics: temperature 2.5,
entropy-weighted class-confusion matrix, trade-off 1, both domains in one forward pass."""

from __future__ import annotations

from dataclasses import dataclass

from pnl_da.losses.confusion import MinimumClassConfusionLoss
from pnl_da.methods.base import Batch, Method
from pnl_da.methods.options import MethodConfig


@dataclass
class MCCConfig(MethodConfig):
    name: str = "mcc"
    temperature: float = 2.5  # softmax temperature of the confusion matrix
    trade_off: float = 1.0  # weight of the confusion loss


class MCC(Method):
    name = "mcc"
    options = MCCConfig
    summary = "MCC: minimum class confusion of the target predictions (no discriminator)"
    order = 25
    ranges = {"temperature": (0, None, True), "trade_off": (0, None, False)}

    def __init__(self, cfg, model, num_classes: int):
        super().__init__(cfg, model, num_classes)
        self.confusion = MinimumClassConfusionLoss(cfg.temperature)

    def losses(self, batch: Batch, step: int):
        source, target = self.forward_all(batch.source[self.cfg.source_view],
                                          batch.target[self.cfg.target_view])
        return {"cls": self.supervised_loss(source, batch.labels),
                "transfer": self.cfg.trade_off * self.confusion(target.logits[0])}
