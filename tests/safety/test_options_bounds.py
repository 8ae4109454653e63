"""Options that used to reach torch unchecked (issue 15, classes 12, 13 and 15's collapse case):
each is refused up front in one line that names the option and the range it takes, exit 2,
nothing written. Runs through the console script's own entry point, as users see it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from console import listing, run_snipit
from tiny_models import TinyCNN

ARCH = "tiny_models:TinyCNN"
TINY = ("prune", "tiny.pt", "--arch", ARCH, "--input-size", "3,8,8", "--batches", "1", "--batch-size", "4")


def refused(tmp_path: Path, monkeypatch, capsys, args: tuple[str, ...], only_line: bool = True) -> str:
    """Run ``args`` on a tiny state_dict; assert a one-line usage error and an unchanged folder
    (``only_line``: and nothing else on stderr, no torch warning either)."""
    torch.manual_seed(0)
    torch.save(TinyCNN().state_dict(), tmp_path / "tiny.pt")
    before = listing(tmp_path)
    code, stdout, stderr = run_snipit(args, monkeypatch, capsys)
    assert code == 2, stderr
    assert stdout == "" and "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and sum(line.startswith("error:") for line in lines) == 1, stderr
    assert len(lines) == 1 or not only_line, stderr
    assert listing(tmp_path) == before
    return lines[-1]


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--seed", str(10**25)), "--seed must be an integer from 0 to 2**63 - 1 = 9223372036854775807"),
        (("--seed", str(2**64)), "--seed must be an integer from 0 to 2**63 - 1"),
        (("--seed", "-1"), "got -1"),
        (("--batch-size", "100000000000"), "--batch-size 100000000000 needs 76.8 TB for one batch of 3x8x8"),
        (("--device", "meta"), "--device meta is not supported; snipit runs on auto, cpu, cuda or cuda:N"),
        (("--device", "mps"), "--device mps is not supported"),
        (("--device", "xla"), "--device xla is not supported"),
        (("--device", "cpu:3"), "--device cpu:3 is not supported"),
        (("--device", "quantum"), "unknown --device 'quantum'"),
        (("--num-classes", "0"), "--num-classes must be at least 1"),
        (("--arch-kwargs", '{"num_classes": 0}'), "num_classes must be a positive integer, got 0"),
        (("--arch-kwargs", '{"num_classes": -4}'), "cannot be built with num_classes=-4"),
        (("--arch-kwargs", '{"num_classes": true}'), "got true"),
        (("--steps", "10000"), "after step 38 the sparsity no longer changes"),
        (("--sparsity", "0.9999999", "--allow-collapse", "--steps", "1"), "rounds to 0 kept weights"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_option_out_of_range_is_one_line_naming_it(tmp_path, monkeypatch, capsys, extra, fragment):
    assert fragment in refused(tmp_path, monkeypatch, capsys, (*TINY, *extra))


@pytest.mark.parametrize("kwargs", ['{"width": 0}', '{"width": -3}', '{"width": 1.5}', '{"in_chans": 0}'])
def test_zero_or_negative_width_says_the_model_cannot_be_built_without_torch_warnings(
    tmp_path, monkeypatch, capsys, kwargs
):
    line = refused(tmp_path, monkeypatch, capsys, ("prune", "snipit:small-cnn", "--arch-kwargs", kwargs))
    assert "must be a positive integer" in line and "cannot be built with" in line
    assert "--input-size" not in line


NET = """
from torch import nn


class Net(nn.Module):
    def __init__(self, hidden=8):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(12, hidden), nn.ReLU(), nn.Linear(hidden, 3))

    def forward(self, x):
        return self.body(x)
"""


def test_an_empty_layer_from_unknown_kwargs_is_blamed_on_the_kwargs_not_the_input_size(
    tmp_path, monkeypatch, capsys
):
    # `hidden` is no well-known kwarg: the model is built (torch warns of its empty layer while
    # building it), and the probe names that layer instead of asking for --input-size.
    monkeypatch.setattr("sys.dont_write_bytecode", True)
    (tmp_path / "net.py").write_text(NET)
    namespace: dict = {}
    exec(NET, namespace)  # the same class, to save a state_dict that fits it
    torch.save(namespace["Net"](hidden=0).state_dict(), tmp_path / "net.pt")
    args = ("prune", "net.pt", "--arch", "net.py:Net", "--arch-kwargs", '{"hidden": 0}')
    args = (*args, "--input-size", "3,2,2")
    line = refused(tmp_path, monkeypatch, capsys, args, only_line=False)
    assert "the model was built with an empty layer" in line and "--arch-kwargs" in line
    assert "--input-size" not in line


def test_workers_beyond_the_usable_cpus_are_refused_saying_why(tmp_path, monkeypatch, capsys):
    cpus = len(os.sched_getaffinity(0))
    line = refused(tmp_path, monkeypatch, capsys, (*TINY, "--workers", str(cpus + 1)))
    assert f"--workers {cpus + 1} is more than the {cpus} CPUs" in line
    assert f"pass --workers {cpus} or fewer" in line


def test_the_most_steps_the_schedule_can_use_still_run(cli, tmp_path):
    """The bound itself is accepted: 38 steps at 0.9 give 40 strictly growing fractions."""
    torch.manual_seed(0)
    torch.save(TinyCNN().state_dict(), tmp_path / "tiny.pt")
    result = cli(*TINY, "--steps", "38", "--sparsity", "0.9", "--json", "-q")
    assert result.exit_code == 0, result.stderr
    schedule = json.loads(result.stdout)["pruning"]["schedule"]
    assert len(schedule) == 40 and schedule == sorted(set(schedule)) and schedule[-1] == 0.9
    assert schedule[-2] == 0.899999999999
