"""From a ``--data`` spec and the model's input spec to streaming :class:`CalibrationData`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from snipit_cli.data.calibration import CalibrationData, DatasetData, SyntheticData
from snipit_cli.data.readers import DatasetInfo, read_dataset
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
        if self.workers < 0:
            raise UsageError("--workers must be 0 or more")


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
    if dataset is None:
        return SyntheticData(**common, size=model_input.size, num_classes=num_classes)
    transform = model_transform(options, dataset, model_input)
    return DatasetData(
        **common, dataset=dataset, transform=transform, num_classes=num_classes, workers=options.workers
    )
