"""MDD (Zhang et al., ICML 2019): the supervised loss plus the Margin Disparity Discrepancy
between an adversarial head and the main head (pnl_da/losses/margin.py), with tllib's
semantics: margin 4, trade-off 1, both heads two-layer perceptrons of width 1024 with dropout
0.5 on the bottleneck features, the adversarial one behind a gradient-reversal layer whose
coefficient rises with the iteration to 0.1 (tllib's MDD schedule, not DANN's)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from pnl_da.errors import UsageError
from pnl_da.losses.margin import ClassificationMarginDisparityDiscrepancy
from pnl_da.methods.base import Batch, Method
from pnl_da.methods.options import MethodConfig
from pnl_da.models.grl import reverse_gradient


@dataclass
class MDDConfig(MethodConfig):
    name: str = "mdd"
    margin: float = 4.0  # gamma
    trade_off: float = 1.0
    width: int = 1024  # hidden units of both heads
    # the reversal coefficient 2 (hi - lo) / (1 + exp(-alpha i / iters)) - (hi - lo) + lo at
    # iteration i: from 0 towards hi = grl_max (tllib: alpha 1, lo 0, hi 0.1, 1000 iterations)
    grl_max: float = 0.1
    grl_iters: int = 1000


def mdd_grl_coeff(step: int, high: float = 0.1, iters: int = 1000, alpha: float = 1.0) -> float:
    """tllib's WarmStartGradientReverseLayer(alpha=1, lo=0, hi=0.1, max_iters=1000) at
    iteration ``step``."""
    return 2.0 * high / (1.0 + math.exp(-alpha * step / iters)) - high


def perceptron(features: int, width: int, classes: int) -> nn.Sequential:
    """tllib's MDD head: Linear, ReLU, Dropout(0.5), Linear; weights N(0, 0.01), biases 0."""
    head = nn.Sequential(nn.Linear(features, width), nn.ReLU(), nn.Dropout(0.5),
                         nn.Linear(width, classes))
    for layer in (head[0], head[3]):
        nn.init.normal_(layer.weight, 0.0, 0.01)
        nn.init.zeros_(layer.bias)
    return head


class MDD(Method):
    name = "mdd"
    options = MDDConfig
    summary = "MDD: margin disparity discrepancy against an adversarial head"
    order = 27
    ranges = {"margin": (0, None, True), "trade_off": (0, None, False),
              "width": (0, None, True), "grl_max": (0, None, False), "grl_iters": (0, None, True)}

    def __init__(self, cfg, model, num_classes: int):
        super().__init__(cfg, model, num_classes)
        if len(model.heads) != 1:
            raise UsageError("mdd predicts with one head; leave method.heads at 1")
        # the prediction head is MDD's perceptron: evaluation, predict and export use it
        model.heads[0] = perceptron(model.features_dim, cfg.width, num_classes)
        self.adversary = perceptron(model.features_dim, cfg.width, num_classes)
        self.discrepancy = ClassificationMarginDisparityDiscrepancy(cfg.margin)
        self.coeff = 0.0

    def extra_param_groups(self) -> list[dict]:
        return [{"params": list(self.adversary.parameters()), "lr_mult": 1.0}]

    def logged_values(self) -> dict[str, float]:
        return {"grl_coeff": round(self.coeff, 5)}

    def losses(self, batch: Batch, step: int):
        cfg = self.cfg
        source, target = self.forward_all(batch.source[cfg.source_view],
                                          batch.target[cfg.target_view])
        self.coeff = mdd_grl_coeff(step, cfg.grl_max, cfg.grl_iters)
        n = len(source.features)
        adversarial = self.adversary(
            reverse_gradient(torch.cat([source.features, target.features]), self.coeff))
        mdd = self.discrepancy(source.logits[0], adversarial[:n], target.logits[0],
                               adversarial[n:])
        # the adversarial head maximises MDD; the reversed gradient makes the features
        # minimise it
        return {"cls": self.supervised_loss(source, batch.labels),
                "transfer": -cfg.trade_off * mdd}

