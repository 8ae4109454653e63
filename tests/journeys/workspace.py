"""A user's working folder for the journeys: real-format datasets with every split the real ones
have, the user's own model code and checkpoint, and the checkpoints the README's commands read.

Layout (``ROOT``)::

    home/data/cifar-10-batches-py/     ~/data of the prune epilog (train + test batches)
    data-root/                          $SNIPIT_DATA: cifar-10-batches-py/, MNIST/raw/ (both splits)
    shared/data/mnist/MNIST/raw/        like ../shared/data/mnist: the MNIST *test* split only
    shared/data/cifar10-{train,test}-jpg/  like ../shared/data: CIFAR-10 as JPEG class folders
    images/val/<class>/*.jpg            an ImageNet-style validation folder (JPEG)
    work/                               the cwd: mynet.py, model.pt, sample_configs/, checkpoints
"""

from __future__ import annotations

import gzip
import importlib.util
import shutil
from pathlib import Path

import numpy as np
from journeys.commands import ROOT as REPO
from mnist_files import write_idx
from PIL import Image
from split_files import write_cifar10_splits

MYNET = '''"""A user's own model, written as people write them: functional ops in forward."""
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.relu(self.conv2(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))
'''


def write_mnist(raw: Path, splits: tuple[str, ...], n: int = 32, seed: int = 0) -> None:
    """Gzipped idx files, as the official downloads are, for each split asked for."""
    rng = np.random.default_rng(seed)
    raw.mkdir(parents=True)
    for split in splits:
        prefix = "train" if split == "train" else "t10k"
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, label in enumerate(labels):  # learnable: each class lights its own rows
            images[i, 2 * label : 2 * label + 3] = 255
        for kind, array, magic in (("images-idx3", images, 0x803), ("labels-idx1", labels, 0x801)):
            plain = raw / f"{prefix}-{kind}-ubyte"
            write_idx(plain, array, magic)
            (raw / f"{plain.name}.gz").write_bytes(gzip.compress(plain.read_bytes()))
            plain.unlink()


def write_jpeg_folder(folder: Path, classes: int = 2, per_class: int = 4, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        (folder / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"class{c}" / f"{i:04d}.jpg", quality=90)


def write_datasets(root: Path) -> None:
    write_cifar10_splits(root / "home" / "data")
    write_cifar10_splits(root / "data-root")
    write_mnist(root / "data-root" / "MNIST" / "raw", ("train", "test"))
    write_mnist(root / "shared" / "data" / "mnist" / "MNIST" / "raw", ("test",), n=64, seed=2)
    write_jpeg_folder(root / "images" / "val")
    # like ../shared/data's CIFAR-10 JPEG export: a train and a test folder, one sub-folder per class
    write_jpeg_folder(root / "shared" / "data" / "cifar10-train-jpg" / "train", classes=10, per_class=2)
    write_jpeg_folder(root / "shared" / "data" / "cifar10-test-jpg" / "test", classes=10, per_class=1, seed=1)


def write_user_files(work: Path) -> None:
    """mynet.py + model.pt (a plain state_dict saved with torch.save) + the repo's sample configs."""
    import torch

    work.mkdir(parents=True)
    (work / "mynet.py").write_text(MYNET)
    spec = importlib.util.spec_from_file_location("journeys_mynet", work / "mynet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    torch.save(module.Net().state_dict(), work / "model.pt")
    shutil.copytree(REPO / "sample_configs", work / "sample_configs")
