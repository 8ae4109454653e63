"""From a ``--data`` spec and the model's input spec to streaming :class:`CalibrationData`."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from snipit_cli.data.calibration import CalibrationData, DatasetData, SyntheticData
from snipit_cli.data.readers import read_dataset
from snipit_cli.data.readers.base import DatasetInfo
from snipit_cli.data.specs import SPLITS, DataSpec
from snipit_cli.data.transforms import ToModelInput
from snipit_cli.errors import UsageError
from snipit_cli.models.input_spec import InputSpec, broadcast_channels


@dataclass
class DataOptions:
    """The data-related options of a command, as given by the user."""

    spec: DataSpec
    root: Path
    split: str = "train"
    download: bool = False
    batch_size: int = 64
    batches: int = 5
    seed: int = 0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        """Check counts and split before any model or data is loaded."""
        if self.split not in SPLITS:
            raise UsageError(f"--split must be train or test, got {self.split!r}")
        if self.batch_size < 1 or self.batches < 1:
            raise UsageError("--batches and --batch-size must be at least 1")
        if not 0 <= self.seed <= MAX_SEED:
            raise UsageError(
                f"--seed must be an integer from 0 to 2**63 - 1 = {MAX_SEED} (what every random "
                f"generator snipit seeds accepts), got {self.seed}"
            )
        check_workers(self.workers)


#: Largest --seed: torch, numpy and Python's generators all take 0..2**63 - 1 (torch refuses
#: 2**64 and up, numpy any negative seed).
MAX_SEED = 2**63 - 1


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_workers(workers: int) -> None:
    """``--workers`` between 0 and the usable CPUs: each worker is a whole process (a copy of the
    dataset and of torch, tens of MB), and more of them than CPUs decode no faster."""
    if workers < 0:
        raise UsageError("--workers must be 0 or more")
    cpus = usable_cpus()
    if workers > cpus:
        raise UsageError(
            f"--workers {workers} is more than the {cpus} CPUs this process may use: each worker is a "
            f"process of its own with its own memory, and more than one per CPU decodes no faster; "
            f"pass --workers {cpus} or fewer"
        )


def open_dataset(options: DataOptions) -> Dataset | None:
    """The dataset behind ``options.spec`` (None for synthetic data)."""
    if options.spec.kind == "synthetic":
        return None
    return read_dataset(options.spec.kind, options.root, options.split, options.download, options.spec.path)


def dataset_input_spec(dataset: Dataset | None) -> InputSpec | None:
    """The dataset's native image shape and customary mean/std, for models that do not say what
    they take. Size ``()`` when the dataset has no single size; ``source`` then says why."""
    info: DatasetInfo | None = getattr(dataset, "info", None)
    if info is None:
        return None
    if info.size is None:
        why = f"{info.name}: {info.size_note}" if info.size_note else f"{info.name} has no single image size"
        return InputSpec((), info.mean, info.std, why)  # type: ignore[arg-type]
    height, width = info.size
    if info.name.startswith("imagefolder:"):
        source = f"image folder ({height}x{width} images)"
    else:
        source = f"{info.name} native size"
    return InputSpec((info.channels, height, width), info.mean, info.std, source)


def applied_input_spec(options: DataOptions, dataset: Dataset, model_input: InputSpec) -> InputSpec:
    """``model_input`` with the mean/std the data transform applies, by precedence: --mean/--std,
    the model's, the dataset's customary ones (what a checkpoint records as its normalisation)."""
    info: DatasetInfo = dataset.info  # type: ignore[attr-defined]
    channels = model_input.size[0]
    mean = options.mean or model_input.mean or info.mean
    std = options.std or model_input.std or info.std
    return InputSpec(
        model_input.size,
        broadcast_channels(mean, channels, "--mean"),
        broadcast_channels(std, channels, "--std"),
        model_input.source,
    )


def model_transform(options: DataOptions, dataset: Dataset, model_input: InputSpec) -> ToModelInput:
    """Dataset image -> model input, normalised as :func:`applied_input_spec` says."""
    applied = applied_input_spec(options, dataset, model_input)
    return ToModelInput(applied.size, applied.mean, applied.std)  # type: ignore[arg-type]


def same_images(a: Dataset, b: Dataset) -> bool:
    """Whether two opened datasets read the same files (e.g. a folder without split sub-folders)."""
    origin_a, origin_b = getattr(a, "origin", ()), getattr(b, "origin", ())
    return bool(origin_a) and origin_a == origin_b


def calibration_data(
    options: DataOptions,
    dataset: Dataset | None,
    model_input: InputSpec,
    num_classes: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> CalibrationData:
    """Streaming calibration batches shaped and normalised for the model; under torchrun, the
    share of rank ``rank`` of ``world_size``."""
    common = dict(
        spec=str(options.spec),
        batch_size=options.batch_size,
        n_batches=options.batches,
        seed=options.seed,
        device=device,
        rank=rank,
        world_size=world_size,
    )
    batch = options.batch_size if dataset is None else min(options.batch_size, len(dataset))  # type: ignore[arg-type]
    check_batch_memory(batch, model_input.size)
    if dataset is None:
        return SyntheticData(**common, size=model_input.size, num_classes=num_classes)
    transform = model_transform(options, dataset, model_input)
    return DatasetData(
        **common, dataset=dataset, transform=transform, num_classes=num_classes, workers=options.workers
    )


def physical_memory() -> int | None:
    """Bytes of RAM of this machine, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def check_batch_memory(batch: int, size: tuple[int, ...]) -> None:
    """Refuse a --batch-size whose input tensor alone (float32) exceeds the machine's memory,
    before torch tries to allocate it (its own error is an allocator trace)."""
    needed = batch * math.prod(size) * 4
    memory = physical_memory()
    if memory is not None and needed > memory:
        raise UsageError(
            f"--batch-size {batch} needs {_bytes(needed)} for one batch of {'x'.join(map(str, size))} "
            f"float32 inputs, more than this machine's {_bytes(memory)} of memory; lower --batch-size "
            "(--batches sets how many batches are read)"
        )


def _bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} PB"
