"""Gradient reversal: identity forward, gradient times -lambda backward."""

from __future__ import annotations

import math

import torch
from torch import nn


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return grad_output.neg() * ctx.coeff, None


def reverse_gradient(x: torch.Tensor, coeff: float) -> torch.Tensor:
    return _ReverseGradient.apply(x, coeff)


def warm_start_coeff(progress: float, alpha: float = 10.0) -> float:
    """Ganin et al.'s schedule 2 / (1 + exp(-alpha p)) - 1, from 0 at p=0 towards 1 at p=1."""
    p = min(max(progress, 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-alpha * p)) - 1.0


class WarmStartGRL(nn.Module):
    """Gradient reversal whose coefficient follows ``warm_start_coeff`` of this run's progress.

    The trainer sets ``progress`` (step / total steps) before each step, so the schedule spans
    the run's own length rather than a fixed number of iterations.
    """

    def __init__(self, alpha: float = 10.0):
        super().__init__()
        self.alpha = alpha
        self.progress = 0.0

    @property
    def coeff(self) -> float:
        return warm_start_coeff(self.progress, self.alpha)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return reverse_gradient(x, self.coeff)
