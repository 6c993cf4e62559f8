"""Pseudo-negative labels: choosing them (vectorised, any number of classes) and learning
from them (method.md sections 2 and 3)."""

from __future__ import annotations

import torch

STRATEGIES = ("random", "lowest", "sampled", "threshold", "targeted", "runner_up")


def select_negatives(probs: torch.Tensor, k: int, strategy: str = "random", *,
                     tau: float = 0.05, replacement: bool = False, confidence: float = 0.0,
                     generator: torch.Generator | None = None,
                     learner_probs: torch.Tensor | None = None,
                     allowed: torch.Tensor | None = None,
                     protected: torch.Tensor | None = None,
                     ceiling: float | torch.Tensor | None = None) -> torch.Tensor:
    """Boolean mask (B, C) of the pseudo-negative classes of each image.

    ``probs`` are the generator's class probabilities (B, C). The generator's argmax is never
    chosen. ``random``, ``lowest`` and ``sampled`` mark min(k, C-1) classes per image
    (``random`` with ``replacement`` marks 1..k, as the authors' code); ``threshold`` marks the
    classes with probability below ``tau``, at most k of them, lowest first; ``targeted`` marks,
    among the classes with generator probability below ``tau``, the k to which the learner
    (``learner_probs``, detached) gives the most probability: the negatives that are both
    reliable and still wrong in the learner, where the loss has a gradient; ``runner_up`` is
    ``targeted`` that never marks the learner's own argmax. Images whose top
    probability is below ``confidence`` get no negatives. ``allowed`` (C,) bool, if given: the
    only classes that may be marked (the others are skipped, and the next candidates taken).
    ``protected`` (B,) class indices, if given: also never marked, as the argmax is: the
    generator's own argmax where ``probs`` were reshaped first (distribution alignment).
    ``ceiling`` (a number or one per image), if given: images whose top probability reaches it
    get no negatives (PNL stacked on a thresholding method: negatives only where the positive
    labels' bar leaves an image out).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown selection strategy {strategy!r}; choose one of {STRATEGIES}")
    if strategy in ("targeted", "runner_up") and learner_probs is None:
        raise ValueError(f"selection {strategy!r} needs the learner's probabilities")
    probs = probs.detach().float()
    batch, classes = probs.shape
    mask = torch.zeros_like(probs, dtype=torch.bool)
    count = min(k, classes - 1)
    if batch == 0 or count <= 0:
        return mask
    top = probs.argmax(dim=1, keepdim=True)
    device = probs.device

    if strategy == "random" and replacement:
        draws = torch.randint(0, classes - 1, (batch, k), generator=generator, device=device)
        draws = draws + (draws >= top).long()  # skip over the argmax
        mask.scatter_(1, draws, True)
        if allowed is not None:
            mask &= allowed.to(device)
        if protected is not None:
            mask.scatter_(1, protected.view(-1, 1).to(device), False)
    else:
        if strategy == "random":
            score = torch.rand(batch, classes, generator=generator, device=device)
        elif strategy == "lowest":
            score = -probs
        elif strategy == "sampled":
            # Gumbel-top-k: k distinct classes drawn with probability proportional to 1 - p.
            u = torch.rand(batch, classes, generator=generator, device=device)
            score = torch.log((1 - probs).clamp_min(1e-12)) - torch.log(-torch.log(
                u.clamp(1e-12, 1 - 1e-7)))
        elif strategy == "threshold":
            score = torch.where(probs < tau, -probs, torch.full_like(probs, float("-inf")))
        else:  # targeted, runner_up
            learner = learner_probs.detach().float()
            score = torch.where(probs < tau, learner, torch.full_like(probs, float("-inf")))
            if strategy == "runner_up":
                score = score.scatter(1, learner.argmax(dim=1, keepdim=True), float("-inf"))
        score = score.scatter(1, top, float("-inf"))
        if protected is not None:
            score = score.scatter(1, protected.view(-1, 1).to(device), float("-inf"))
        if allowed is not None:
            score = score.masked_fill(~allowed.to(device), float("-inf"))
        values, chosen = score.topk(count, dim=1)
        mask.scatter_(1, chosen, values > float("-inf"))
    top = probs.max(dim=1, keepdim=True).values
    if confidence > 0:
        mask &= top >= confidence
    if ceiling is not None:
        bar = torch.as_tensor(ceiling, dtype=top.dtype, device=top.device)
        mask &= top < (bar.view(-1, 1) if bar.dim() else bar)
    return mask


def negative_learning_loss(logits: torch.Tensor, negatives: torch.Tensor,
                           eps: float = 1e-7) -> torch.Tensor:
    """``mean_u (1/|N(u)|) sum_{c in N(u)} -log(1 - p(c|u) + eps)``.

    The mean runs over the images that have at least one negative; with none in the batch the
    loss is exactly 0 (and still part of the graph), never NaN.
    """
    probs = torch.softmax(logits.float(), dim=1)
    per_class = -torch.log((1 - probs).clamp_min(0) + eps) * negatives
    counts = negatives.sum(dim=1)
    per_image = per_class.sum(dim=1) / counts.clamp_min(1)
    used = (counts > 0).sum()
    return per_image.sum() / used.clamp_min(1)
