"""One output object every command prints through: results on stdout (a human line, report's
tables, markdown or CSV, or JSON), notes, progress and logs on stderr.

Progress bars and tables appear only when stderr is a terminal and ``--quiet`` is off, so a
pipeline never sees them; ``--json`` puts exactly one JSON document on stdout; ``--quiet`` leaves
nothing on stderr but an error.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from snipit_cli.cli.formats import Tables, csv_text, markdown, rich_tables
from snipit_cli.pruning.engine import NullProgress
from snipit_cli.training.loop import NullEpochProgress

_UNBOUNDED_WIDTH = 1000


class Output:
    """Where a command's words go, by mode: ``format`` (``json`` with --json; report/compare's
    --format), ``quiet`` and whether stderr is a terminal.

    Under ``torchrun`` only rank 0 speaks: the other ranks' Output is ``silent`` (no result, no
    notes, no progress), so N processes print one result, not N.
    """

    def __init__(
        self, json_mode: bool = False, quiet: bool = False, silent: bool = False, format: str | None = None
    ):
        self.format = "json" if json_mode else (format or "table")
        self.json_mode = self.format == "json"
        self.silent = silent
        self.quiet = quiet or silent
        self.err = Console(stderr=True)
        self.interactive = self.err.is_terminal and not self.quiet
        if self.quiet:  # nothing on stderr but an error: torch's UserWarnings neither
            warnings.filterwarnings("ignore")

    def note(self, message: str) -> None:
        """A one-line remark the user should see (data shortfalls, ...); silent with --quiet."""
        if not self.quiet:
            sys.stderr.write(f"note: {message}\n")

    def notes(self, document: dict[str, Any]) -> None:
        """The ``notes`` of a command's result document, one ``note:`` line each."""
        for message in document.get("notes", []):
            self.note(message)

    def table(self, table: Table) -> None:
        """A human summary on stderr, only on a terminal."""
        if self.interactive:
            self.err.print(table)

    def result(self, document: Any, human: str) -> None:
        """The command's result on stdout: the JSON document, or a human line."""
        self._stdout(json.dumps(document, indent=2) + "\n" if self.json_mode else human + "\n")

    def tables(self, document: dict[str, Any], tables: Tables) -> None:
        """report/compare's result on stdout in its format: JSON, markdown, CSV or rich tables."""
        if self.format == "table":
            if not self.silent:
                _print_tables(rich_tables(tables))
        elif self.format == "markdown":
            self._stdout(markdown(tables))
        elif self.format == "csv":
            self._stdout(csv_text(tables))
        else:
            self.result(document, "")

    def _stdout(self, text: str) -> None:
        if not self.silent:
            sys.stdout.write(text)
            sys.stdout.flush()

    @contextmanager
    def pruning_progress(self) -> Iterator[Any]:
        """A rich progress display for the pruning loop on a terminal; off a terminal (a log file,
        a batch job) one plain line per finished step; nothing with --quiet.

        The display starts at the first pruning step, so errors while loading the model or the
        data print as plain lines.
        """
        if self.quiet:
            yield NullProgress()
            return
        if not self.interactive:
            yield LinePruneProgress()
            return
        progress = RichPruneProgress(self.err)
        try:
            yield progress
        finally:
            progress.close()

    @contextmanager
    def training_progress(self) -> Iterator[Any]:
        """Epoch and batch bars for ``snipit train``, plus one line per epoch; silent off a terminal
        except for the per-epoch lines, which go to stderr unless --quiet."""
        if self.quiet:
            yield NullEpochProgress()
            return
        progress = RichTrainProgress(self.err, bars=self.interactive)
        try:
            yield progress
        finally:
            progress.close()


def _print_tables(tables: list[Table]) -> None:
    """Human tables on stdout. Redirected to a file or a pager, a table takes the width it needs
    instead of being cut to 80 columns with ellipses (layer names must survive ``> report.txt``)."""
    console = Console(soft_wrap=False)
    if not console.is_terminal:
        console = Console(soft_wrap=False, width=_UNBOUNDED_WIDTH)
    for table in tables:
        console.print(table)


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
