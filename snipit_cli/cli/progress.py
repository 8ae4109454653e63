"""The progress displays of the pruning and training loops: rich bars on a terminal, one plain
line per step or epoch in a log. Imported when a command starts its loop (the loops' protocols
live with the torch code), not at start-up."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from snipit_cli.pruning.engine import NullProgress
from snipit_cli.training.loop import NullEpochProgress

__all__ = ["LinePruneProgress", "NullEpochProgress", "NullProgress", "RichPruneProgress", "RichTrainProgress"]


class LinePruneProgress(NullProgress):
    """One plain stderr line per finished pruning step: readable in logs, no bar, no colour."""

    def start_step(self, step: int, n_steps: int, fraction: float, n_batches: int) -> None:
        self.n_steps, self.fraction = n_steps, fraction

    def end_step(self, step: int, kept: int, total: int) -> None:
        sys.stderr.write(
            f"step {step + 1}/{self.n_steps}: sparsity {self.fraction:.4f}, kept {kept:,} of {total:,}\n"
        )
        sys.stderr.flush()


class RichTrainProgress:
    """Adapts the training loop's protocol: a bar per epoch's batches and a line per epoch."""

    def __init__(self, console: Console, bars: bool):
        self.console, self.bars = console, bars
        self.bar = Progress(*RichPruneProgress.COLUMNS, console=console) if bars else None
        self.task = None

    def close(self) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.stop()

    def start_epoch(self, epoch: int, n_epochs: int, n_batches: int) -> None:
        if self.bar is None:
            return
        desc = f"epoch {epoch + 1}/{n_epochs}"
        if self.task is None:
            self.bar.start()
            self.task = self.bar.add_task(desc, total=n_batches)
        else:
            self.bar.reset(self.task, total=n_batches, description=desc)

    def advance_batch(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def end_epoch(self, record: dict) -> None:
        test = f"  test top-1 {record['test_top1']:.4f}" if record["test_top1"] is not None else ""
        line = (
            f"epoch {record['epoch']}: loss {record['train_loss']:.4f}  top-1 {record['train_top1']:.4f}"
            f"{test}  sparsity {record['weight_sparsity']:.4f}  params {record['params']:,}  "
            f"{record['seconds']:.1f}s"
        )
        if self.bar is not None:
            self.bar.console.print(line, highlight=False)
        else:
            sys.stderr.write(line + "\n")


class RichPruneProgress:
    """Adapts the engine's progress protocol to two rich bars: steps and batches of the step."""

    COLUMNS = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )

    def __init__(self, console: Console):
        self.bar = Progress(*self.COLUMNS, console=console)
        self.steps = None
        self.batches = None

    def close(self) -> None:
        if self.steps is not None:
            self.bar.stop()

    def start_step(self, step: int, n_steps: int, fraction: float, n_batches: int) -> None:
        if self.steps is None:
            self.bar.start()
            self.steps = self.bar.add_task("steps", total=n_steps)
        desc = f"step {step + 1}/{n_steps} -> sparsity {fraction:.4f}"
        if self.batches is None:
            self.batches = self.bar.add_task(desc, total=max(n_batches, 1))
        else:
            self.bar.reset(self.batches, total=max(n_batches, 1), description=desc)
        if n_batches == 0:
            self.bar.update(self.batches, completed=1)

    def advance_batch(self) -> None:
        self.bar.advance(self.batches)

    def end_step(self, step: int, kept: int, total: int) -> None:
        self.bar.advance(self.steps)
