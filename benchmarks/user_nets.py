"""Small CNNs written the way users write them, for the structured coverage benchmark and tests.

Not snipit code: each copies a habit of public training scripts that a dependency graph has to
survive -- option-A zero-padded shortcuts (the CIFAR ResNet of He et al., as in most ResNet-20
repositories), a hard-coded ``view(-1, 16 * 5 * 5)`` (PyTorch's CIFAR tutorial), functional ops
and channel chunk/concat in ``forward``, and a VGG built from a config list.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LambdaLayer(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


class BasicBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            pad = planes // 4  # option A: subsample and zero-pad the channels, no parameters
            self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20A(nn.Module):
    """CIFAR ResNet-20 with option-A (zero-padded) shortcuts, 3x32x32 inputs."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(BasicBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        return self.linear(out)


class LeNet5(nn.Module):
    """PyTorch's CIFAR-10 tutorial network: the flatten width is written into ``forward``."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class SplitNet(nn.Module):
    """Functional ops in ``forward``: channel chunk and concat (ShuffleNet-style), interpolate,
    a mean over the spatial dims instead of a pooling module."""

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, 2, 1)
        self.branch = nn.Conv2d(16, 16, 3, 1, 1)
        self.mix = nn.Conv2d(32, 64, 1)
        self.up = nn.Conv2d(64, 64, 3, 1, 1)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.stem(x))
        a, b = x.chunk(2, dim=1)
        x = torch.cat([a, F.relu(self.branch(b))], dim=1)
        x = F.relu(self.mix(x))
        y = F.max_pool2d(x, 2)
        x = x + F.interpolate(self.up(y), size=x.shape[-2:], mode="nearest")
        return self.head(x.mean(dim=(2, 3)))


CFG = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGG11(nn.Module):
    """A CIFAR VGG-11 from a config list, flattened with ``x.view(x.size(0), -1)``."""

    def __init__(self, num_classes=10):
        super().__init__()
        layers, c = [], 3
        for v in CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        out = self.features(x)
        out = out.view(out.size(0), -1)
        return self.classifier(out)


USER_NETS = {"ResNet20A": ResNet20A, "LeNet5": LeNet5, "SplitNet": SplitNet, "VGG11": VGG11}
