"""The training options users choose (optimizer, schedule), free of torch: the CLI builds its
``--optimizer``/``--lr-schedule`` choices from them at start-up, before any command needs torch."""

from __future__ import annotations

from dataclasses import dataclass

from snipit_cli.errors import UsageError

OPTIMIZERS = ("sgd", "adamw")
LR_SCHEDULES = ("cosine", "constant")
DEFAULT_LR = {"sgd": 0.05, "adamw": 1e-3}


@dataclass
class OptimizerOptions:
    """SGD with momentum + weight decay + cosine by default, as most pruning papers train."""

    name: str = "sgd"
    lr: float | None = None  # default per optimizer (DEFAULT_LR)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.name!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(
                f"--lr-schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}"
            )
        if self.lr is not None and not self.lr > 0:
            raise UsageError(f"--lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise UsageError("--weight-decay must be >= 0 and --momentum in [0, 1)")

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.name]
