"""What a killed run leaves, what -q prints, and what a legacy file is told.

A killed run's temp files (named ``.NAME.RANDOM.snipit-HOST-PID.tmp``) are removed by the next
run in that folder once that process is gone; nothing else is touched. Under -q a library's
warnings (a real torch UserWarning here) print nothing; without -q each is one ``warning:`` line.
PyTorch's legacy tar format is refused with snipit's advice (--trust-pickle), not torch's
(``weights_only=False``, which a user cannot pass).
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

HOST = re.sub(r"[^A-Za-z0-9]", "_", socket.gethostname()) or "host"
PRUNE = ("prune", "snipit:lenet300-100", "--method", "magnitude", "-q")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_next_run_removes_a_dead_runs_temp_files_only(cli, tmp_path):
    dead, alive = dead_pid(), os.getppid()  # a live process other than this one
    stale = [f".out.safetensors.0a1b2c3d.snipit-{HOST}-{dead}.tmp", f".x.json.99.snipit-{HOST}-{dead}.bak"]
    kept = [
        f".out.safetensors.0a1b2c3d.snipit-{HOST}-{alive}.tmp",  # a run still going
        f".out.safetensors.0a1b2c3d.snipit-otherhost-{dead}.tmp",  # another machine's (NFS)
        ".out.safetensors.abc123.tmp",  # not snipit's naming
        "notes.tmp",
    ]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"partial")
    result = cli(*PRUNE, "-o", "out.safetensors")
    assert result.exit_code == 0, result.stderr
    assert {p.name for p in tmp_path.iterdir()} == {*kept, "out.safetensors", "out.report.json"}


def test_a_sigkilled_run_leaves_only_snipit_named_temps_which_the_next_run_removes(cli, tmp_path):
    """A real SIGKILL mid-write: the temp it leaves carries its pid, and the next run removes it."""
    script = (
        "import os, signal, sys\n"
        "import snipit_cli.fileio as f\n"
        "def killed(tmp):\n"
        "    tmp.write_bytes(b'half a checkpoint')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "f.write_atomic(f.Path('out.safetensors'), killed)\n"
    )
    victim = subprocess.run([sys.executable, "-c", script], cwd=tmp_path)
    assert victim.returncode == -9
    (left,) = tmp_path.iterdir()
    assert re.fullmatch(rf"\.out\.safetensors\.[0-9a-f]+\.snipit-{HOST}-\d+\.tmp", left.name), left.name
    result = cli(*PRUNE, "-o", "other.safetensors")
    assert result.exit_code == 0, result.stderr
    assert {p.name for p in tmp_path.iterdir()} == {"other.safetensors", "other.report.json"}


WARNING_NET = """
import warnings
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        warnings.warn("this layer is deprecated", UserWarning)  # as library code of users' models does
        return self.fc(x.flatten(1))
"""


@pytest.mark.parametrize("quiet", [True, False], ids=["quiet", "not-quiet"])
def test_torch_warnings_are_silent_under_quiet_and_one_line_otherwise(tmp_path, quiet):
    """A warning raised in the user's model (as torch and timm raise them) is a library warning."""
    (tmp_path / "warnnet.py").write_text(WARNING_NET)
    args = ["prune", "m.pt", "--arch", "warnnet.py:Net", "--input-size", "1,4,4", "--method", "snip",
            "--batches", "1", "--batch-size", "4"]  # fmt: skip
    torch.save({"fc.weight": torch.ones(3, 16), "fc.bias": torch.zeros(3)}, tmp_path / "m.pt")
    result = subprocess.run(
        [sys.executable, "-m", "snipit_cli", *args, *(["-q"] if quiet else [])],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    if quiet:
        assert result.stderr == ""
        return
    warnings = [line for line in result.stderr.splitlines() if "this layer is deprecated" in line]
    assert warnings and all(w.startswith("warning: ") and w.endswith("(UserWarning)") for w in warnings)
    assert "warnnet.py:" not in result.stderr  # no source location or code line


def _legacy_tar(path: Path) -> None:
    """The layout of PyTorch's pre-zip, pre-0.4 tar checkpoints: four members."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("sys_info", "pickle", "storages", "tensors"):
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"\x80"))


def test_a_legacy_tar_checkpoint_gets_snipits_advice(cli, tmp_path):
    _legacy_tar(tmp_path / "old.pt")
    result = cli("prune", "old.pt", "--arch", "snipit:lenet300-100", "--method", "magnitude")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: old.pt is in PyTorch's legacy .tar format, which loads only by unpickling (that could "
        "run code from the file). If you trust its source, re-run with --trust-pickle\n"
    )
    assert "weights_only" not in result.stderr
