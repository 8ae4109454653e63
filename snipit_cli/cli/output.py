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
from rich.table import Table

from snipit_cli.cli.formats import Tables, csv_text, markdown, rich_tables

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
        from snipit_cli.cli.progress import LinePruneProgress, NullProgress, RichPruneProgress

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
        from snipit_cli.cli.progress import NullEpochProgress, RichTrainProgress

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
