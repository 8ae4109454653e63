"""Adapting dataset images to what the model expects: channels, size, normalisation."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms.v2 import functional as TF

from snipit_cli.models.input_spec import Size


class ToModelInput(nn.Module):
    """uint8 (C, H, W) image -> float, channel-adapted, resized, normalised (C', H', W')."""

    def __init__(self, size: Size, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.size, self.mean, self.std = size, list(mean), list(std)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        channels, height, width = self.size
        x = TF.to_dtype(image, torch.float32, scale=True)
        if x.shape[0] == 1 and channels == 3:
            x = x.expand(3, -1, -1)  # grey -> 3 channels, as grey images are shown in RGB
        elif x.shape[0] == 3 and channels == 1:
            x = TF.rgb_to_grayscale(x)
        if tuple(x.shape[-2:]) != (height, width):
            x = TF.resize(x, [height, width], antialias=True)
        return TF.normalize(x, self.mean, self.std)
