"""The root ``snipit`` app: wires one module per command and owns the one error boundary."""

from __future__ import annotations

import signal
import sys
import warnings
from typing import Annotated

import typer
from typer.core import TyperGroup

import snipit_cli
from snipit_cli.cli.convert import EXAMPLES as CONVERT_EXAMPLES
from snipit_cli.cli.convert import convert
from snipit_cli.cli.errors import (
    BROKEN_PIPE,
    DEBUG,
    INTERRUPTED,
    Terminated,
    error_boundary,
    report_error,
    silence_stdout,
)
from snipit_cli.cli.export import EXAMPLES as EXPORT_EXAMPLES
from snipit_cli.cli.export import export
from snipit_cli.cli.methods import methods
from snipit_cli.cli.options import remember_command
from snipit_cli.cli.prune import EXAMPLES, prune
from snipit_cli.cli.report import compare_cmd, report
from snipit_cli.cli.train import EXAMPLES as TRAIN_EXAMPLES
from snipit_cli.cli.train import train


class Snipit(TyperGroup):
    """The root command: every command, its option parsing and ``--config`` included, runs inside
    the one error boundary, and click's usage errors (``--sparsity abc``, an unknown flag) print in
    the same one-line format as snipit's errors instead of Typer's multi-line box. The console
    script and the in-process test runner both come through here."""

    def get_help_option(self, ctx: typer.Context):
        """Typer's ``--help`` flag, not given, reads as None, and coercing that None imports Typer's
        pydantic adapters (about 0.1 s); default it to False so ``snipit prune --help`` and
        ``--version`` start without them (a bool value is passed through uncoerced)."""
        option = super().get_help_option(ctx)
        if option is not None:
            option.default = False
        return option

    def invoke(self, ctx: typer.Context):
        with error_boundary(lambda: ctx.meta.get(DEBUG, False)):
            return super().invoke(ctx)

    def main(self, args=None, *rest, standalone_mode: bool = True, **kwargs):
        args = [str(a) for a in (sys.argv[1:] if args is None else args)]
        remember_command(args)
        try:
            code = super().main(args, *rest, standalone_mode=False, **kwargs)
        except typer.TyperException as exc:  # click's usage errors, as Typer re-exports them
            message = exc.format_message().strip()
            if message:  # a bare `snipit` has shown the help already (rich prints it), no error line
                report_error(f"{message} (see snipit --help)")
            code = getattr(exc, "exit_code", 2)
        except BrokenPipeError:  # `snipit --help | head -1`: the reader left; so do we, quietly
            silence_stdout()
            code = BROKEN_PIPE
        except typer.Abort:
            sys.stderr.write("interrupted; no partial output was left behind\n")
            code = INTERRUPTED
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=Snipit,
    name="snipit",
    help="Prune neural-network checkpoints with SNIP-it (arXiv 2006.00896).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(epilog=EXAMPLES)(prune)
app.command(epilog=TRAIN_EXAMPLES)(train)
app.command()(methods)
app.command()(report)
app.command("compare")(compare_cmd)
app.command(epilog=CONVERT_EXAMPLES)(convert)
app.command(epilog=EXPORT_EXAMPLES)(export)


def _print_version(value: bool) -> None:
    if value:
        sys.stdout.write(f"snipit {snipit_cli.__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print snipit's version and exit.", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    """Prune neural-network checkpoints with SNIP-it (arXiv 2006.00896)."""


def _terminated(signum: int, _frame: object) -> None:
    """SIGTERM (``kill``, a job scheduler) unwinds like Ctrl-C: temp files are removed, nothing
    half-written is left, and the exit code is 128 + 15 as a shell expects."""
    raise Terminated(signum)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A library's warning (torch's UserWarnings) as one ``warning:`` line, without the source
    line of the library that raised it; ``--quiet`` silences them (see Output)."""
    text = " ".join(str(message).split())
    (file or sys.stderr).write(f"warning: {text} ({category.__name__})\n")


def main() -> None:
    """Console-script entry point: the process-wide settings, then the root app (which exits).

    A file size limit (``ulimit -f``) makes a too-big write fail with EFBIG, which is reported,
    instead of killing the process with SIGXFSZ and leaving its temp file behind.
    """
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    warnings.showwarning = _warning_line
    app(prog_name="snipit")
