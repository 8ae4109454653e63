"""Image folders in torchvision's ``ImageFolder`` layout, decoded lazily, safe against symlink loops
and decompression bombs."""

from __future__ import annotations

import os
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from snipit_cli.data.readers.base import IMAGENET_STATS, DatasetInfo
from snipit_cli.errors import DataError

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
