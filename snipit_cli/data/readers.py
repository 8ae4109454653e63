"""Readers for the real on-disk formats: CIFAR pickled batches, MNIST idx, image folders.

Each returns a map-style dataset of ``(uint8 tensor C,H,W, int label)``; only the split that
is read must be present, so a calibration-only folder works. Each dataset's ``origin`` names the
files it read, so two splits that would read the same images can be told apart from two that don't.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import random
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    """Unpickles plain containers and numpy arrays only: a CIFAR batch cannot run code.

    The callables it allows are wrapped so that what they build stays within the file: an
    allow-listed ``bytearray(2**62)`` or ``_reconstruct`` of a 2**40-element array would allocate
    without bound, and ``_codecs.encode`` with an unknown codec fails deep inside; each refuses
    instead, with ``pickle.UnpicklingError``. Everything else a crafted file can do (APPEND on a
    dict, a huge integer) raises in the unpickler and is caught by :func:`_unpickle`.
    """

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

    def __init__(self, file: Any, limit: int):
        super().__init__(file, encoding="latin1")
        self.limit = limit  # no array or buffer is larger than the file it came from

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")
        found = super().find_class(module, name)
        if name == "bytearray":
            return self._bytearray
        if name == "encode":
            return _latin1_encode
        if name == "ndarray":
            return _NDARRAY  # only as _reconstruct's argument: ndarray(shape) itself allocates
        if name == "_reconstruct":
            return self._reconstruct(found)
        return found

    def _reconstruct(self, reconstruct: Callable) -> Callable:
        def bounded(cls: Any, shape: Any, dtype: Any) -> np.ndarray:
            if cls is not _NDARRAY:
                raise pickle.UnpicklingError("_reconstruct of anything but a numpy array is refused")
            return reconstruct(np.ndarray, self._bounded(shape, np.dtype(dtype)), dtype)

        return bounded

    def _bytearray(self, *args: Any) -> bytearray:
        """``bytearray(bytes)`` only (what pickle writes); ``bytearray(n)`` allocates n bytes."""
        if len(args) > 1 or (args and not isinstance(args[0], bytes | bytearray)):
            raise pickle.UnpicklingError("bytearray(...) of anything but bytes is refused")
        return bytearray(*args)

    def _bounded(self, shape: Any, dtype: np.dtype) -> Any:
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise pickle.UnpicklingError(f"array shape {shape!r} is not a tuple of sizes")
        if math.prod(shape) * dtype.itemsize > self.limit:
            raise pickle.UnpicklingError(f"an array of shape {shape} is larger than the file")
        return shape


#: Stands for ``numpy.ndarray`` in an unpickled batch; only ``_reconstruct`` accepts it.
_NDARRAY = object()


def _latin1_encode(text: Any, codec: Any = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it (str -> latin-1 bytes), nothing else."""
    if not isinstance(text, str) or codec not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with codec {codec!r} is refused (pickles use latin1)")
    return text.encode("latin1", errors)


