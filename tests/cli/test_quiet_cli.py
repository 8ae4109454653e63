"""--quiet in report and compare, as a user's process sees it: a warning raised by the model's own
code is one ``warning:`` line, and nothing at all with --quiet, while the result stays on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

NOISY_NET = """
import warnings
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        warnings.warn("noisy forward", UserWarning)
        return self.fc(x.flatten(1))
"""


@pytest.mark.parametrize("command", ["report", "compare"])
def test_quiet_means_the_same_in_every_command(tmp_path, command):
    """--quiet: nothing on stderr but an error (a model's warnings neither), the result on stdout."""
    (tmp_path / "noisynet.py").write_text(NOISY_NET)
    torch.save({"fc.weight": torch.ones(3, 16), "fc.bias": torch.zeros(3)}, tmp_path / "m.pt")
    model = ("m.pt", "--arch", "noisynet.py:Net", "--input-size", "1,4,4")
    args = {"report": model, "compare": ("m.pt", *model)}[command]

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "snipit_cli", command, *args, *extra],
            cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip

    loud, quiet = run("--json"), run("--json", "--quiet")
    assert loud.returncode == quiet.returncode == 0, loud.stderr + quiet.stderr
    assert quiet.stderr == "" and json.loads(quiet.stdout)["command"] == command
    assert "warning: noisy forward (UserWarning)" in loud.stderr  # and shows without --quiet
