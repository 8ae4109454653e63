"""An architecture for the checkpoint-layout tests, named by ``--arch path/to/layout_models.py:Holder``."""

from __future__ import annotations

import torch
from tiny_models import TinyCNN
from torch import nn


class Holder(nn.Module):
    """A model whose own child is called ``module``: its keys start with ``module.`` (as DDP's do)
    and must be kept as they are."""

    def __init__(self) -> None:
        super().__init__()
        self.module = TinyCNN()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
