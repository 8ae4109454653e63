"""The console script's entry point run in-process, and a folder's contents: what the catalog of bad
inputs checks (an exit code and one error line, and that nothing was written)."""

from __future__ import annotations

from pathlib import Path

import pytest


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_snipit(args: tuple[str, ...], monkeypatch, capsys) -> tuple[int, str, str]:
    """The console script's own entry point, so click's usage errors are formatted as users see them."""
    from snipit_cli.cli.app import main

    monkeypatch.setattr("sys.argv", ["snipit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err
