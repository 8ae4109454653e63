"""Readers for the real on-disk formats: CIFAR pickled batches, MNIST idx, image folders.

Each returns a map-style dataset of ``(uint8 tensor C,H,W, int label)``; only the split that
is read must be present, so a calibration-only folder works. Each dataset's ``origin`` names the
files it read, so two splits that would read the same images can be told apart from two that don't.
"""

from __future__ import annotations

import gzip
import pickle
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from snipit_cli.errors import DataError

# Customary normalisation of each dataset, used when the model carries none.
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@dataclass(frozen=True)
class DatasetInfo:
    """Native image shape, class count and customary mean/std of a dataset."""

    name: str
    channels: int
    size: tuple[int, int] | None
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    size_note: str = ""  # why ``size`` is None, for the error that asks for --input-size


class TensorImages(Dataset):
    """uint8 images (N, C, H, W) and int labels held as tensors; ``origin``: the files read."""

    def __init__(
        self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo, origin: tuple[str, ...] = ()
    ):
        self.images, self.labels, self.info, self.origin = images, labels, info, origin

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


# ---------------------------------------------------------------- CIFAR


@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    files: dict[str, tuple[str, ...]]
    label_key: str
    info: DatasetInfo
    tv_class: str


_CIFAR = {
    "cifar10": _CifarLayout(
        "cifar-10-batches-py",
        {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)},
        "labels",
        DatasetInfo("cifar10", 3, (32, 32), 10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "CIFAR10",
    ),
    "cifar100": _CifarLayout(
        "cifar-100-python",
        {"train": ("train",), "test": ("test",)},
        "fine_labels",
        DatasetInfo("cifar100", 3, (32, 32), 100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        "CIFAR100",
    ),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a CIFAR batch cannot run code."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),  # protocol 5 (Python 3.14's default)
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("builtins", "bytearray"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise DataError(f"{path} is not a valid CIFAR batch: {exc}") from exc


def read_cifar(name: str, root: Path, split: str, download: bool) -> TensorImages:
    """CIFAR-10/100 python batches under ``root/<folder>/`` (or ``root`` itself)."""
    layout = _CIFAR[name]
    folder = root if root.name == layout.folder else root / layout.folder
    files = [folder / f for f in layout.files[split]]
    if download and not all(f.is_file() for f in files):
        _torchvision_download(layout.tv_class, root, split)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        other = _other_split(split)
        present = all((folder / f).is_file() for f in layout.files[other])
        raise DataError(
            f"no {name} {split} split in {folder} (missing {', '.join(missing)}); "
            + (f"only the {other} split is there (--split {other} reads it); or " if present else "")
            + f"point --data-root at the folder holding {layout.folder}/, or pass --download"
        )
    images, labels = [], []
    for f in files:
        data, batch_labels = _cifar_arrays(_unpickle(f), name, layout.label_key, f)
        images.append(torch.from_numpy(data))
        labels.extend(batch_labels)
    origin = tuple(str(f.resolve()) for f in files)
    return TensorImages(torch.cat(images), torch.tensor(labels), layout.info, origin)


def _cifar_arrays(batch: Any, name: str, label_key: str, path: Path) -> tuple[np.ndarray, list[int]]:
    """The (N, 3, 32, 32) images and N labels of one batch, or a DataError naming the file."""
    try:
        data = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = [int(v) for v in batch[label_key]]
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise DataError(f"{path} is not a valid {name} batch: {exc!r}") from exc
    if len(labels) != len(data):
        raise DataError(f"{path} is not a valid {name} batch: {len(data)} images but {len(labels)} labels")
    return data, labels


def _other_split(split: str) -> str:
    return "test" if split == "train" else "train"


# ---------------------------------------------------------------- MNIST


_MNIST_INFO = {
    "mnist": (DatasetInfo("mnist", 1, (28, 28), 10, (0.1307,), (0.3081,)), "MNIST"),
    "fashionmnist": (DatasetInfo("fashionmnist", 1, (28, 28), 10, (0.2860,), (0.3530,)), "FashionMNIST"),
}
_MNIST_PREFIX = {"train": "train", "test": "t10k"}


def read_mnist(name: str, root: Path, split: str, download: bool) -> TensorImages:
    """MNIST-format idx files (gzipped or not) in torchvision's layout ``root/<Name>/raw/``.

    torchvision's ``MNIST`` class insists on all four files; this reads only the split asked for,
    with torchvision's own idx readers.
    """
    info, tv_class = _MNIST_INFO[name]
    prefix = _MNIST_PREFIX[split]
    candidates = [root / tv_class / "raw", root / "raw", root]
    if download and not any(_find_idx(d, prefix, "images-idx3") for d in candidates):
        _torchvision_download(tv_class, root, split)
    for folder in candidates:
        images, labels = _find_idx(folder, prefix, "images-idx3"), _find_idx(folder, prefix, "labels-idx1")
        if images and labels:
            break
    else:
        other = _other_split(split)
        present = any(_find_idx(d, _MNIST_PREFIX[other], "images-idx3") for d in candidates)
        raise DataError(
            f"no {name} {split} split under {root / tv_class / 'raw'} (need {prefix}-images-idx3-ubyte"
            f"[.gz] and {prefix}-labels-idx1-ubyte[.gz]); "
            + (f"only the {other} split is there (--split {other} reads it); or " if present else "")
            + f"point --data-root at the folder holding {tv_class}/, or pass --download"
        )
    from torchvision.datasets.mnist import read_image_file, read_label_file

    x = _read_idx(images, read_image_file)
    y = _read_idx(labels, read_label_file)
    if x.dim() != 3 or len(x) != len(y):
        raise DataError(f"{images} and {labels} do not match: {tuple(x.shape)} images, {len(y)} labels")
    return TensorImages(x.unsqueeze(1), y.long(), info, (str(images.resolve()), str(labels.resolve())))


def _find_idx(folder: Path, prefix: str, kind: str) -> Path | None:
    for suffix in ("", ".gz"):
        path = folder / f"{prefix}-{kind}-ubyte{suffix}"
        if path.is_file():
            return path
    return None


def _read_idx(path: Path, reader: Callable[[str], torch.Tensor]) -> torch.Tensor:
    try:
        if path.suffix != ".gz":
            return reader(str(path))
        with tempfile.TemporaryDirectory() as tmp:
            plain = Path(tmp) / path.stem
            with gzip.open(path, "rb") as src:
                plain.write_bytes(src.read())
            return reader(str(plain))
    except (OSError, AssertionError, RuntimeError, ValueError, EOFError, TypeError, KeyError) as exc:
        raise DataError(f"{path} is not a valid idx file: {exc or type(exc).__name__}") from exc


# ---------------------------------------------------------------- image folders


#: ImageNet's layout: DIR/train, DIR/val, DIR/test hold the splits; test falls back to val.
SPLIT_FOLDERS = {"train": ("train",), "test": ("test", "val")}
#: Image headers read to find the folder's image size (seeded choice; all if fewer).
SIZE_SAMPLE = 16


def image_folder_split(root: Path, split: str) -> Path:
    """The folder of ``split`` under ``root``: ``root/train``, ``root/test`` (else ``root/val``);
    a ``root`` with none of these sub-folders is a single split, read for either."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist; check the path in --data")
    present = [name for name in ("train", "val", "test") if (root / name).is_dir()]
    if not present:
        return root
    for name in SPLIT_FOLDERS[split]:
        if (root / name).is_dir():
            return root / name
    wanted = " or ".join(f"{name}/" for name in SPLIT_FOLDERS[split])
    raise DataError(
        f"no {split} split in image folder {root}: it has {', '.join(f'{p}/' for p in present)} but no "
        f"{wanted}"
    )


class ImageFolderImages(Dataset):
    """torchvision's ``ImageFolder`` (class per sub-folder), decoded lazily, errors naming the file.

    The image size is read from the headers of a seeded handful of files: when they agree it is
    the folder's native size (a model that does not say its input size takes it).
    """

    def __init__(self, root: Path):
        from torchvision.datasets import ImageFolder

        if not root.is_dir():
            raise DataError(f"image folder {root} does not exist; check the path in --data")
        try:
            self.folder = ImageFolder(str(root))
        except (FileNotFoundError, RuntimeError) as exc:
            raise DataError(
                f"{root} is not an image folder (one sub-folder per class of images): {exc}"
            ) from exc
        self.origin = (str(root.resolve()),)
        self.classes: list[str] = list(self.folder.classes)
        sizes = _header_sizes([path for path, _ in self.folder.samples])
        size = next(iter(sizes)) if len(sizes) == 1 else None
        note = "" if size else _size_note(sizes)
        self.info = DatasetInfo(
            f"imagefolder:{root}", 3, size, len(self.classes), *IMAGENET_STATS, size_note=note
        )

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms.v2.functional import pil_to_tensor

        path, label = self.folder.samples[i]
        try:
            with Image.open(path) as img:
                return pil_to_tensor(img.convert("RGB")), label
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot decode image {path}: {exc}; remove or replace the file") from exc


def _header_sizes(paths: list[str]) -> set[tuple[int, int]]:
    """(height, width) of a seeded sample of the images, from their headers (no decoding).

    A file that does not open is skipped here: reading it later names it.
    """
    from PIL import Image, UnidentifiedImageError

    picked = paths if len(paths) <= SIZE_SAMPLE else random.Random(0).sample(paths, SIZE_SAMPLE)
    sizes = set()
    for path in picked:
        try:
            with Image.open(path) as img:
                sizes.add((img.height, img.width))
        except (UnidentifiedImageError, OSError):
            continue
    return sizes


def _size_note(sizes: set[tuple[int, int]]) -> str:
    if not sizes:
        return "none of its sampled images opens"
    shown = ", ".join(f"{h}x{w}" for h, w in sorted(sizes)[:4])
    return f"its images differ in size ({shown}{', ...' if len(sizes) > 4 else ''}, height x width)"


# ---------------------------------------------------------------- download


def _torchvision_download(tv_class: str, root: Path, split: str) -> None:
    """Fetch a dataset with torchvision's own downloader (only with --download)."""
    import torchvision.datasets as tvd

    try:
        getattr(tvd, tv_class)(str(root), train=split == "train", download=True)
    except Exception as exc:
        raise DataError(f"could not download {tv_class} into {root}: {exc}") from exc


def read_dataset(kind: str, root: Path, split: str, download: bool, path: Path | None = None) -> Dataset:
    """Dispatch a dataset kind to its reader."""
    if kind in _CIFAR:
        return read_cifar(kind, root, split, download)
    if kind in _MNIST_INFO:
        return read_mnist(kind, root, split, download)
    if kind == "imagefolder":
        assert path is not None
        return ImageFolderImages(image_folder_split(path, split))
    raise DataError(f"no reader for dataset kind {kind!r}")


__all__ = ["DatasetInfo", "read_dataset"]
