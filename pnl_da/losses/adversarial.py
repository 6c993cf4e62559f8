"""Adversarial domain alignment with tllib's semantics: DANN and CDAN (+E, randomized map).

Both put a gradient-reversal layer between the features and a domain discriminator and score
source as 1, target as 0 with binary cross-entropy; the discriminator sees source and target
in one batch, as in tllib, so its BatchNorm statistics mix both domains.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pnl_da.models.grl import WarmStartGRL


def _domain_labels(n_source: int, n_target: int, like: torch.Tensor) -> torch.Tensor:
    return torch.cat([like.new_ones(n_source), like.new_zeros(n_target)])


def domain_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of images the discriminator puts in the right domain (in percent)."""
    return ((logits.squeeze(1) > 0).float() == labels).float().mean() * 100


class DomainAdversarialLoss(nn.Module):
    """DANN: ``0.5 * (BCE(D(f_s), 1) + BCE(D(f_t), 0))`` through gradient reversal.

    With per-image weights ``w_s``, ``w_t`` (PADA's class weights, partial-set adaptation)
    each BCE is ``mean_i w_i * bce_i``, as tllib's ``DomainAdversarialLoss(f_s, f_t, w_s, w_t)``:
    the mean over the images, not normalised by the weights' sum."""

    def __init__(self, discriminator: nn.Module, grl: WarmStartGRL):
        super().__init__()
        self.discriminator, self.grl = discriminator, grl

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, w_s: torch.Tensor | None = None,
                w_t: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.discriminator(self.grl(torch.cat([f_s, f_t]))).float()
        labels = _domain_labels(len(f_s), len(f_t), logits)
        d_s, d_t = logits[: len(f_s), 0], logits[len(f_s):, 0]
        loss = 0.5 * (F.binary_cross_entropy_with_logits(d_s, labels[: len(f_s)], weight=w_s)
                      + F.binary_cross_entropy_with_logits(d_t, labels[len(f_s):], weight=w_t))
        return loss, domain_accuracy(logits.detach(), labels)


def class_weighted(class_weight: torch.Tensor, labels: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """PADA's weights of DANN's discriminator loss from class weights ``gamma`` (C,): each
    source image weighs ``gamma[y]``, each target image the batch's mean of those (tllib's
    ``get_class_weight_for_adversarial_loss``)."""
    w_s = class_weight[labels].float()
    return w_s, w_s.mean().expand(len(labels))


class MultiLinearMap(nn.Module):
    """The outer product f (x) g of features (B, F) and predictions (B, C), flattened: (B, F*C)."""

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (g.unsqueeze(2) * f.unsqueeze(1)).flatten(1)


class RandomizedMultiLinearMap(nn.Module):
    """``(f R_f) * (g R_g) / sqrt(d)``: a d-dimensional random estimate of f (x) g.

    R_f and R_g are fixed Gaussian matrices kept as buffers: they move with ``.to(device)``
    and are saved in checkpoints, so the map is the same on any device and after a resume.
    """

    def __init__(self, features_dim: int, num_classes: int, output_dim: int = 1024):
        super().__init__()
        self.output_dim = output_dim
        self.register_buffer("Rf", torch.randn(features_dim, output_dim))
        self.register_buffer("Rg", torch.randn(num_classes, output_dim))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (f @ self.Rf.to(f.dtype)) * (g @ self.Rg.to(g.dtype)) / math.sqrt(self.output_dim)


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p + 1e-5)).sum(dim=1)


class ConditionalDomainAdversarialLoss(nn.Module):
    """CDAN: the discriminator sees the map of features and (detached) class predictions.

    With entropy conditioning (CDAN+E) each image is weighted by ``1 + exp(-H(g))``,
    normalised so the weights sum to the batch size.
    """

    def __init__(self, discriminator: nn.Module, grl: WarmStartGRL, multilinear: nn.Module,
                 entropy_conditioning: bool = False):
        super().__init__()
        self.discriminator, self.grl, self.map = discriminator, grl, multilinear
        self.entropy_conditioning = entropy_conditioning

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor, p_s: torch.Tensor,
                p_t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.cat([f_s, f_t])
        g = torch.cat([p_s, p_t]).detach().to(f.dtype)
        logits = self.discriminator(self.grl(self.map(f, g))).float()
        labels = _domain_labels(len(f_s), len(f_t), logits)
        weight = None
        if self.entropy_conditioning:
            weight = 1.0 + torch.exp(-entropy(g.float()))
            weight = weight / weight.sum() * len(weight)
        loss = F.binary_cross_entropy_with_logits(logits[:, 0], labels, weight=weight)
        return loss, domain_accuracy(logits.detach(), labels)
