"""What ``snipit train`` is asked: the request, its pruning-while-training options, its outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from snipit_cli.data.build import DataOptions
from snipit_cli.data.specs import DataSpec
from snipit_cli.errors import UsageError
from snipit_cli.models.encodings import DEFAULT_STORAGE, OutputFormat, Storage
from snipit_cli.pruning.structured.options import StructuredOptions
from snipit_cli.training.optim import OptimizerOptions
from snipit_cli.workflows.session import ModelOptions
from snipit_cli.workflows.session.training_data import TrainingDataOptions


@dataclass
class PruneWhileTraining:
    """``train --method``: step k_i of the method's schedule at epochs D, D+F, D+2F, ...

    F = 0 runs every step at epoch D, back to back: with D = 0 that is pruning at initialisation.
    """

    method: str | None = None
    sparsity: float = 0.9
    delay: int = 0
    freq: int = 1
    steps: int | None = None
    structured: StructuredOptions | None = None
    batches: int = 5
    allow_collapse: bool = False

    def __post_init__(self) -> None:
        if self.delay < 0 or self.freq < 0:
            raise UsageError("--prune-delay and --prune-freq must be 0 or more")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PruneWhileTraining:
        """The options as ``asdict`` wrote them into a checkpoint's pruning record."""
        structured = doc.get("structured")
        return cls(**{**doc, "structured": StructuredOptions(**structured) if structured else None})


@dataclass
class TrainRequest:
    """Everything ``snipit train`` needs, parsed and typed."""

    model: ModelOptions
    data: DataOptions  # split/batch size of the training data; .batches = calibration batches
    epochs: int
    optimizer: OptimizerOptions = field(default_factory=OptimizerOptions)
    test_split: str | None = "test"  # of test_data if given, else of data; None: no evaluation
    holdout: float | None = None
    test_data: DataSpec | None = None
    prune: PruneWhileTraining | None = None
    exclude: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    output: Path | None = None
    force: bool = False
    resume: bool = False
    checkpoint_every: int = 0  # 0: only at the end, so an interrupted run leaves no output
    storage: Storage = DEFAULT_STORAGE
    format: OutputFormat | None = None  # "hf": a hub-style folder; None: a folder if -o names one
    command: str | None = None  # the command line, for the folder's model card
    # Options the user set; with --resume the others come from the checkpoint. None: all of them.
    given: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")
        if self.checkpoint_every < 0:
            raise UsageError("--checkpoint-every must be 0 (only at the end) or more")
        if self.test_data is not None and self.holdout is not None:
            raise UsageError("--test-data and --holdout both say what to evaluate on; pass one of them")
        if self.test_data is not None and self.test_split is None:
            raise UsageError("--test-data is evaluated on its --test-split; drop --test-split none")

    @property
    def reads(self) -> TrainingDataOptions:
        """What the run trains and is evaluated on."""
        return TrainingDataOptions(self.data, self.test_split, self.holdout, self.test_data)


@dataclass
class TrainOutcome:
    model: nn.Module
    report: dict[str, Any]
