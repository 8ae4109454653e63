"""``snipit methods``: the registered criteria, one line each."""

from __future__ import annotations

from typing import Annotated

import typer

from snipit_cli.cli import options as opt
from snipit_cli.cli.output import Output


def methods(
    pattern: Annotated[str, typer.Argument(help="fnmatch filter on method names.")] = "*",
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """List the pruning methods (--method values) with one line each."""
    from snipit_cli.criteria import list_criteria
    from snipit_cli.workflows.documents import ordered

    out = Output(json_mode=json_, quiet=quiet)
    rows = [
        {
            "name": c.name,
            "structured": c.level == "units",
            "iterative": c.iterative,
            "needs_data": c.needs_data,
            "summary": c.summary,
        }
        for c in list_criteria(pattern)
    ]
    text = "\n".join(
        f"{r['name']:<10} {'--structured' if r['structured'] else 'weights':<13} {r['summary']}" for r in rows
    )
    out.result(ordered("methods", {"methods": rows}), text)
