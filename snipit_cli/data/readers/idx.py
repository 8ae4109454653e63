"""MNIST-format idx files (MNIST, Fashion-MNIST), read with bounds taken from each file's header."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from snipit_cli.data.readers.base import DatasetInfo, TensorImages, other_split, torchvision_download
from snipit_cli.errors import DataError

MNIST = {
    "mnist": (DatasetInfo("mnist", 1, (28, 28), 10, (0.1307,), (0.3081,)), "MNIST"),
    "fashionmnist": (DatasetInfo("fashionmnist", 1, (28, 28), 10, (0.2860,), (0.3530,)), "FashionMNIST"),
}
_MNIST_PREFIX = {"train": "train", "test": "t10k"}


def read_mnist(name: str, root: Path, split: str, download: bool) -> TensorImages:
    """MNIST-format idx files (gzipped or not) in torchvision's layout ``root/<Name>/raw/``.

    torchvision's ``MNIST`` class insists on all four files; this reads only the split asked for,
    with :func:`read_idx` (bounded by each file's header).
    """
    info, tv_class = MNIST[name]
    prefix = _MNIST_PREFIX[split]
    candidates = [root / tv_class / "raw", root / "raw", root]
    if download and not any(_find_idx(d, prefix, "images-idx3") for d in candidates):
        torchvision_download(tv_class, root, split)
    for folder in candidates:
        images, labels = _find_idx(folder, prefix, "images-idx3"), _find_idx(folder, prefix, "labels-idx1")
        if images and labels:
            break
    else:
        other = other_split(split)
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
