"""Fixtures that write tiny datasets in the real on-disk formats into ``tmp_path``.

CIFAR: pickled dicts as in ``cifar-10-batches-py`` / ``cifar-100-python`` (protocol 2, as the
official files). MNIST: idx files (big-endian header, uint8 payload) in torchvision's
``<root>/<Name>/raw/`` layout. Image folders: one sub-folder per class of PNG files.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

IDX_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension

CIFAR_FOLDER = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
CIFAR_FILES = {
    "cifar10": {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
    "cifar100": {"train": ["train"], "test": ["test"]},
}


@dataclass
class WrittenSplit:
    """What a fixture wrote for one split: images in the file's own layout, and labels."""

    images: np.ndarray
    labels: list[int]


def write_cifar_batch(
    path: Path, data: np.ndarray, labels: list[int], label_key: str, protocol: int = 2
) -> None:
    """One batch file, with the keys the official batches carry."""
    batch = {
        "batch_label": f"batch {path.name}",
        label_key: labels,
        "data": data,
        "filenames": [f"img_{i:04d}.png" for i in range(len(labels))],
    }
    if label_key == "fine_labels":
        batch["coarse_labels"] = [v % 20 for v in labels]
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=protocol)


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """An idx file: big-endian int32 magic and dimensions, then the uint8 payload."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def make_cifar(tmp_path: Path) -> Callable[..., dict[str, WrittenSplit]]:
    """Write CIFAR-10/100 batches of random images under ``tmp_path/<folder>/``.

    Returns the written data per split; a train split of CIFAR-10 is five files whose
    contents are concatenated in the returned arrays.
    """

    def make(
        name: str = "cifar10", splits: tuple[str, ...] = ("test",), per_file: int = 3, seed: int = 0
    ) -> dict[str, WrittenSplit]:
        rng = np.random.default_rng(seed)
        folder = tmp_path / CIFAR_FOLDER[name]
        folder.mkdir(exist_ok=True)
        classes = 10 if name == "cifar10" else 100
        label_key = "labels" if name == "cifar10" else "fine_labels"
        written = {}
        for split in splits:
            images, labels = [], []
            for file in CIFAR_FILES[name][split]:
                data = rng.integers(0, 256, (per_file, 3072), dtype=np.uint8)
                file_labels = [int(v) for v in rng.integers(0, classes, per_file)]
                write_cifar_batch(folder / file, data, file_labels, label_key)
                images.append(data)
                labels.extend(file_labels)
            written[split] = WrittenSplit(np.concatenate(images), labels)
        if name == "cifar10":
            meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": per_file}
            (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
        else:
            meta = {
                "fine_label_names": [f"fine{i}" for i in range(100)],
                "coarse_label_names": [f"coarse{i}" for i in range(20)],
            }
            (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
        return written

    return make


@pytest.fixture
def make_mnist() -> Callable[..., WrittenSplit]:
    """Write an MNIST-format split (images and labels idx files) into a given folder."""

    def make(folder: Path, prefix: str = "t10k", n: int = 4, gz: bool = True, seed: int = 0) -> WrittenSplit:
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        folder.mkdir(parents=True, exist_ok=True)
        suffix = ".gz" if gz else ""
        for kind, array, magic in (
            ("images-idx3", images, IDX_IMAGES_MAGIC),
            ("labels-idx1", labels, IDX_LABELS_MAGIC),
        ):
            raw = idx_bytes(array, magic)
            path = folder / f"{prefix}-{kind}-ubyte{suffix}"
            path.write_bytes(gzip.compress(raw) if gz else raw)
        return WrittenSplit(images, [int(v) for v in labels])

    return make


@pytest.fixture
def image_folder(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """Three classes of 12x10 PNGs (one greyscale); returns the root and each file's pixels.

    Class folders are created out of order so that sorting is what puts them in order.
    """
    root = tmp_path / "images"
    rng = np.random.default_rng(1)
    pixels: dict[str, np.ndarray] = {}
    for cls, names in (("dog", ["0"]), ("ant", ["0", "1"]), ("cat", ["0"])):
        (root / cls).mkdir(parents=True)
        for name in names:
            path = root / cls / f"{name}.png"
            if (cls, name) == ("ant", "1"):
                array = rng.integers(0, 256, (10, 12), dtype=np.uint8)
                Image.fromarray(array).save(path)  # mode "L"
            else:
                array = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
                Image.fromarray(array).save(path)  # mode "RGB"
            pixels[f"{cls}/{name}.png"] = array
    return root, pixels


@pytest.fixture
def cifar_batch_writer() -> Callable[..., None]:
    """:func:`write_cifar_batch`, for tests that hand-make a batch's contents."""
    return write_cifar_batch


@pytest.fixture
def idx_writer() -> Callable[[np.ndarray, int], bytes]:
    """:func:`idx_bytes`, for tests that hand-make (or break) an idx file."""
    return idx_bytes
