"""A real full disk and a real file size limit, through the real CLI in a subprocess: one
``error: cannot write ...`` line, exit 2, and the folder as it was (old outputs intact, no temp).

The disk is a 64 KiB tmpfs (needs mount permission: root, as in CI here); the size limit is
RLIMIT_FSIZE, which any process may lower for its child.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from mounts import mounted

PRUNE = ("prune", "snipit:lenet300-100", "--method", "magnitude")  # a 1 MB checkpoint, no data


def snipit(*args: str, cwd: Path, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "snipit_cli", *args], cwd=cwd, env=env, capture_output=True, text=True, **popen
    )


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 64 KiB file system, mounted for this test only."""
    disk = tmp_path / "disk"
    disk.mkdir()
    with mounted(["-t", "tmpfs", "-o", "size=64k", "tmpfs"], disk, "mount a tmpfs"):
        yield disk


def assert_one_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert fragment in result.stderr and "internal error" not in result.stderr
    assert result.stdout == ""


def test_a_full_disk_is_one_line_and_leaves_nothing(small_disk, tmp_path):
    result = snipit(*PRUNE, "-o", "disk/out.safetensors", "-q", cwd=tmp_path)
    assert_one_error(
        result,
        "cannot write disk/out.safetensors: No space left on device "
        "(free some space there or choose another -o folder)",
    )
    assert contents(small_disk) == {}


def test_a_full_disk_keeps_the_outputs_it_would_replace(small_disk, tmp_path):
    (small_disk / "out.safetensors").write_bytes(b"old checkpoint")
    (small_disk / "out.report.json").write_text("old report")
    before = contents(small_disk)
    result = snipit(*PRUNE, "-o", "disk/out.safetensors", "--force", "-q", cwd=tmp_path)
    assert_one_error(result, "No space left on device")
    assert contents(small_disk) == before


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_a_file_size_limit_is_one_line_and_leaves_nothing(tmp_path):
    """``ulimit -f``: snipit ignores SIGXFSZ, so the write fails with EFBIG instead of the signal
    killing the process (which would leave its temp file)."""
    out = tmp_path / "out"
    out.mkdir()
    result = snipit(*PRUNE, "-o", "out/x.safetensors", "-q", cwd=tmp_path, preexec_fn=_limit_file_size)
    assert_one_error(result, "cannot write out/x.safetensors: File too large (the file system or the file")
    assert contents(out) == {}


def test_a_full_disk_leaves_no_half_written_folder(small_disk, tmp_path):
    """A hub-style folder is one output: its temp folder goes, no folder appears."""
    result = snipit(*PRUNE, "-o", "disk/out/", "-q", cwd=tmp_path)
    assert_one_error(result, "cannot write disk/out: No space left on device")
    assert contents(small_disk) == {}


def test_a_file_size_limit_leaves_the_folder_it_would_replace(tmp_path):
    old = tmp_path / "out"
    old.mkdir()
    (old / "model.safetensors").write_bytes(b"old checkpoint")
    (old / "README.md").write_text("old card")
    result = snipit(*PRUNE, "-o", "out/", "--force", "-q", cwd=tmp_path, preexec_fn=_limit_file_size)
    assert_one_error(result, "cannot write out: File too large")
    assert contents(old) == {"README.md": b"old card", "model.safetensors": b"old checkpoint"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
