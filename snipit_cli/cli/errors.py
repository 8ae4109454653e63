"""The one error boundary: exception -> one line on stderr + exit code; traceback only with --debug."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from snipit_cli.errors import SnipitError

INTERNAL = 1
INTERRUPTED = 130  # 128 + SIGINT


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler; unwinds like Ctrl-C, exits 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.exit_code = 128 + signum


def _one_line(text: str) -> str:
    return " ".join(text.split())


def report_error(message: str) -> None:
    """The one format of every error line: ``error: <problem and fix>``."""
    sys.stderr.write(f"error: {_one_line(message)}\n")


@contextmanager
def error_boundary(debug: bool) -> Iterator[None]:
    """Run a command body; translate failures into a message and an exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except SnipitError as exc:
        if debug:
            raise
        report_error(str(exc))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt as exc:
        if debug:
            raise
        sys.stderr.write("interrupted; no partial output was left behind\n")
        raise typer.Exit(getattr(exc, "exit_code", INTERRUPTED)) from None
    except Exception as exc:
        if debug:
            raise
        sys.stderr.write(
            f"internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            "(re-run with --debug for the traceback)\n"
        )
        raise typer.Exit(INTERNAL) from None
