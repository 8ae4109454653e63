"""The installed ``snipit`` script and ``python -m snipit_cli`` as real processes."""

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

from snipit_cli.models.checkpoint import read_tensors

SNIPIT = Path(sysconfig.get_path("scripts")) / "snipit"
ARGS = (
    "prune",
    "timm:resnet18",
    "--num-classes",
    "10",
    "--input-size",
    "3,16,16",
    "--sparsity",
    "0.9",
    "--batch-size",
    "4",
    "--batches",
    "1",
    "--steps",
    "1",
    "-o",
    "out.safetensors",
    "--json",
)


def _run(cmd, cwd, **env):
    return subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **env},
        stdin=subprocess.DEVNULL,
    )


def test_script_prunes_resnet18_to_exactly_90_percent(tmp_path):
    # FORCE_COLOR makes rich treat stderr as a terminal: the progress bar must stay off stdout.
    proc = _run([str(SNIPIT), *ARGS], tmp_path, FORCE_COLOR="1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc == json.loads((tmp_path / "out.report.json").read_text())
    assert "step 3/3" in proc.stderr  # progress went to stderr
    tensors = read_tensors(tmp_path / "out.safetensors")
    weights = [tensors[f"{row['name']}.weight"] for row in doc["layers"]]
    total = sum(w.numel() for w in weights)
    assert total == doc["params"]["prunable"]
    assert sum(int((w == 0).sum()) for w in weights) == round(0.9 * total)


def test_module_entry_point_and_error_exit_code(tmp_path):
    proc = _run([sys.executable, "-m", "snipit_cli", "prune", "timm:resnet18", "--sparsity", "2"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: --sparsity must be a fraction")
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []
