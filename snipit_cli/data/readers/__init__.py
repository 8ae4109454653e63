"""Readers for the real on-disk formats: CIFAR pickled batches, MNIST idx, image folders.

Each returns a map-style dataset of ``(uint8 tensor C,H,W, int label)``; only the split that
is read must be present, so a calibration-only folder works. Each dataset's ``origin`` names the
files it read, so two splits that would read the same images can be told apart from two that don't.
One module per format (:mod:`.cifar`, :mod:`.idx`, :mod:`.folders`); :func:`read_dataset` picks one.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from snipit_cli.data.readers.cifar import CIFAR, read_cifar
from snipit_cli.data.readers.folders import ImageFolderImages, image_folder_split
from snipit_cli.data.readers.idx import MNIST, read_mnist
from snipit_cli.errors import DataError


def read_dataset(kind: str, root: Path, split: str, download: bool, path: Path | None = None) -> Dataset:
    """Dispatch a dataset kind to its reader."""
    if kind in CIFAR:
        return read_cifar(kind, root, split, download)
    if kind in MNIST:
        return read_mnist(kind, root, split, download)
    if kind == "imagefolder":
        assert path is not None
        return ImageFolderImages(image_folder_split(path, split))
    raise DataError(f"no reader for dataset kind {kind!r}")
