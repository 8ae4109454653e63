"""Learnable datasets with every split the real one has, in the real on-disk formats.

MNIST: idx files ``train-*`` and ``t10k-*`` in torchvision's ``MNIST/raw/`` layout. CIFAR-10: the
five pickled ``data_batch_N`` files and ``test_batch`` (protocol 2, the official keys). Image
folders: ``train/`` and ``test/`` of class folders of PNGs (the ImageNet layout). Each class
lights up its own band of rows, so a few epochs learn it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from mnist_files import write_idx
from PIL import Image

#: Samples written per split (CIFAR: per split, spread over its files).
TRAIN, TEST = 160, 40


def banded(rng: np.random.Generator, n: int, height: int, width: int, classes: int = 10):
    """``n`` uint8 (height, width) images whose class is the band of rows that is bright."""
    labels = rng.integers(0, classes, n)
    images = rng.integers(0, 60, (n, height, width))
    band = height // classes
    for i, label in enumerate(labels):
        images[i, band * label : band * label + band, :] = 255
    return images.astype(np.uint8), [int(v) for v in labels]


def write_mnist_splits(root: Path) -> Path:
    """MNIST train (160) and test (40) splits under ``root/MNIST/raw``."""
    rng = np.random.default_rng(0)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", TRAIN), ("t10k", TEST)):
        images, labels = banded(rng, n, 28, 28)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, 0x803)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.array(labels), 0x801)
    return root


def write_cifar10_splits(root: Path) -> Path:
    """CIFAR-10 train (5 files of 32) and test (40) batches under ``root/cifar-10-batches-py``."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    files = [(f"data_batch_{i}", TRAIN // 5) for i in range(1, 6)] + [("test_batch", TEST)]
    for name, n in files:
        images, labels = banded(rng, n, 32, 32)
        data = np.repeat(images[:, None], 3, axis=1).reshape(n, 3072)  # rows of R, then G, then B
        names = [f"{i}.png" for i in range(n)]
        batch = {"batch_label": name, "labels": labels, "data": data, "filenames": names}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": TRAIN // 5}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def write_image_split(
    folder: Path, n_per_class: int, size: tuple[int, int] = (16, 16), seed: int = 0
) -> None:
    """Three classes of RGB PNGs of ``size`` (height, width) in ``folder/<class>/``."""
    rng = np.random.default_rng(seed)
    for label, cls in enumerate(("ant", "bee", "cat")):
        (folder / cls).mkdir(parents=True)
        for i in range(n_per_class):
            grey = rng.integers(0, 60, size, dtype=np.uint8)
            grey[label * 5 : label * 5 + 5] = 255
            Image.fromarray(np.stack([grey] * 3, axis=-1)).save(folder / cls / f"{i}.png")
