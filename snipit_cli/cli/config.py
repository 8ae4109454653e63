"""``--config FILE.toml``: the same options as flags, read into click's default map.

Values from the file become defaults, so any flag on the command line overrides them.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import typer

from snipit_cli.errors import UsageError


def read_config(path: Path, allowed: set[str]) -> dict[str, Any]:
    """Read a TOML recipe; keys are option names with ``-`` or ``_`` (``batch-size``)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc
    values = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise UsageError(f"unknown option(s) in {path}: {', '.join(unknown)}; use the flag names without --")
    return values


def config_callback(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Eager callback of ``--config``: merge the file into ``ctx.default_map``."""
    if value is None:
        return None
    allowed = {p.name for p in ctx.command.params if p.name and p.name not in {"config", "debug"}}
    try:
        values = read_config(value, allowed)
    except UsageError as exc:  # runs before the command's error boundary: report it the same way
        sys.stderr.write(f"error: {exc}\n")
        raise typer.Exit(exc.exit_code) from None
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value
