"""Exponential moving averages of a model's weights: Mean Teacher's teacher, and the averaged
weights a run can be scored with (``method.eval_ema``, as USB scores every algorithm)."""

from __future__ import annotations

import torch
from torch import nn


def warmed_decay(decay: float, updates: torch.Tensor) -> torch.Tensor:
    """``min(decay, 1 - 1/(n + 1))`` after n updates (the Mean Teacher authors' warm-up): early
    on the average is the plain mean of the weights so far, instead of one dominated by the
    random initial weights (with 0.999 and a 2000-step run those would still weigh 45% at
    step 800). ``updates`` is the checkpointed counter; the result stays on its device, so a
    GPU step does not wait for the host. In float64, as Python's arithmetic was before."""
    return (1.0 - 1.0 / (updates.double() + 1)).clamp(max=decay)


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, decay: float | torch.Tensor) -> None:
    """average = decay * average + (1 - decay) * model, for weights; buffers (BatchNorm
    statistics) are copied."""
    weight = 1.0 - decay
    cast: dict[torch.dtype, torch.Tensor] = {}  # a tensor weight in each parameter's dtype,
    # rounded as a Python float weight would be
    for a, m in zip(average.parameters(), model.parameters()):
        w = weight
        if isinstance(weight, torch.Tensor):
            if a.dtype not in cast:
                cast[a.dtype] = weight.to(a.dtype)
            w = cast[a.dtype]
        a.lerp_(m.detach(), w)
    for a, m in zip(average.buffers(), model.buffers()):
        a.copy_(m)
