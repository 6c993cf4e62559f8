"""What sits on top of a backbone: bottleneck, classifier heads, domain discriminator."""

from __future__ import annotations

import torch
from torch import nn


def bottleneck(in_features: int, dim: int) -> nn.Module:
    """tllib's bottleneck (Linear, BatchNorm, ReLU); ``dim=0`` means none."""
    if dim <= 0:
        return nn.Identity()
    return nn.Sequential(nn.Linear(in_features, dim), nn.BatchNorm1d(dim), nn.ReLU())


class Classifier(nn.Module):
    """Backbone -> optional bottleneck -> one or more linear heads on the same features.

    Each head gets its own random initialisation, which is what keeps PNL's two heads apart
    at the start.
    """

    def __init__(self, backbone: nn.Module, backbone_features: int, num_classes: int,
                 heads: int = 1, bottleneck_dim: int = 0):
        super().__init__()
        self.backbone = backbone
        self.bottleneck = bottleneck(backbone_features, bottleneck_dim)
        self.features_dim = bottleneck_dim if bottleneck_dim > 0 else backbone_features
        self.num_classes = num_classes
        self.heads = nn.ModuleList(nn.Linear(self.features_dim, num_classes) for _ in range(heads))
        self.channels_last = False

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self.channels_last:
            # Here, after any torch.cat of inputs: cat of 1-channel images falls back to NCHW.
            x = x.contiguous(memory_format=torch.channels_last)
        features = self.bottleneck(self.backbone(x))
        return features, [head(features) for head in self.heads]

    def param_groups(self, lr_mult_backbone: float) -> list[dict]:
        return [
            {"params": list(self.backbone.parameters()), "lr_mult": lr_mult_backbone},
            {"params": list(self.bottleneck.parameters()) + list(self.heads.parameters()),
             "lr_mult": 1.0},
        ]


class DomainDiscriminator(nn.Sequential):
    """tllib's discriminator (two hidden layers with BatchNorm); returns one logit per row.

    A logit instead of tllib's sigmoid output, so the loss can use BCE-with-logits, which is
    the same function but stable and allowed under autocast.
    """

    def __init__(self, in_features: int, hidden: int = 1024):
        super().__init__(
            nn.Linear(in_features, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )
