"""The digits CNNs of tllib (LeNet for 28x28 grey, DTN for 32x32 RGB), without their heads.

Each returns flat features; ``out_features`` tells their width. ``mean`` and ``std`` are the
normalisation their inputs take (tllib's digits scripts: ``--norm-mean 0.5 --norm-std 0.5``), as
a timm model's pretrained configuration tells its own.
"""

from __future__ import annotations

from torch import nn


class LeNet(nn.Sequential):
    input_size = 28
    mean, std = (0.5,), (0.5,)

    def __init__(self, in_channels: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, 20, kernel_size=5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(20, 50, kernel_size=5),
            nn.Dropout2d(p=0.5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(start_dim=1),
            nn.Linear(50 * 4 * 4, 500),
            nn.ReLU(),
            nn.Dropout(p=0.5),
        )
        self.out_features = 500


class DTN(nn.Sequential):
    input_size = 32
    mean, std = (0.5,), (0.5,)

    def __init__(self, in_channels: int = 3):
        super().__init__(
            nn.Conv2d(in_channels, 64, kernel_size=5, stride=2, padding=2),
            nn.BatchNorm2d(64),
            nn.Dropout2d(0.1),
            nn.ReLU(),
            nn.Conv2d(64, 128, kernel_size=5, stride=2, padding=2),
            nn.BatchNorm2d(128),
            nn.Dropout2d(0.3),
            nn.ReLU(),
            nn.Conv2d(128, 256, kernel_size=5, stride=2, padding=2),
            nn.BatchNorm2d(256),
            nn.Dropout2d(0.5),
            nn.ReLU(),
            nn.Flatten(start_dim=1),
            nn.Linear(256 * 4 * 4, 512),
            nn.BatchNorm1d(512),
            nn.ReLU(),
            nn.Dropout(),
        )
        self.out_features = 512
