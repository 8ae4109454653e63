"""Real mounts for the safety tests (a small disk, a second path to the same files), skipped
only where the machine cannot mount."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted(args: list[str], target: Path, what: str) -> Iterator[Path]:
    """``mount ARGS TARGET`` for the duration, unmounted after; skips the test if mounting fails."""
    try:
        done = subprocess.run(["mount", *args, str(target)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command on this machine")
    if done.returncode != 0:
        pytest.skip(f"cannot {what} here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=True)
