"""Distribution alignment of pseudo-label probabilities (Berthelot et al., ReMixMatch 2020).

A model trained from very few labels tends to starve some classes: it rarely predicts them, so
confident pseudo labels of those classes are rare and the bias grows. Distribution alignment
divides each prediction by a running mean of the model's predictions on unlabeled images and
multiplies by the expected class distribution (uniform: the labeled subset is class-balanced),
then renormalises, so under-predicted classes are lifted before pseudo labels are chosen.
"""

from __future__ import annotations

import torch
from torch import nn


class DistributionAlignment(nn.Module):
    """``p~ = normalise(p * target / running_mean(p))``; the running mean is a buffer (so it is
    checkpointed) updated from each training batch with ``momentum``, as USB's DistAlign."""

    def __init__(self, num_classes: int, momentum: float = 0.999):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("model_mean", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("target", torch.full((num_classes,), 1.0 / num_classes))

    @torch.no_grad()
    def observe(self, probs: torch.Tensor) -> torch.Tensor:
        """Fold a batch of probabilities into the running mean (in training only); returns the
        running mean."""
        if self.training and len(probs):
            self.model_mean.mul_(self.momentum).add_(probs.detach().float().mean(0),
                                                     alpha=1 - self.momentum)
        return self.model_mean

    @torch.no_grad()
    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        probs = probs.detach().float()
        self.observe(probs)
        aligned = probs * (self.target / self.model_mean.clamp_min(1e-6))
        return aligned / aligned.sum(dim=1, keepdim=True)
