"""Augmentation of whole batches on the training device: no per-sample Python.

Images arrive as float tensors in [0, 1], (B, C, H, W). Every random number comes from the
generator passed in, so a run is reproducible and resumable.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _uniform(n: int, bound: float, gen: torch.Generator, device) -> torch.Tensor:
    return (torch.rand(n, generator=gen, device=device) * 2 - 1) * bound


def random_affine(x: torch.Tensor, aug, gen: torch.Generator,
                  chosen: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Rotate, shear, scale and translate each image by its own random amounts; with
    ``chosen`` (op name -> (B,) bool), only the images whose draw chose that op get it."""
    n, device = x.shape[0], x.device

    def only(name, values):
        return values if chosen is None else values * chosen[name].view(-1, *[1] * (
            values.dim() - 1)).to(values.dtype)

    angle = only("rotate", _uniform(n, math.radians(aug.rotate), gen, device))
    shear = only("shear", _uniform(n, math.radians(aug.shear), gen, device))
    scale = 1 + only("scale", _uniform(n, aug.scale, gen, device))
    # the grid spans [-1, 1]
    shift = only("translate", _uniform(2 * n, 2 * aug.translate, gen, device).view(n, 2))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # theta maps output to input coordinates; dividing by scale enlarges the content.
    theta = torch.stack([
        torch.stack([cos, -sin + torch.tan(shear), shift[:, 0]], dim=1),
        torch.stack([sin, cos, shift[:, 1]], dim=1),
    ], dim=1)
    theta[:, :, :2] /= scale.view(n, 1, 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    padding = getattr(aug, "padding", "zeros")  # reflection: CIFAR's padded random crop
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)


def random_flip(x: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Horizontal flip of each image with probability ``prob``."""
    flip = (torch.rand(x.shape[0], generator=gen, device=x.device) < prob).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(3), x)


def random_brightness(x: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    shift = _uniform(x.shape[0], amount, gen, x.device).to(x.dtype).view(-1, 1, 1, 1)
    return (x + shift).clamp(0, 1)


def random_solarize(x: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """With probability ``prob``, invert the pixels above 0.5 (RandAugment's Solarize)."""
    apply = (torch.rand(x.shape[0], generator=gen, device=x.device) < prob).view(-1, 1, 1, 1)
    return torch.where(apply & (x > 0.5), 1 - x, x)


def random_contrast(x: torch.Tensor, amount: float, gen: torch.Generator) -> torch.Tensor:
    factor = 1 + _uniform(x.shape[0], amount, gen, x.device).to(x.dtype).view(-1, 1, 1, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * factor + mean).clamp(0, 1)


def random_erase(x: torch.Tensor, prob: float, gen: torch.Generator) -> torch.Tensor:
    """Cutout: with probability ``prob`` blank one square of a third of the image side."""
    n, _, h, w = x.shape
    side = max(1, h // 3)
    top = torch.randint(0, h - side + 1, (n,), generator=gen, device=x.device)
    left = torch.randint(0, w - side + 1, (n,), generator=gen, device=x.device)
    apply = torch.rand(n, generator=gen, device=x.device) < prob
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + side).view(n, 1, 1))
              & (cols >= left.view(n, 1, 1)) & (cols < (left + side).view(n, 1, 1)))
    mask = (inside & apply.view(n, 1, 1)).unsqueeze(1)
    return x.masked_fill(mask, 0.0)


# The ops RandAugment draws from, where the view configures them (a magnitude above 0); each is
# drawn at a random magnitude up to its setting, as FixMatch's RandAugment does.
RAND_OPS = ("rotate", "shear", "scale", "translate", "contrast", "brightness", "solarize")


def rand_choice(aug, n: int, gen: torch.Generator, device) -> dict[str, torch.Tensor]:
    """RandAugment's draw: for each image, ``aug.rand_ops`` distinct ops among the configured
    ones and identity (which does nothing), uniformly; op name -> (B,) bool."""
    pool = [op for op in RAND_OPS if getattr(aug, op, 0.0)] + ["identity"]
    count = min(int(aug.rand_ops), len(pool))
    order = torch.rand(n, len(pool), generator=gen, device=device).argsort(dim=1)[:, :count]
    picked = torch.zeros(n, len(pool), dtype=torch.bool, device=device)
    picked.scatter_(1, order, True)
    masks = {op: picked[:, i] for i, op in enumerate(pool)}
    return {op: masks.get(op, torch.zeros(n, dtype=torch.bool, device=device))
            for op in RAND_OPS}


def changes_images(aug) -> bool:
    """Whether a view's settings change anything (all zero: the identity)."""
    return any(bool(getattr(aug, op, 0)) for op in (*RAND_OPS, "erase", "flip", "rand_ops"))


def augment(x: torch.Tensor, aug, gen: torch.Generator) -> torch.Tensor:
    if getattr(aug, "rand_ops", 0):
        return rand_augment(x, aug, gen)
    if getattr(aug, "flip", 0.0):
        x = random_flip(x, aug.flip, gen)
    if aug.rotate or aug.shear or aug.scale or aug.translate:
        x = random_affine(x, aug, gen)
    if aug.contrast:
        x = random_contrast(x, aug.contrast, gen)
    if getattr(aug, "brightness", 0.0):
        x = random_brightness(x, aug.brightness, gen)
    if getattr(aug, "solarize", 0.0):
        x = random_solarize(x, aug.solarize, gen)
    if aug.erase:
        x = random_erase(x, aug.erase, gen)
    return x


def rand_augment(x: torch.Tensor, aug, gen: torch.Generator) -> torch.Tensor:
    """RandAugment-style view (Cubuk et al. 2020, as FixMatch uses it): the flip, then
    ``aug.rand_ops`` ops per image drawn from the configured ones (``rand_choice``), then
    Cutout (``erase``) as always."""
    n, device = x.shape[0], x.device
    if getattr(aug, "flip", 0.0):
        x = random_flip(x, aug.flip, gen)
    chosen = rand_choice(aug, n, gen, device)
    if any(chosen[op].any() for op in ("rotate", "shear", "scale", "translate")):
        x = random_affine(x, aug, gen, chosen)

    def where(op, changed):
        return torch.where(chosen[op].view(-1, 1, 1, 1), changed, x)

    if aug.contrast:
        x = where("contrast", random_contrast(x, aug.contrast, gen))
    if getattr(aug, "brightness", 0.0):
        x = where("brightness", random_brightness(x, aug.brightness, gen))
    if getattr(aug, "solarize", 0.0):
        x = where("solarize", random_solarize(x, aug.solarize, gen))
    if aug.erase:
        x = random_erase(x, aug.erase, gen)
    return x
