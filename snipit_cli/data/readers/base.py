"""What every reader returns: a dataset's native shape and statistics, and uint8 images held as
tensors; plus the two helpers the CIFAR and MNIST readers share (torchvision's downloader and
the other split's name for errors)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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


def other_split(split: str) -> str:
    return "test" if split == "train" else "train"


def torchvision_download(tv_class: str, root: Path, split: str) -> None:
    """Fetch a dataset with torchvision's own downloader (only with --download)."""
    import torchvision.datasets as tvd

    try:
        getattr(tvd, tv_class)(str(root), train=split == "train", download=True)
    except Exception as exc:
        raise DataError(f"could not download {tv_class} into {root}: {exc}") from exc
