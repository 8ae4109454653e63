"""What ``snipit prune`` is asked, and what its two modes hand on: the request, the checked
set-up, the pruning result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from snipit_cli.criteria import Criterion, UnitCriterion
from snipit_cli.data.build import DataOptions
from snipit_cli.data.calibration import CalibrationData
from snipit_cli.errors import UsageError
from snipit_cli.models.encodings import DEFAULT_STORAGE, OutputFormat, Storage
from snipit_cli.pruning.structured.options import StructuredOptions
from snipit_cli.training.optim import OptimizerOptions
from snipit_cli.workflows.session import (
    ModelOptions,
    Session,
)


@dataclass(frozen=True)
class Finetune:
    """``--finetune-epochs``: then train the pruned model on the calibration split, masks held."""

    epochs: int
    lr: float | None = None  # default: SGD's (see OptimizerOptions)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--finetune-epochs must be at least 1 to fine-tune, got {self.epochs}")
        self.optimizer  # noqa: B018  (refuses a bad --finetune-lr before any pruning)

    @property
    def optimizer(self) -> OptimizerOptions:
        return OptimizerOptions(lr=self.lr)


@dataclass
class PruneRequest:
    """Everything ``snipit prune`` needs, already parsed and typed."""

    model: ModelOptions
    data: DataOptions
    method: str | None = None  # default: snip-it, or snap-it with structured
    sparsity: float = 0.9
    steps: int | None = None  # default: the criterion's own (5 for snip-it)
    exclude: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    output: Path | None = None
    report: Path | None = None
    force: bool = False
    structured: StructuredOptions | None = None
    allow_collapse: bool = False  # unstructured: let the ranking empty whole layers
    recalibrate_bn: bool | None = None  # None: when the data is real (see prune/recalibration.py)
    recalibrate_batches: int | None = None  # default: --batches
    storage: Storage = DEFAULT_STORAGE
    finetune: Finetune | None = None
    format: OutputFormat | None = None  # "hf": a hub-style folder; None: a folder if -o names one
    command: str | None = None  # the command line, for the folder's model card


@dataclass
class PruneOutcome:
    """The pruned model (on the CPU, as saved) and the report document."""

    model: nn.Module
    report: dict[str, Any]


@dataclass
class Setup:
    """The session, data and criterion a run prunes with, checked before any scoring."""

    criterion: Criterion | UnitCriterion
    schedule: list[float]
    session: Session
    data: CalibrationData
    output: Path
    report_path: Path
    folder: Path | None = None  # the hub-style folder ``output`` is written in, as a whole


@dataclass
class Pruned:
    """What either pruning mode hands to the checkpoint and the report."""

    schedule: list[float]
    achieved: float
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)
    report_extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dense: nn.Module | None = None  # the dense original, when the model's shapes changed
    dense_macs: int | None = None  # its MACs, when the structured pass counted them
    samples_read: int = 0  # calibration samples this process read
    samples_per_rank: list[int] = field(default_factory=list)  # the same, of every rank
    backend: str | None = None  # torch.distributed backend under torchrun
