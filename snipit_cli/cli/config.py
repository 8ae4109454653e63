"""``--config FILE.toml``: the same options as flags, read into click's default map.

Values from the file become defaults, so any flag on the command line overrides them.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import typer

from snipit_cli.errors import UsageError


def read_config(path: Path, allowed: dict[str, str]) -> dict[str, Any]:
    """Read a TOML recipe into ``{parameter name: value}``.

    Keys are flag names without ``--``, with ``-`` or ``_`` (``batch-size``, ``json``);
    ``allowed`` maps each accepted key to its parameter name.
    """
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc
    values = {key.replace("-", "_"): value for key, value in raw.items()}
    unknown = sorted(set(values) - allowed.keys())
    if unknown:
        raise UsageError(f"unknown option(s) in {path}: {', '.join(unknown)}; use the flag names without --")
    return {allowed[key]: value for key, value in values.items()}


def _config_keys(ctx: typer.Context) -> dict[str, str]:
    """Accepted config keys: each parameter's name and its long flags without ``--``."""
    keys: dict[str, str] = {}
    for param in ctx.command.params:
        if not param.name or param.name in {"config", "debug"}:
            continue
        keys[param.name] = param.name
        for flag in getattr(param, "opts", []):
            if flag.startswith("--"):
                keys[flag[2:].replace("-", "_")] = param.name
    return keys


def config_callback(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Eager callback of ``--config``: merge the file into ``ctx.default_map``. Its errors are
    UsageErrors like any other: parsing runs inside the root app's error boundary."""
    if value is None:
        return None
    ctx.default_map = {**(ctx.default_map or {}), **read_config(value, _config_keys(ctx))}
    return value
