"""``prune --recalibrate-bn``: BatchNorm statistics re-estimated after the last step, on by
default for real data and off for synthetic; weights and masks untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from split_files import write_cifar10_splits, write_mnist_splits

from snipit_cli.models.checkpoint import read_tensors

SMALL = (
    "snipit:small-cnn",
    "--arch-kwargs",
    '{"width": 4}',
    "--batch-size",
    "8",
    "--batches",
    "2",
    "--steps",
    "1",
)
BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@pytest.fixture
def cifar(tmp_path: Path) -> tuple[str, ...]:
    write_cifar10_splits(tmp_path / "data")
    return ("--data", "cifar10", "--data-root", str(tmp_path / "data"))


def _prune(cli, out: str, *args: str) -> dict:
    result = cli("prune", *SMALL, "-o", out, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _split(path: Path) -> tuple[dict, dict]:
    tensors = read_tensors(path)
    stats = {k: t for k, t in tensors.items() if k.endswith(BN_STATS)}
    return stats, {k: t for k, t in tensors.items() if k not in stats}


@pytest.mark.parametrize("mode", [(), ("--structured",)], ids=["weights", "units"])
def test_real_data_recalibrates_by_default_and_only_the_statistics_change(cli, cifar, tmp_path, mode):
    on = _prune(cli, "on.safetensors", *cifar, *mode, "--recalibrate-batches", "3")
    off = _prune(cli, "off.safetensors", *cifar, *mode, "--no-recalibrate-bn")

    record = on["pruning"]["recalibration"]
    assert record == {
        "data": "cifar10", "batches": 3, "batch_size": 8, "samples": 24, "layers": 4, "batches_read": [3]
    }  # fmt: skip
    assert off["pruning"]["recalibration"] is None
    assert (
        "BatchNorm statistics re-estimated on 16 samples"
        in cli("prune", *SMALL, *cifar, *mode, "-o", "human.safetensors").stdout
    )
    stats_on, rest_on = _split(tmp_path / "on.safetensors")
    stats_off, rest_off = _split(tmp_path / "off.safetensors")
    assert rest_on.keys() == rest_off.keys() and all(torch.equal(rest_on[k], rest_off[k]) for k in rest_on)
    assert {int(t) for k, t in stats_on.items() if k.endswith("num_batches_tracked")} == {3}
    means = [k for k in stats_on if k.endswith("running_mean")]
    assert len(means) == 4 and all(not torch.equal(stats_on[k], stats_off[k]) for k in means)
    if mode:
        check = on["pruning"]["equivalence"]  # checked on the gated model, before recalibrating
        assert check["max_rel_diff"] <= check["tolerance"]
    report = json.loads(cli("report", tmp_path / "on.safetensors", "--json").stdout)
    assert report["pruning"]["recalibration"] == record


def test_synthetic_data_does_not_recalibrate_unless_asked(cli, tmp_path):
    assert _prune(cli, "a.safetensors")["pruning"]["recalibration"] is None
    asked = _prune(cli, "b.safetensors", "--recalibrate-bn")["pruning"]["recalibration"]
    assert asked["data"] == "synthetic" and asked["samples"] == 16


def test_a_data_free_method_reads_the_data_to_recalibrate(cli, cifar):
    doc = _prune(cli, "m.safetensors", *cifar, "--method", "magnitude")
    assert doc["pruning"]["calibration"]["passes"] == 0
    assert doc["pruning"]["recalibration"]["samples"] == 16


def test_a_model_without_batchnorm_has_nothing_to_recalibrate(cli, tmp_path):
    write_mnist_splits(tmp_path / "data")
    result = cli(
        "prune", "snipit:lenet300-100", "--data", "mnist", "--data-root", tmp_path / "data",
        "--batch-size", "8", "--batches", "1", "--steps", "1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["pruning"]["recalibration"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--recalibrate-batches", "0"), "--recalibrate-batches must be 1 or more, got 0"),
        (("--recalibrate-batches", "2", "--no-recalibrate-bn"), "drop --no-recalibrate-bn"),
    ],
)
def test_bad_recalibration_options_are_one_line_errors(cli, tmp_path, args, message):
    result = cli("prune", *SMALL, "-o", "x.safetensors", *args)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.safetensors").exists()
