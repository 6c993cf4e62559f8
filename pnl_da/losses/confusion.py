"""Minimum Class Confusion (Jin et al., ECCV 2020), with tllib's semantics.

On a batch of target logits ``z`` (B x C) and a temperature T:

    p_i      = softmax(z_i / T)
    w_i      = B (1 + exp(-H(p_i))) / sum_j (1 + exp(-H(p_j)))     (detached; H with eps 1e-5)
    M        = sum_i w_i p_i^T p_i                                  (C x C)
    M'[a, b] = M[a, b] / sum_c M[b, c]
    loss     = (sum_ab M'[a, b] - trace M') / C

Confident images (low entropy) weigh more. The normalisation divides column b by the sum of
row b, as tllib's code does by broadcasting (the paper normalises each row by its own sum;
the two agree where M is symmetric, which the weights break): the numbers are tllib's.
"""

from __future__ import annotations

import torch
from torch import nn


def tllib_entropy(p: torch.Tensor) -> torch.Tensor:
    """Per-row entropy with tllib's epsilon inside the logarithm."""
    return -(p * torch.log(p + 1e-5)).sum(dim=1)


class MinimumClassConfusionLoss(nn.Module):
    """The class confusion of the target predictions off the diagonal, averaged over classes
    (see the module docstring for the formula)."""

    def __init__(self, temperature: float = 2.5):
        super().__init__()
        self.temperature = temperature

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        batch, classes = logits.shape
        logits = logits if logits.dtype == torch.float64 else logits.float()  # bf16: float32
        p = torch.softmax(logits / self.temperature, dim=1)
        weight = 1.0 + torch.exp(-tllib_entropy(p).detach())
        weight = (batch * weight / weight.sum()).unsqueeze(1)
        confusion = (p * weight).T @ p
        confusion = confusion / confusion.sum(dim=1)  # column b over row b's sum (tllib)
        return (confusion.sum() - confusion.trace()) / classes
