"""Margin Disparity Discrepancy for classification (Zhang et al., ICML 2019), with tllib's
semantics.

The main head's logits ``y`` give the pseudo labels h = argmax y (no gradient through them);
an adversarial head gives ``y_adv``. With margin gamma:

    MDD = gamma * mean_s log softmax(y_adv^s)[h^s]  +  mean_t log(1 - softmax(y_adv^t)[h^t])

(the first term is -gamma times the cross-entropy of the adversarial head against the main
head's labels on the source; the logarithm of the second is tllib's ``shift_log``,
log(min(x + 1e-6, 1))). The adversarial head maximises MDD; the features, behind a
gradient-reversal layer, minimise it: the method adds ``-trade_off * MDD`` to its loss.

tllib adds the per-image source and target terms before averaging, which needs equal batch
sizes; the means are taken apart here, the same number where tllib's is defined.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shift_log(x: torch.Tensor, offset: float = 1e-6) -> torch.Tensor:
    """log(min(x + offset, 1)): finite where x is 0."""
    return torch.log(torch.clamp(x + offset, max=1.0))


class ClassificationMarginDisparityDiscrepancy(nn.Module):
    """MDD between source and target (see the module docstring); a scalar to maximise over
    the adversarial head."""

    def __init__(self, margin: float = 4.0):
        super().__init__()
        self.margin = margin

    def forward(self, y_s: torch.Tensor, y_s_adv: torch.Tensor, y_t: torch.Tensor,
                y_t_adv: torch.Tensor) -> torch.Tensor:
        h_s, h_t = y_s.argmax(dim=1), y_t.argmax(dim=1)
        y_s_adv, y_t_adv = (y if y.dtype == torch.float64 else y.float()  # bf16: float32
                            for y in (y_s_adv, y_t_adv))
        source = -self.margin * F.cross_entropy(y_s_adv, h_s)
        away = shift_log(1.0 - torch.softmax(y_t_adv, dim=1))
        target = away.gather(1, h_t.unsqueeze(1)).squeeze(1).mean()
        return source + target
