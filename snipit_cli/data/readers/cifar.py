"""CIFAR-10/100 python batches, unpickled with an allow-list so a batch file cannot run code."""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snipit_cli.data.readers.base import DatasetInfo, TensorImages, other_split, torchvision_download
from snipit_cli.errors import DataError


@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    files: dict[str, tuple[str, ...]]
    label_key: str
    info: DatasetInfo
    tv_class: str


CIFAR = {
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
    layout = CIFAR[name]
    folder = root if root.name == layout.folder else root / layout.folder
    files = [folder / f for f in layout.files[split]]
    if download and not all(f.is_file() for f in files):
        torchvision_download(layout.tv_class, root, split)
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        other = other_split(split)
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
    classes = CIFAR[name].info.num_classes
    if not isinstance(labels, list | tuple | np.ndarray):
        raise DataError(f"{bad}: {label_key!r} is a {type(labels).__name__}, not a list of labels")
    for i, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, int | np.integer) or not 0 <= label < classes:
            raise DataError(f"{bad}: label {i} is {label!r}, not a class index from 0 to {classes - 1}")
    if len(labels) != len(data):
        raise DataError(f"{bad}: {len(data)} images but {len(labels)} labels")
    return data, [int(v) for v in labels]
