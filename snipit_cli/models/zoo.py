"""Small reference networks, named ``snipit:NAME``: the SNIP paper's MNIST nets and a small CNN.

They are what the pruning literature measures on (Lee et al. 2019, Table 1; Verdenius et al.
2020), small enough to train on a CPU, and buildable from a checkpoint's metadata without
running any user code.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


class LeNet300100(nn.Module):
    """LeNet-300-100 (LeCun et al. 1998): an MLP 784-300-100-10 on flattened 28x28 images."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28):
        super().__init__()
        self.fc1 = nn.Linear(in_chans * img_size * img_size, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.act = nn.ReLU()

    def forward(self, x):
        x = x.flatten(1)
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


class LeNet5Caffe(nn.Module):
    """LeNet-5-Caffe as in the SNIP paper: conv 20@5x5, pool, conv 50@5x5, pool, fc 500, fc 10."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, img_size: int = 28):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        side = ((img_size - 4) // 2 - 4) // 2
        self.fc3 = nn.Linear(50 * side * side, 500)
        self.fc4 = nn.Linear(500, num_classes)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        return self.fc4(self.act(self.fc3(x.flatten(1))))


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU blocks (32-64-128-128 channels) and an MLP head: enough channels and
    neurons for structured pruning to choose from, small enough to train on 2 CPU cores."""

    def __init__(self, num_classes: int = 10, in_chans: int = 1, width: int = 32):
        super().__init__()
        widths = (width, 2 * width, 4 * width, 4 * width)
        layers: list[nn.Module] = []
        channels = in_chans
        for i, out in enumerate(widths):
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            if i % 2 == 1:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, 256)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x):
        x = self.pool(self.features(x)).flatten(1)
        return self.fc2(self.act(self.fc1(x)))


#: ``snipit:NAME`` -> class. Classes only, so metadata naming them never calls arbitrary code.
ZOO: dict[str, Callable[..., nn.Module]] = {
    "lenet300-100": LeNet300100,
    "lenet5-caffe": LeNet5Caffe,
    "small-cnn": SmallCNN,
}
