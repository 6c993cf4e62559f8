"""Consistency between two predictions of the same images (Mean Teacher, Dual Student)."""

from __future__ import annotations

import torch


def softmax_mse_per_image(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Squared distance of two softmaxes per image, divided by the class count (the scale of
    the Mean Teacher / Dual Student code and of USB); no gradient through the target."""
    p = torch.softmax(logits.float(), dim=1)
    q = torch.softmax(target_logits.detach().float(), dim=1)
    return ((p - q) ** 2).mean(dim=1)
