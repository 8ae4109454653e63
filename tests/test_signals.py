"""Ctrl-C (SIGINT) or SIGTERM in the middle of a run: no output, no temp file, a clear exit code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from mnist_files import write_learnable_mnist


def _interruptible() -> None:
    """The child as a terminal's foreground job gets it: SIGINT not ignored. A suite started in the
    background (``bash .ci/run &``) passes SIGINT down as SIG_IGN, and Python then keeps ignoring it,
    as a background job should; the run would finish instead of stopping."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_leaves_nothing_behind(tmp_path, signum, code):
    write_learnable_mnist(tmp_path / "mnist", 48)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    # 48 images at 224 px through resnet18, 3 batches x 7 rounds: long enough to interrupt after
    # the first step's log line.
    args = ["prune", "timm:resnet18", "--num-classes", "10", "--data", "mnist", "--data-root", "mnist",
            "--split", "test", "--batches", "10", "--batch-size", "16", "-o", "out.safetensors"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "snipit_cli", *args],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_interruptible,
    )
    first = proc.stderr.readline()  # blocks until step 1 ends: the run is in its pruning loop
    assert first.startswith("step 1/7"), first
    time.sleep(0.5)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signum)
    rest = proc.stderr.read()
    assert proc.wait(timeout=120) == code
    assert rest.strip().splitlines()[-1] == "interrupted; no partial output was left behind"
    assert "Traceback" not in rest
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
