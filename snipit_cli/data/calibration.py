"""Calibration batches, streamed: each step reads a seeded random subset, never the whole split.

Under ``torchrun`` rank r of W reads only batches r, r + W, r + 2W, ... of each step: the same
batches a single process would read, dealt out, so the ranks' summed gradients are the
single-process sum (up to float reduction order).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from snipit_cli.errors import DataError, UsageError
from snipit_cli.models.input_spec import Size
from snipit_cli.types import Batch


def step_generator(seed: int, step: int) -> torch.Generator:
    """An independent, reproducible random stream for each (seed, step)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**63)


def batch_generator(seed: int, step: int, batch: int) -> torch.Generator:
    """A stream per (seed, step, batch): a rank can make its batches without making the others'."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1_000_003 + batch) % 2**63)


@dataclass
class CalibrationData(ABC):
    """``batches(step)`` yields this rank's share of ``n_batches`` (inputs, labels) batches on
    ``device``."""

    spec: str
    batch_size: int
    n_batches: int
    seed: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    notes: list[str] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.n_batches < 1:
            raise UsageError("--batches and --batch-size must be at least 1")

    @property
    def my_batches(self) -> range:
        """Indices of the batches of each step this rank reads."""
        return range(self.rank, self.n_batches, self.world_size)

    @property
    def local_batches(self) -> int:
        """How many batches this rank reads per step."""
        return len(self.my_batches)

    @property
    @abstractmethod
    def samples_per_step(self) -> int:
        """Samples one step reads."""

    @abstractmethod
    def batches(self, step: int) -> Iterator[Batch]:
        """The calibration batches of pruning step ``step``."""

    def describe(self) -> dict[str, Any]:
        return {
            "data": self.spec,
            "batches": self.n_batches,
            "batch_size": self.batch_size,
            "samples": self.samples_per_step,
        }


@dataclass
class SyntheticData(CalibrationData):
    """Seeded standard-normal images (already "normalised") with uniform random labels."""

    size: Size = (3, 32, 32)
    num_classes: int = 10

    @property
    def samples_per_step(self) -> int:
        return self.n_batches * self.batch_size

    def batches(self, step: int) -> Iterator[Batch]:
        for i in self.my_batches:
            g = batch_generator(self.seed, step, i)
            x = torch.randn(self.batch_size, *self.size, generator=g)
            y = torch.randint(0, self.num_classes, (self.batch_size,), generator=g)
            yield x.to(self.device), y.to(self.device)


@dataclass
class DatasetData(CalibrationData):
    """A map-style dataset, read through a DataLoader over a seeded random subset per step."""

    dataset: Dataset | None = None
    transform: Any = None
    num_classes: int = 0
    workers: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        available = len(self.dataset)  # type: ignore[arg-type]
        if available == 0:
            raise DataError(f"dataset {self.spec} is empty")
        wanted = self.n_batches * self.batch_size
        if available < wanted:
            self.n_batches = math.ceil(available / self.batch_size)
            self.notes.append(
                f"{self.spec} has only {available} samples, fewer than --batches x --batch-size = "
                f"{wanted}; using all {available} ({self.n_batches} batches) per step"
            )
        self._n_samples = min(available, wanted)

    @property
    def samples_per_step(self) -> int:
        return self._n_samples

    def batches(self, step: int) -> Iterator[Batch]:
        order = torch.randperm(len(self.dataset), generator=step_generator(self.seed, step))  # type: ignore[arg-type]
        chosen = order[: self._n_samples].split(self.batch_size)
        mine = torch.cat([chosen[i] for i in self.my_batches]).tolist() if self.local_batches else []
        subset = Subset(_Transformed(self.dataset, self.transform), mine)
        loader = DataLoader(subset, batch_size=self.batch_size, shuffle=False, num_workers=self.workers)
        for x, y in loader:
            self._check_labels(y)
            yield x.to(self.device), y.to(self.device)

    def _check_labels(self, labels: torch.Tensor) -> None:
        if self.num_classes and (labels.max() >= self.num_classes or labels.min() < 0):
            bad = int(labels.max() if labels.max() >= self.num_classes else labels.min())
            raise DataError(
                f"label {bad} in {self.spec} is outside the model's {self.num_classes} classes; "
                "use data that matches the model or pass --num-classes"
            )


class _Transformed(Dataset):
    def __init__(self, dataset: Dataset, transform: Any):
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image, label = self.dataset[i]
        return self.transform(image), label
