"""Learnable MNIST-format data for training tests: each class lights up its own band of rows."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """An idx file: big-endian magic and dimensions, then the uint8 payload."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_learnable_mnist(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` 28x28 images + labels as ``root/MNIST/raw/t10k-*`` (the test split only, like ../shared)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = rng.integers(0, 60, (n, 28, 28))
    for i, label in enumerate(labels):
        images[i, 2 * label : 2 * label + 3, :] = 255
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "t10k-images-idx3-ubyte", images, 0x803)
    write_idx(raw / "t10k-labels-idx1-ubyte", labels, 0x801)
    return root
