"""The standard networks of the semi-supervised literature, as feature extractors (the linear
heads live in :class:`pnl_da.models.heads.Classifier`).

* ``convlarge``: the 13-layer CNN ("Conv-Large") of Temporal Ensembling, Mean Teacher, Dual
  Student and the PNL paper: three blocks of 3x3 convolutions (128, 256, then 512 -> 256 -> 128
  with 1x1), max-pooling and dropout between blocks, every convolution weight-normalised and
  followed by BatchNorm and LeakyReLU(0.1), global average pooling to 128 features.
* ``wrn28_2``: the Wide ResNet 28-2 of FixMatch and USB (pre-activation blocks, BatchNorm
  momentum 0.001, LeakyReLU 0.1), 128 features.

Both take any input size from about 16 pixels up (32x32 CIFAR/SVHN, 28x28 MNIST).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def _wn_conv(cin: int, cout: int, kernel: int, padding: int) -> nn.Sequential:
    return nn.Sequential(weight_norm(nn.Conv2d(cin, cout, kernel, padding=padding)),
                         nn.BatchNorm2d(cout), nn.LeakyReLU(0.1))


class ConvLarge(nn.Module):
    input_size = None  # any size
    out_features = 128

    def __init__(self, channels: int = 3, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            _wn_conv(channels, 128, 3, 1), _wn_conv(128, 128, 3, 1), _wn_conv(128, 128, 3, 1),
            nn.MaxPool2d(2, 2), nn.Dropout(dropout),
            _wn_conv(128, 256, 3, 1), _wn_conv(256, 256, 3, 1), _wn_conv(256, 256, 3, 1),
            nn.MaxPool2d(2, 2), nn.Dropout(dropout),
            _wn_conv(256, 512, 3, 0), _wn_conv(512, 256, 1, 0), _wn_conv(256, 128, 1, 0),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class _WideBlock(nn.Module):
    """Pre-activation residual block; the first block of a network activates the input for
    both branches (FixMatch's ``activate_before_residual``)."""

    def __init__(self, cin: int, cout: int, stride: int, activate_before_residual: bool):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, momentum=0.001)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout, momentum=0.001)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.act = nn.LeakyReLU(0.1)
        self.shortcut = (nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
                         if cin != cout or stride != 1 else None)
        self.activate_before_residual = activate_before_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))
        residual = pre if self.activate_before_residual or self.shortcut is None else x
        out = self.conv2(self.act(self.bn2(self.conv1(pre))))
        if self.shortcut is not None:
            # the projection sees the activated input, as the residual branch does
            residual = self.shortcut(pre)
        return out + residual


class WideResNet(nn.Module):
    input_size = None

    def __init__(self, channels: int = 3, depth: int = 28, widen: int = 2):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError("Wide ResNet depth must be 6n + 4")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False)]
        for group, (cin, cout, stride) in enumerate(zip(widths[:-1], widths[1:], (1, 2, 2))):
            for i in range(n):
                layers.append(_WideBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1,
                                         activate_before_residual=group == 0 and i == 0))
        layers += [nn.BatchNorm2d(widths[-1], momentum=0.001), nn.LeakyReLU(0.1),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.out_features = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def wrn28_2(channels: int = 3) -> WideResNet:
    return WideResNet(channels, depth=28, widen=2)
