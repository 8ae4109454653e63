"""``snipit prune --structured`` through the CLI: report keys, targets, user checkpoints, failures."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from snipit_cli import load_model

SMALL = (
    "--input-size",
    "3,32,32",
    "--num-classes",
    "10",
    "--batch-size",
    "2",
    "--batches",
    "1",
    "--steps",
    "1",
)


def test_structured_resnet18_json_report(cli, tmp_path):
    result = cli(
        "prune", "timm:resnet18", "--structured", "--sparsity", "0.5", *SMALL, "-o", "s.safetensors", "--json"
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["pruning"]["structured"] is True and doc["pruning"]["method"] == "snap-it"
    assert {"nodes", "macs", "params", "layers"} <= doc.keys()
    assert {"equivalence", "limits"} <= doc["pruning"].keys()
    assert {"dense", "remaining"} <= doc["nodes"].keys() and isinstance(doc["sparsity"]["nodes"], float)
    assert {"dense", "remaining"} <= doc["macs"].keys()
    assert doc["params"]["total"] < doc["params"]["dense"]
    assert doc["sparsity"].keys() == {"target", "achieved", "of", "weights", "nodes"}
    assert {k: doc["sparsity"][k] for k in ("target", "achieved", "of")} == {
        "target": 0.5,
        "achieved": 0.5,
        "of": "nodes",
    }
    assert any(row["shape"] != row["dense_shape"] for row in doc["layers"])
    assert "slim" not in doc  # the replay record lives in the checkpoint only
    assert doc["storage"] == {"format": "dense", "encoding": "dense"}  # a slim model has no zeros to encode
    assert "conv1.weight" in load_file(tmp_path / "s.safetensors")  # plain safetensors
    model = load_model(tmp_path / "s.safetensors")
    assert sum(p.numel() for p in model.parameters()) == doc["params"]["total"]


def test_target_macs_through_the_cli(cli):
    result = cli(
        "prune", "timm:resnet18", "--structured", "--target", "macs", "--sparsity", "0.4", *SMALL, "--json"
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert 0.4 <= doc["macs"]["removed"] <= 0.41 and doc["sparsity"]["of"] == "macs"


@pytest.mark.parametrize("method", ["snap", "l1", "random"])
def test_other_unit_methods(cli, method):
    result = cli(
        "prune", "timm:resnet18", "--structured", "--method", method, "--sparsity", "0.3", *SMALL, "--json"
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["pruning"]["method"] == method and doc["sparsity"]["nodes"] == pytest.approx(
        0.3, abs=1 / doc["nodes"]["dense"]
    )


def test_user_checkpoint_prunes_structurally_and_reloads(cli, tmp_path):
    from tiny_models import TinyCNN

    torch.manual_seed(0)
    trained = TinyCNN(num_classes=5, width=8)
    torch.save({"state_dict": trained.state_dict()}, tmp_path / "trained.pth")
    args = ("--arch", "tiny_models:TinyCNN", "--arch-kwargs", '{"num_classes": 5, "width": 8}')
    result = cli("prune", "trained.pth", *args, "--structured", "--sparsity", "0.5", "--input-size", "3,8,8",
                 "--batch-size", "4", "--batches", "2", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    slim = load_model(tmp_path / "trained-pruned.safetensors")
    assert slim.features[0].out_channels < 8 and slim.head.out_features == 5
    assert sum(p.numel() for p in slim.parameters()) == doc["params"]["total"]


def test_weight_methods_are_refused_in_structured_mode_and_vice_versa(cli, tmp_path):
    result = cli("prune", "timm:resnet18", "--structured", "--method", "snip", *SMALL)
    assert result.exit_code == 2 and "snip is a method for no --structured" in result.stderr
    result = cli("prune", "timm:resnet18", "--target", "macs", *SMALL)
    assert result.exit_code == 2 and "add --structured" in result.stderr
    assert list(tmp_path.iterdir()) == []


LENET5 = """
import torch.nn.functional as F
from torch import nn


class LeNet5(nn.Module):
    \"\"\"Classic LeNet-5 code: the width after the convs is written into the view.\"\"\"

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 800)
        return self.fc2(F.relu(self.fc1(x)))
