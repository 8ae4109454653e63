"""A slim checkpoint of the user's own code (``--arch path/net.py:fn``) reads back everywhere."""

import json
import runpy

import torch

from snipit_cli import load_model

NET = """
from torch import nn


def make(num_classes=4):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes),
    )
"""
SIZE = ("--input-size", "3,16,16")


def test_report_and_compare_of_a_slim_user_code_checkpoint_take_the_arch(cli, tmp_path):
    (tmp_path / "net.py").write_text(NET)
    arch = f"{tmp_path / 'net.py'}:make"
    make = runpy.run_path(str(tmp_path / "net.py"))["make"]
    torch.manual_seed(0)
    torch.save(make().state_dict(), tmp_path / "dense.pt")
    pruned = cli(
        "prune", "dense.pt", "--arch", arch, "--structured", "--sparsity", "0.5", "--steps", "1",
        *SIZE, "--batches", "1", "--batch-size", "2", "-o", "slim.safetensors", "-q",
    )  # fmt: skip
    assert pruned.exit_code == 0, pruned.stderr

    # Without --arch the recorded code file is not run: the user must confirm it.
    refused = cli("report", "slim.safetensors", *SIZE, "--json")
    assert refused.exit_code == 2 and "--arch" in refused.stderr

    report = cli("report", "slim.safetensors", "--arch", arch, *SIZE, "--json")
    assert report.exit_code == 0, report.stderr
    layers = {row["name"]: row for row in json.loads(report.stdout)["layers"]}
    assert layers["0"]["shape"][0] < layers["0"]["dense_shape"][0] == 8  # dense shapes from the arch

    compared = cli("compare", "dense.pt", "slim.safetensors", "--arch", arch, *SIZE, "--json")
    assert compared.exit_code == 0, compared.stderr
    params = [row["params"]["total"] for row in json.loads(compared.stdout)["models"]]
    slim = load_model(tmp_path / "slim.safetensors", arch=arch)
    assert params == [sum(p.numel() for p in m.parameters()) for m in (make(), slim)]
    assert params[1] < params[0]
