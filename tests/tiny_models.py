"""Tiny architectures for tests; also used through ``--arch tests/tiny_models.py:NAME``."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv-bn-relu x2, global pool, linear: 3x8x8 inputs by default."""

    def __init__(self, num_classes: int = 5, in_channels: int = 3, width: int = 4):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TinyMLP(nn.Module):
    """flatten -> 16 hidden -> classes, for 1x4x4 inputs by default."""

    def __init__(self, num_classes: int = 3, in_features: int = 16, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TiedMLP(nn.Module):
    """Two Linear layers sharing one weight, to check tied tensors survive save/load."""

    def __init__(self, num_classes: int = 6):
        super().__init__()
        self.a = nn.Linear(num_classes, num_classes)
        self.b = nn.Linear(num_classes, num_classes)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x.flatten(1))))


def tiny_cnn_factory(num_classes: int = 5) -> nn.Module:
    """A factory function (not a class), for the metadata safety rule."""
    return TinyCNN(num_classes=num_classes)


class DetachedCNN(TinyCNN):
    """Runs its forward without autograd: no gradient can reach any weight."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return super().forward(x)


class ZeroOutputCNN(TinyCNN):
    """Output that does not depend on the weights: every gradient is exactly zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * 0.0


class DriftingCNN(TinyCNN):
    """Counts its calls in a Python attribute: an exporter bakes the count in at trace time, so the
    exported graph computes something else than the next eager call (a parity check must see it)."""

    def __init__(self, num_classes: int = 5):
        super().__init__(num_classes)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return super().forward(x) * self.calls


class DataDependentCNN(TinyCNN):
    """Branches on a tensor's value in Python: torch.export cannot trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out if float(out.sum()) > 0 else -out