def _unpickle(path: Path) -> dict:
    """The batch's object; any failure of a crafted file (every exception of unpickling, memory
    included) is a DataError naming it."""
    try:
        with path.open("rb") as f:
            return _ArrayUnpickler(f, limit=os.fstat(f.fileno()).st_size).load()
    except Exception as exc:
        raise DataError(f"{path} is not a valid CIFAR batch: {exc or type(exc).__name__}") from exc


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
    """The (N, 3, 32, 32) images and N labels of one batch, or a DataError naming the file.

    ``data`` must be the uint8 array real batches hold: a list would be expanded by numpy, and a
    list of N references to one row is a small file that expands to N rows.
    """
    bad = f"{path} is not a valid {name} batch"
    if not isinstance(batch, dict):
        raise DataError(f"{bad}: it holds a {type(batch).__name__}, not a dict of data and labels")
    for key in ("data", label_key):
        if key not in batch:
            raise DataError(f"{bad}: no {key!r} entry (it has {', '.join(map(repr, list(batch)[:6]))})")
    data, labels = batch["data"], batch[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.size % 3072:
        what = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DataError(f"{bad}: 'data' is a {what}, not uint8 rows of 3072 (3x32x32) values")
    data = data.reshape(-1, 3, 32, 32)
    classes = _CIFAR[name].info.num_classes
    if not isinstance(labels, list | tuple | np.ndarray):
        raise DataError(f"{bad}: {label_key!r} is a {type(labels).__name__}, not a list of labels")
    for i, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, int | np.integer) or not 0 <= label < classes:
            raise DataError(f"{bad}: label {i} is {label!r}, not a class index from 0 to {classes - 1}")
    if len(labels) != len(data):
        raise DataError(f"{bad}: {len(data)} images but {len(labels)} labels")
    return data, [int(v) for v in labels]


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
    with :func:`read_idx` (bounded by each file's header).
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
    x = read_idx(images, dims=3)
    y = read_idx(labels, dims=1)
    if x.dim() != 3 or len(x) != len(y):
        raise DataError(f"{images} and {labels} do not match: {tuple(x.shape)} images, {len(y)} labels")
    return TensorImages(x.unsqueeze(1), y.long(), info, (str(images.resolve()), str(labels.resolve())))


def _find_idx(folder: Path, prefix: str, kind: str) -> Path | None:
    for suffix in ("", ".gz"):
        path = folder / f"{prefix}-{kind}-ubyte{suffix}"
        if path.is_file():
            return path
    return None


#: Most payload bytes an idx file may declare: a million 28x28 images (MNIST's 60,000 take
#: 47 MB; EMNIST's largest split fits). The header is read first, so a file that declares more
#: is refused before anything is allocated for it.
MAX_IDX_BYTES = 1_000_000 * 28 * 28
#: idx type code of unsigned bytes, the only one MNIST-format files use.
_IDX_UBYTE = 0x08


def read_idx(path: Path, dims: int) -> torch.Tensor:
    """A uint8 idx file (gzipped when named .gz) with ``dims`` dimensions, as a tensor.

    Not torchvision's ``read_image_file``: it needs a plain file on disk (so a gzip would be
    decompressed whole, into a temp file and memory, before its header is seen) and reads all of
    it. Here the header comes first and bounds the rest: the payload it declares is at most
    :data:`MAX_IDX_BYTES`, is decompressed as a stream into one buffer of that size, and the file
    must end there; a gzip bomb costs no more than its header's honest claim.
    """
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb") as f:
            shape = _idx_header(f, dims)
            size = math.prod(shape)
            if size > MAX_IDX_BYTES:
                raise DataError(
                    f"{path} is not a valid idx file: its header declares {'x'.join(map(str, shape))} = "
                    f"{size:,} bytes, more than the {MAX_IDX_BYTES:,} of a million 28x28 images"
                )
            buffer = bytearray(size + 1)  # one byte more: a longer file is refused, not cut short
            got = _read_into(f, buffer)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path} is not a valid idx file: {exc or type(exc).__name__}") from exc
    if got != size:
        what = "ends early" if got < size else "goes on"
        raise DataError(
            f"{path} is not a valid idx file: it {what} after its header's {'x'.join(map(str, shape))} "
            f"({size:,} bytes) payload (read {min(got, size):,}{'+' if got > size else ''})"
        )
    return torch.from_numpy(np.frombuffer(buffer, np.uint8, count=size).reshape(shape))


def _idx_header(f: Any, dims: int) -> tuple[int, ...]:
    """The shape an idx header declares: magic ``00 00 08 dims``, then ``dims`` big-endian int32."""
    magic = f.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] != _IDX_UBYTE or magic[3] != dims:
        raise EOFError(
            f"magic {magic.hex() or 'missing'}, not 000008{dims:02x} (uint8 with {dims} dimension"
            f"{'s' if dims > 1 else ''})"
        )
    header = f.read(4 * dims)
    if len(header) < 4 * dims:
        raise EOFError("its header ends early")
    return struct.unpack(f">{dims}I", header)


