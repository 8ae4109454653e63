"""Datasets with every split the real one has (train and test), in the real formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from split_files import write_cifar10_splits, write_image_split, write_mnist_splits


@pytest.fixture
def mnist_both(tmp_path: Path) -> Path:
    """MNIST idx files of both splits (160 train, 40 test)."""
    return write_mnist_splits(tmp_path / "mnist-both")


@pytest.fixture
def cifar_both(tmp_path: Path) -> Path:
    """CIFAR-10 pickled batches of both splits (160 train in five files, 40 test)."""
    return write_cifar10_splits(tmp_path / "cifar-root")


@pytest.fixture
def image_splits(tmp_path: Path) -> Path:
    """``images/train`` (3 classes x 8) and ``images/test`` (3 x 2) of 16x16 PNGs."""
    root = tmp_path / "images"
    write_image_split(root / "train", 8)
    write_image_split(root / "test", 2, seed=1)
    return root
