"""Exponential moving averages of a model's weights: Mean Teacher's teacher, and the averaged
weights a run can be scored with (``method.eval_ema``, as USB scores every algorithm)."""

from __future__ import annotations

import torch
from torch import nn


def warmed_decay(decay: float, updates: int) -> float:
    """``min(decay, 1 - 1/(n + 1))`` after n updates (the Mean Teacher authors' warm-up): early
    on the average is the plain mean of the weights so far, instead of one dominated by the
    random initial weights (with 0.999 and a 2000-step run those would still weigh 45% at
    step 800)."""
    return min(decay, 1.0 - 1.0 / (updates + 1))


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, decay: float) -> None:
    """average = decay * average + (1 - decay) * model, for weights; buffers (BatchNorm
    statistics) are copied."""
    for a, m in zip(average.parameters(), model.parameters()):
        a.lerp_(m.detach(), 1.0 - decay)
    for a, m in zip(average.buffers(), model.buffers()):
        a.copy_(m)