def _read_into(f: Any, buffer: bytearray, chunk: int = 1 << 20) -> int:
    """Fill ``buffer`` from ``f`` until full or end of file; the number of bytes read.

    In chunks of 1 MiB: ``GzipFile.readinto`` reads the whole request into a temporary bytes
    first, which would double the peak.
    """
    got = 0
    while got < len(buffer):
        data = f.read(min(chunk, len(buffer) - got))
        if not data:
            break
        buffer[got : got + len(data)] = data
        got += len(data)
    return got


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
        if not root.is_dir():
            raise DataError(f"image folder {root} does not exist; check the path in --data")
        try:
            self.folder = _loop_safe_image_folder()(str(root))
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
        from PIL import UnidentifiedImageError
        from torchvision.transforms.v2.functional import pil_to_tensor

        path, label = self.folder.samples[i]
        try:
            with open_image(path) as img:
                return pil_to_tensor(img.convert("RGB")), label
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot decode image {path}: {exc}; remove or replace the file") from exc


@contextmanager
def open_image(path: str) -> Iterator[Any]:
    """``PIL.Image.open``, with PIL's decompression-bomb guard as a DataError naming the file.

    PIL raises ``DecompressionBombError`` (not an ``OSError``) for a header claiming over twice
    ``Image.MAX_IMAGE_PIXELS`` pixels and only warns between once and twice that; both are
    refused here, before any pixel is decoded: no calibration image is 89 million pixels.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        why = str(exc).split(", could be", 1)[0]  # "Image size (N pixels) exceeds limit of M pixels"
        raise DataError(
            f"image {path} is refused as a decompression bomb: {why}; remove or replace the file"
        ) from None
    with img:
        yield img


def _loop_safe_image_folder() -> type:
    """torchvision's ``ImageFolder`` with a sample scan that ends on a symlink loop.

    torchvision's ``make_dataset`` walks with ``os.walk(followlinks=True)``, which re-enters a
    folder linked to its own parent until paths hit the OS's symlink limit: with two such links
    that is 2**40 folders, a scan that never ends. This walk is the same (same order, same files,
    torchvision's extension check and its error for an empty class) but enters each real folder
    once per class, keyed by (device, inode).
    """
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import has_file_allowed_extension

    class LoopSafeImageFolder(ImageFolder):
        @staticmethod
        def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
            def valid(path: str) -> bool:
                return is_valid_file(path) if is_valid_file else has_file_allowed_extension(path, extensions)

            samples, empty = [], set()
            root = os.path.expanduser(directory)
            for name in sorted(class_to_idx):
                before = len(samples)
                for folder, files in sorted(_walk_once(os.path.join(root, name), root)):
                    paths = [os.path.join(folder, f) for f in sorted(files)]
                    samples += [(path, class_to_idx[name]) for path in paths if valid(path)]
                if len(samples) == before:
                    empty.add(name)
            if empty and not allow_empty:
                raise FileNotFoundError(
                    f"Found no valid file for the classes {', '.join(sorted(empty))}. "
                    f"Supported extensions are: {', '.join(extensions or ())}"
                )
            return samples

    return LoopSafeImageFolder


def _walk_once(top: str, root: str) -> Iterator[tuple[str, list[str]]]:
    """(folder, file names) under ``top``, following links, each real folder once; a link back
    to the dataset's ``root`` is a loop too (it would read the other classes' images as this one)."""
    seen = {_folder_key(root)}
    for folder, subfolders, files in os.walk(top, followlinks=True):
        key = _folder_key(folder)
        if key is None or key in seen:
            subfolders[:] = []
            continue
        seen.add(key)
        yield folder, files


def _folder_key(folder: str) -> tuple[int, int] | None:
    """(device, inode) of a folder: the same folder however many links lead to it."""
    try:
        st = os.stat(folder)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _header_sizes(paths: list[str]) -> set[tuple[int, int]]:
    """(height, width) of a seeded sample of the images, from their headers (no decoding).

    A file that does not open is skipped here: reading it later names it. A decompression bomb
    is refused at once (named).
    """
    from PIL import UnidentifiedImageError

    picked = paths if len(paths) <= SIZE_SAMPLE else random.Random(0).sample(paths, SIZE_SAMPLE)
    sizes = set()
    for path in picked:
        try:
            with open_image(path) as img:
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
