"""Whole-split data for training and evaluation: seeded shuffles per epoch, an optional holdout.

Calibration (``calibration.py``) reads a small random subset per pruning step; training reads
every sample once per epoch. In-memory datasets (CIFAR, MNIST) are converted to model inputs once,
since the per-sample transform would otherwise cost more than a small net's forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from snipit_cli.data.calibration import _Transformed, step_generator
from snipit_cli.data.readers.base import TensorImages
from snipit_cli.errors import DataError, UsageError
from snipit_cli.types import Batch

#: Converted in-memory datasets above this size stay per-sample (e.g. CIFAR resized to 224 px).
PRECOMPUTE_LIMIT_BYTES = 1 << 30


@dataclass
class EpochData:
    """``batches(epoch)`` yields every sample once, in a seeded order (shuffled for training)."""

    dataset: Dataset
    batch_size: int
    seed: int
    shuffle: bool
    device: torch.device
    num_classes: int
    workers: int = 0
    name: str = ""

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    @property
    def n_batches(self) -> int:
        return -(-len(self) // self.batch_size)

    def batches(self, epoch: int) -> Iterator[Batch]:
        generator = step_generator(self.seed, 10_000 + epoch) if self.shuffle else None
        loader = DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=self.shuffle,
            generator=generator,
            num_workers=self.workers,
        )
        for x, y in loader:
            if int(y.max()) >= self.num_classes or int(y.min()) < 0:
                bad = int(y.max()) if int(y.max()) >= self.num_classes else int(y.min())
                raise DataError(
                    f"label {bad} in {self.name} is outside the model's {self.num_classes} classes; "
                    "use data that matches the model or pass --num-classes"
                )
            yield x.to(self.device), y.to(self.device)


def model_inputs(dataset: Dataset, transform) -> Dataset:
    """``dataset`` with ``transform`` applied: precomputed for small in-memory datasets."""
    if isinstance(dataset, TensorImages) and _converted_bytes(dataset, transform) <= PRECOMPUTE_LIMIT_BYTES:
        chunks = [
            torch.stack([transform(image) for image in dataset.images[i : i + 4096]])
            for i in range(0, len(dataset.images), 4096)
        ]
        return TensorDataset(torch.cat(chunks), dataset.labels.long())
    return _Transformed(dataset, transform)


def _converted_bytes(dataset: TensorImages, transform) -> int:
    channels, height, width = transform.size
    return len(dataset.images) * channels * height * width * 4


def holdout_split(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split ``dataset`` into (train, held out) by a seeded permutation; the same seed, the same split."""
    if not 0.0 < fraction < 1.0:
        raise UsageError(f"--holdout must be a fraction strictly between 0 and 1, got {fraction}")
    n = len(dataset)  # type: ignore[arg-type]
    n_test = round(n * fraction)
    if n_test == 0 or n_test == n:
        raise DataError(f"--holdout {fraction} of {n} samples leaves an empty split; change --holdout")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, order[n_test:]), Subset(dataset, order[:n_test])
