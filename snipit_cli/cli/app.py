"""The root ``snipit`` app: wires one module per command."""

from __future__ import annotations

import typer

from snipit_cli.cli.methods import methods
from snipit_cli.cli.prune import EXAMPLES, prune

app = typer.Typer(
    name="snipit",
    help="Prune neural-network checkpoints with SNIP-it (arXiv 2006.00896).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command(epilog=EXAMPLES)(prune)
app.command()(methods)


@app.callback()
def _root() -> None:
    """Prune neural-network checkpoints with SNIP-it (arXiv 2006.00896)."""


def main() -> None:
    """Console-script entry point."""
    app(prog_name="snipit")
