"""Option aliases and choices shared by the commands (one definition, one help text).

The choices of a flag are built from the library's own declaration, so a value added there is
a flag choice here, and the two cannot drift apart.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, get_args

import typer

from snipit_cli.cli.config import config_callback
from snipit_cli.cli.errors import remember_debug
from snipit_cli.data.specs import SPLITS
from snipit_cli.errors import UsageError
from snipit_cli.metrics.runtimes import RUNTIMES
from snipit_cli.models.encodings import DEFAULT_STORAGE as _DEFAULT_STORAGE
from snipit_cli.models.encodings import OutputFormat as OUTPUT_FORMATS
from snipit_cli.models.encodings import Storage as STORAGES
from snipit_cli.pruning.structured.options import TARGETS
from snipit_cli.training.options import LR_SCHEDULES, OPTIMIZERS


def choices(name: str, values: Iterable[str]) -> type[StrEnum]:
    """A click choice list as the StrEnum Typer wants, one member per library value."""
    return StrEnum(name, {value: value for value in values})


Split = choices("Split", SPLITS)
TestSplit = choices("TestSplit", (*SPLITS, "none"))
Target = choices("Target", TARGETS)
StorageFormat = choices("StorageFormat", get_args(STORAGES))
OutputFormatChoice = choices("OutputFormatChoice", get_args(OUTPUT_FORMATS))
Optimizer = choices("Optimizer", OPTIMIZERS)
LrSchedule = choices("LrSchedule", LR_SCHEDULES)
LatencyRuntime = choices("LatencyRuntime", RUNTIMES)

Debug = Annotated[
    bool,
    typer.Option("--debug", help="Show tracebacks instead of one-line errors.", callback=remember_debug),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout.")]
Quiet = Annotated[
    bool, typer.Option("--quiet", "-q", help="No notes, progress, tables or warnings on stderr.")
]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]


STORAGE_HELP = (
    "dense: plain safetensors, the model's own keys, which safetensors, timm and every other tool "
    "load; sparse: snipit's archive format, each mostly-zero tensor as a packed bit mask plus its kept "
    "values (about (1 - sparsity) x 32 + 1 bits per float32 weight; read back by snipit only)."
)
Storage = Annotated[StorageFormat, typer.Option(help=STORAGE_HELP)]
#: The storage a command writes with when --storage is not given (the library's default).
DEFAULT_STORAGE = StorageFormat(_DEFAULT_STORAGE)
FORMAT_HELP = (
    "safetensors: one checkpoint file; hf: a hub-style folder (config.json with timm's fields, "
    "model.safetensors, a README.md model card with the report) that timm's local-dir: loads "
    "\\[default: hf when -o ends in / or names a folder, else safetensors]."
)
Format = Annotated[OutputFormatChoice | None, typer.Option("--format", help=FORMAT_HELP, show_default=False)]


def output_target(output: str | None, format: str | None) -> tuple[Path | None, str | None]:
    """``-o`` as a path, and the format it asks for: a trailing ``/`` means a folder (``hf``),
    which a Path would drop; ``--format safetensors`` with it is a contradiction."""
    if output is None:
        return None, format
    if output.endswith(("/", os.sep)):
        if format == "safetensors":
            raise UsageError(f"-o {output} names a folder but --format is safetensors; drop one of them")
        format = "hf"
    return Path(output).expanduser(), format


_COMMAND: list[str] = []  # the arguments of the command being run (set by the root app)


def remember_command(argv: list[str]) -> None:
    """The root app records its arguments here, for :func:`command_line`."""
    _COMMAND[:] = argv


def command_line() -> str | None:
    """The command line being run (``snipit prune ...``), as a model card records it."""
    import shlex

    return shlex.join(["snipit", *_COMMAND]) if _COMMAND else None


Config = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML file with option values (keys are flag names); flags given on the command line win.",
        is_eager=True,
        callback=config_callback,
        dir_okay=False,
    ),
]

# Model source options
Model = Annotated[
    str,
    typer.Argument(
        help="timm:NAME, torchvision:NAME, a snipit .safetensors checkpoint, or a state_dict file "
        "(.safetensors/.pt/.pth/.th) with --arch.",
        show_default=False,
    ),
]
Arch = Annotated[
    str | None,
    typer.Option(
        help="Architecture of a state_dict file: timm:NAME, torchvision:NAME, package.module:callable "
        "or path/to/file.py:callable.",
        rich_help_panel="Model",
    ),
]
ArchKwargs = Annotated[
    str | None,
    typer.Option(
        help="JSON keyword arguments for --arch, e.g. '{\"num_classes\": 10}'.", rich_help_panel="Model"
    ),
]
NumClasses = Annotated[
    int | None, typer.Option(help="Classifier outputs for timm/torchvision models.", rich_help_panel="Model")
]
Pretrained = Annotated[
    bool,
    typer.Option(
        help="Ask timm/torchvision for pretrained weights (needs network or cache).", rich_help_panel="Model"
    ),
]
TrustPickle = Annotated[
    bool,
    typer.Option(
        help="Allow loading a fully pickled model (runs code from the file; only for files you trust).",
        rich_help_panel="Model",
    ),
]
InputSize = Annotated[
    str | None,
    typer.Option(
        help="Model input as C,H,W (default: from the model or the dataset).", rich_help_panel="Model"
    ),
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.", rich_help_panel="Model")]

# Data options
Data = Annotated[
    str,
    typer.Option(
        help="synthetic (no files needed), cifar10, cifar100, mnist, fashionmnist, "
        "imagefolder:PATH or a folder.",
        rich_help_panel="Data",
    ),
]
DataRoot = Annotated[
    Path | None,
    typer.Option(
        help="Folder holding named datasets \\[default: $SNIPIT_DATA or ~/.cache/snipit/data].",
        rich_help_panel="Data",
    ),
]
Download = Annotated[
    bool, typer.Option(help="Download a named dataset if it is missing.", rich_help_panel="Data")
]
BatchSize = Annotated[int, typer.Option(help="Calibration batch size.", rich_help_panel="Data")]
Batches = Annotated[int, typer.Option(help="Calibration batches per pruning step.", rich_help_panel="Data")]
Mean = Annotated[
    str | None, typer.Option(help="Normalisation mean: one value or one per channel.", rich_help_panel="Data")
]
Std = Annotated[
    str | None, typer.Option(help="Normalisation std: one value or one per channel.", rich_help_panel="Data")
]
Workers = Annotated[
    int, typer.Option(help="DataLoader worker processes for decoding images.", rich_help_panel="Data")
]
Seed = Annotated[int, typer.Option(help="Seeds model init, data order, synthetic data and random scores.")]