"""


def test_a_hard_coded_view_keeps_its_group_dense_and_the_run_goes_on(cli, tmp_path):
    """conv2's width is fixed by view(-1, 800): a trial before scoring finds it, it stays dense."""
    (tmp_path / "lenet5.py").write_text(LENET5)
    namespace: dict = {}
    exec(LENET5, namespace)
    torch.manual_seed(0)
    torch.save(namespace["LeNet5"]().state_dict(), tmp_path / "l5.pt")
    args = ("l5.pt", "--arch", "lenet5.py:LeNet5", "--structured", "--sparsity", "0.5",
            "--input-size", "1,28,28", "--batch-size", "2", "--batches", "1", "--steps", "1",
            "-o", "l5.safetensors", "--json")  # fmt: skip
    result = cli("prune", *args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    (kept,) = doc["pruning"]["limits"]["kept_groups"]
    assert kept.startswith(
        "conv2 (without one of its units, the forward fails: RuntimeError: shape '[-1, 800]'"
    )
    assert f"note: kept whole: {kept}" in result.stderr
    assert doc["nodes"] == {"dense": 20 + 500, "remaining": 260}  # conv2's 50 not counted
    assert doc["sparsity"]["nodes"] == 0.5
    assert doc["pruning"]["equivalence"]["max_rel_diff"] <= 1e-4
    slim = load_model(tmp_path / "l5.safetensors", arch=str(tmp_path / "lenet5.py:LeNet5"))
    assert slim.conv2.out_channels == 50 and slim.fc1.in_features == 800
    assert slim.conv1.out_channels + slim.fc1.out_features == 260
    assert slim(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


class FlippedShortcut(nn.Module):
    """A shortcut that reverses the channel order: an op torch-pruning's graph does not model."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 6, 3, padding=1)
        self.hidden = nn.Linear(6, 8)
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        x = torch.relu(self.a(x))
        x = torch.relu(self.b(x) + x.flip(1))
        return self.head(torch.relu(self.hidden(x.mean((2, 3)))))


def test_uncaught_coupling_is_kept_dense_and_named(cli, tmp_path, monkeypatch):
    monkeypatch.setattr("tiny_models.FlippedShortcut", FlippedShortcut, raising=False)
    torch.manual_seed(0)
    torch.save(FlippedShortcut().state_dict(), tmp_path / "flip.pt")
    args = ("flip.pt", "--arch", "tiny_models:FlippedShortcut", "--structured", "--sparsity", "0.5",
            "--input-size", "3,8,8", "--batch-size", "4", "--batches", "1", "--json")  # fmt: skip
    result = cli("prune", *args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    (kept,) = doc["pruning"]["limits"]["kept_groups"]
    assert kept.startswith("b (without one of its units, the output changes (relative difference ")
    assert doc["nodes"] == {"dense": 8, "remaining": 4} and doc["sparsity"]["nodes"] == 0.5
    slim = load_model(tmp_path / "flip-pruned.safetensors")
    assert (slim.a.out_channels, slim.b.out_channels, slim.hidden.out_features) == (6, 6, 4)


class NeedsSixChannels(nn.Module):
    """Runs with one channel less (the first trial passes) but checks a width the chosen pruning
    then breaks: only the proof on a copy after scoring can find it."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.hidden = nn.Linear(8, 2)
        self.head = nn.Linear(2, num_classes)

    def forward(self, x):
        x = torch.relu(self.a(x))
        if x.shape[1] < 6:
            raise ValueError(f"expected 6 channels or more, got {x.shape[1]}")
        return self.head(torch.relu(self.hidden(x.mean((2, 3)))))


def test_a_group_the_chosen_widths_break_is_kept_dense_and_the_run_goes_on(cli, tmp_path, monkeypatch):
    monkeypatch.setattr("tiny_models.NeedsSixChannels", NeedsSixChannels, raising=False)
    torch.manual_seed(0)
    torch.save(NeedsSixChannels().state_dict(), tmp_path / "six.pt")
    # 5 of the 10 units go; hidden can give at most 1 (its floor), so a drops below 6 channels
    args = ("six.pt", "--arch", "tiny_models:NeedsSixChannels", "--structured", "--sparsity", "0.5",
            "--min-keep", "0", "--input-size", "3,8,8", "--batch-size", "4", "--batches", "1", "--steps", "1",
            "--json", "-o", "six.safetensors")  # fmt: skip
    result = cli("prune", *args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    (kept,) = doc["pruning"]["limits"]["kept_groups"]
    assert kept.startswith(
        "a (at its chosen width, the forward fails: ValueError: expected 6 channels or more, got "
    )
    assert doc["nodes"] == {"dense": 2, "remaining": 1}  # chosen again without a: hidden's 2 units
    assert doc["pruning"]["equivalence"]["precision"] == "float64"
    assert doc["pruning"]["equivalence"]["samples"] == 2  # of the batch of 4: a coupling error shows in any
    assert doc["pruning"]["equivalence"]["max_rel_diff"] <= doc["pruning"]["equivalence"]["tolerance"] == 1e-6
    slim = load_model(tmp_path / "six.safetensors", arch="tiny_models:NeedsSixChannels")
    assert (slim.a.out_channels, slim.hidden.out_features) == (8, 1)


def test_a_slim_checkpoint_can_be_pruned_again_either_way(cli, tmp_path):
    first = cli("prune", "timm:resnet18", "--structured", "--sparsity", "0.3", *SMALL, "-o", "a.safetensors")
    assert first.exit_code == 0, first.stderr
    again = ("--batch-size", "2", "--batches", "1", "--steps", "1", "--json")
    slimmer = cli(
        "prune", "a.safetensors", "--structured", "--sparsity", "0.3", *again, "-o", "b.safetensors"
    )
    assert slimmer.exit_code == 0, slimmer.stderr
    sparse = cli("prune", "b.safetensors", "--sparsity", "0.5", *again, "-o", "c.safetensors")
    assert sparse.exit_code == 0, sparse.stderr
    a, b, c = (load_model(tmp_path / f"{n}.safetensors") for n in "abc")
    count = [sum(p.numel() for p in m.parameters()) for m in (a, b, c)]
    assert count[0] > count[1] == count[2]
    assert json.loads(sparse.stdout)["params"]["total"] == count[2]


def test_min_keep_that_blocks_the_target_is_reported(cli):
    args = ("--structured", "--sparsity", "0.9", "--min-keep", "0.5", "--method", "l1", *SMALL, "--json")
    result = cli("prune", "timm:resnet18", *args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["sparsity"]["nodes"] <= 0.5 and doc["pruning"]["limits"]["at_min_keep"]
    assert doc["notes"][0].startswith("reached ") and "short of 0.9" in doc["notes"][0]
    assert "note: reached" in result.stderr
