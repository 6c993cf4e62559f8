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
                 heads: int = 1, bottleneck_dim: int = 0, head_weight_norm: bool = False):
        super().__init__()
        self.backbone = backbone
        self.bottleneck = bottleneck(backbone_features, bottleneck_dim)
        self.features_dim = bottleneck_dim if bottleneck_dim > 0 else backbone_features
        self.num_classes = num_classes
        self.heads = nn.ModuleList(self._head(head_weight_norm) for _ in range(heads))
        self.channels_last = False
        self.prediction_heads = heads

    def _head(self, weight_norm: bool) -> nn.Module:
        head = nn.Linear(self.features_dim, self.num_classes)
        if weight_norm:  # Conv-Large's heads, as in the SSL papers' code
            from torch.nn.utils.parametrizations import weight_norm as wn

            head = wn(head)
        return head

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


class DualClassifier(nn.Module):
    """Two separate networks presented as one model with two prediction heads, so a two-model
    method (PNL's ``ssl.model=dual``) runs the same code as two heads on one backbone.

    ``forward`` returns network A's features and the logits ``[A_0, B_0, A_1, B_1, ...]``:
    each network's first head (its prediction) first, then any extra heads (pnl_paper's
    consistency heads). Each network keeps its own optimiser (see ``networks``).
    """

    def __init__(self, a: Classifier, b: Classifier):
        super().__init__()
        self.networks = nn.ModuleList([a, b])
        self.features_dim, self.num_classes = a.features_dim, a.num_classes
        self.prediction_heads = 2

    @property
    def heads(self) -> list[nn.Module]:
        return [self.networks[0].heads[0], self.networks[1].heads[0]]

    @property
    def channels_last(self) -> bool:
        return self.networks[0].channels_last

    @channels_last.setter
    def channels_last(self, value: bool) -> None:
        for net in self.networks:
            net.channels_last = value

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        (features, logits_a), (_, logits_b) = self.networks[0](x), self.networks[1](x)
        return features, [z for pair in zip(logits_a, logits_b) for z in pair]

    def param_groups(self, lr_mult_backbone: float) -> list[dict]:
        return [g for net in self.networks for g in net.param_groups(lr_mult_backbone)]
