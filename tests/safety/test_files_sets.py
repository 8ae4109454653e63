"""A run's outputs are committed as a set, and never replace what another run wrote.

Either every output of a run appears or none changes: a folder as a target is refused before
any work, and a publish that fails takes back the outputs already published. Without --force an
output that appeared while the run was writing (another run) is left alone: the run fails.
The races are real: a second process, with the first one stopped (SIGSTOP) in its pruning loop.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from mnist_files import write_learnable_mnist

ARCH = "tiny_models:TinyCNN"
TINY = ("prune", "tiny.pt", "--arch", ARCH, "--input-size", "3,8,8", "--batches", "1", "--batch-size", "4")
FAST = ("prune", "snipit:lenet300-100", "--method", "magnitude", "-q")
# seven SNIP-it steps of 100 batches: after the first step's line there is a second left to stop it
SLOW = ("prune", "snipit:lenet300-100", "--method", "snip-it", "--sparsity", "0.9", "--batches", "100")
APPEARED = "appeared while this run was writing it (another snipit run?); pass --force to replace it"


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def one_error(result) -> str:
    assert result.exit_code == 2, result.stderr
    *steps, last = result.stderr.strip().splitlines()
    assert last.startswith("error: ") and all(s.startswith("step ") for s in steps), result.stderr
    return last


@pytest.fixture
def tiny(tiny_checkpoint: Path) -> Path:
    return tiny_checkpoint


def test_a_folder_as_output_is_refused_before_anything_even_with_force(cli, tiny, tmp_path):
    (tmp_path / "out.safetensors").mkdir()
    (tmp_path / "out.report.json").write_text("old report")
    before = contents(tmp_path)
    last = one_error(cli(*TINY, "-o", "out.safetensors", "--force"))
    assert "out.safetensors is a folder; name a file" in last
    assert contents(tmp_path) == before
    assert names(tmp_path) == {"tiny.pt", "out.safetensors", "out.report.json"}


def test_a_folder_as_report_is_refused_before_the_checkpoint_is_written(cli, tiny, tmp_path):
    (tmp_path / "r.json").mkdir()
    last = one_error(cli(*TINY, "-o", "out.safetensors", "--report", "r.json", "--force"))
    assert "r.json is a folder" in last
    assert names(tmp_path) == {"tiny.pt", "r.json"}


@pytest.mark.parametrize("folder", ["out.safetensors", "out.train-state.safetensors"])
def test_train_with_a_folder_as_either_output_writes_neither(cli, tmp_path, folder):
    write_learnable_mnist(tmp_path / "mnist", 8)
    (tmp_path / folder).mkdir()
    before = contents(tmp_path)
    args = ("train", "snipit:lenet300-100", "--data", "mnist", "--data-root", "mnist", "--split", "test")
    last = one_error(cli(*args, "--epochs", "1", "-o", "out.safetensors", "--force"))
    assert f"{folder} is a folder" in last
    assert contents(tmp_path) == before and names(tmp_path) == {"mnist", folder}


def test_a_failed_second_publish_puts_the_first_output_back(cli, tiny, tmp_path, monkeypatch):
    """The checkpoint is already replaced when moving the report into place fails: the old
    checkpoint comes back from its backup, and no backup or temp file is left."""
    (tmp_path / "out.safetensors").write_bytes(b"old checkpoint")
    (tmp_path / "out.report.json").write_text("old report")
    before = contents(tmp_path)
    real_replace = os.replace

    def failing(src, dst, *args, **kwargs):
        if Path(dst).name == "out.report.json":
            raise OSError(errno.EIO, "Input/output error")
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", failing)
    last = one_error(cli(*TINY, "-o", "out.safetensors", "--force"))
    assert "cannot write out.report.json: Input/output error" in last
    assert contents(tmp_path) == before


def _start(args: tuple[str, ...], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "snipit_cli", *args], cwd=cwd, env=env, stderr=subprocess.PIPE, text=True
    )


def _stopped_in_its_loop(args: tuple[str, ...], cwd: Path) -> subprocess.Popen:
    """A run past its output checks and scoring, stopped until the test lets it go on."""
    proc = _start(args, cwd)
    first = proc.stderr.readline()  # step 1 is done: outputs were checked, nothing is written yet
    proc.send_signal(signal.SIGSTOP)
    assert first.startswith("step 1/7"), first
    assert proc.poll() is None and not (cwd / "same.safetensors").exists()
    return proc


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGCONT)
    rest = proc.stderr.read()
    return proc.wait(timeout=120), rest


def test_two_runs_writing_one_output_one_wins_the_other_fails(tmp_path):
    slow = _stopped_in_its_loop((*SLOW, "-o", "same.safetensors"), tmp_path)
    try:
        fast = subprocess.run(
            [sys.executable, "-m", "snipit_cli", *FAST, "-o", "same.safetensors"],
            cwd=tmp_path,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
        )
    finally:
        code, rest = _finish(slow)
    assert fast.returncode == 0, fast.stderr
    won = contents(tmp_path)
    assert set(won) == {"same.safetensors", "same.report.json"}
    assert code == 2
    assert rest.strip().splitlines()[-1] == f"error: same.safetensors {APPEARED}"
    assert contents(tmp_path) == won  # the winner's checkpoint and report, byte for byte
    assert '"method": "magnitude"' in (tmp_path / "same.report.json").read_text()


def test_a_report_that_appears_mid_run_takes_the_checkpoint_back(tmp_path):
    """The checkpoint is published first; the report's name is taken meanwhile: the run takes its
    checkpoint back, so neither of its outputs is left."""
    slow = _stopped_in_its_loop((*SLOW, "-o", "same.safetensors"), tmp_path)
    (tmp_path / "same.report.json").write_text("another run's report")
    code, rest = _finish(slow)
    assert code == 2
    assert rest.strip().splitlines()[-1] == f"error: same.report.json {APPEARED}"
    assert contents(tmp_path) == {"same.report.json": b"another run's report"}


def test_with_force_the_later_run_replaces(tmp_path):
    slow = _stopped_in_its_loop((*SLOW, "-o", "same.safetensors", "--force"), tmp_path)
    (tmp_path / "same.safetensors").write_bytes(b"another run's checkpoint")
    code, rest = _finish(slow)
    assert code == 0, rest
    assert (tmp_path / "same.safetensors").read_bytes()[:8] != b"another "
    assert names(tmp_path) == {"same.safetensors", "same.report.json"}
