"""``--data`` specs: ``synthetic``, ``cifar10``, ``cifar100``, ``mnist``, ``fashionmnist``,
``imagefolder:PATH`` or a folder path."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from snipit_cli.errors import UsageError

NAMED = ("cifar10", "cifar100", "mnist", "fashionmnist")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` value: a kind plus, for image folders, the folder."""

    kind: str
    path: Path | None = None

    def __str__(self) -> str:
        return f"imagefolder:{self.path}" if self.kind == "imagefolder" else self.kind


def parse_data_spec(text: str) -> DataSpec:
    """Parse ``--data``; a bare existing folder is an image folder."""
    lowered = text.lower()
    if lowered == "synthetic" or lowered in NAMED:
        return DataSpec(lowered)
    if lowered.startswith("imagefolder:"):
        return DataSpec("imagefolder", Path(text.split(":", 1)[1]).expanduser())
    if Path(text).expanduser().is_dir():
        return DataSpec("imagefolder", Path(text).expanduser())
    raise UsageError(
        f"unknown --data {text!r}; use synthetic, {', '.join(NAMED)}, imagefolder:PATH or a folder path"
    )


def default_data_root() -> Path:
    """``$SNIPIT_DATA`` or ``~/.cache/snipit/data``."""
    return Path(os.environ.get("SNIPIT_DATA") or Path.home() / ".cache" / "snipit" / "data")
