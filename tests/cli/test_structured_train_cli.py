"""``snipit train --prune-method snap-it --structured``: the --min-keep floor over several events."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from mnist_files import write_learnable_mnist

from snipit_cli.models.loading import load_model

DATA = ("--data", "mnist", "--data-root", "mnist-root", "--split", "test", "--holdout", "0.25")
QUICK = ("--batch-size", "32", "--test-split", "none", "--prune-batches", "1")


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    return write_learnable_mnist(tmp_path / "mnist-root", 96)


def widths(model) -> list[int]:
    return [m.out_channels for m in model.features if hasattr(m, "out_channels")] + [model.fc1.out_features]


def test_min_keep_is_a_share_of_the_dense_width_over_all_events(cli, mnist_root):
    """Three events toward 0.95 with --min-keep 0.5: every group ends at ceil(0.5 * dense width).

    Taking the floor of the already slimmed width would let a group fall to 0.5**3 of it."""
    args = ("--prune-method", "snap-it", "--structured", "--sparsity", "0.95", "--min-keep", "0.5",
            "--steps", "1", "--prune-freq", "1")  # fmt: skip
    result = cli("train", "snipit:small-cnn", "--arch-kwargs", '{"width": 4}', *DATA, *QUICK,
                 "--epochs", "3", *args, "-o", "s.safetensors", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["training"]["pruning"]["events"]) == 3
    dense = [4, 8, 16, 16, 256]
    assert widths(load_model("s.safetensors")) == [math.ceil(0.5 * w) for w in dense]
    assert report["training"]["pruning"]["dense_units"] == {
        "features.0": 4, "features.3": 8, "features.7": 16, "features.10": 16, "fc1": 256,
    }  # fmt: skip


def test_resume_keeps_the_dense_widths_of_the_first_run(cli, mnist_root, monkeypatch):
    """Interrupted after two events, resumed for the third: the floor is still 0.5 of the dense width."""
    from snipit_cli.training import fit as train

    calls = []
    real_epoch = train.train_epoch

    def stop_at_the_third_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_epoch", stop_at_the_third_epoch)
    args = ("--prune-method", "snap-it", "--structured", "--sparsity", "0.95", "--min-keep", "0.5",
            "--steps", "1", "--prune-freq", "1", "--epochs", "3")  # fmt: skip
    model = ("snipit:small-cnn", "--arch-kwargs", '{"width": 4}')
    first = cli("train", *model, *DATA, *QUICK, *args, "--checkpoint-every", "1", "-o", "part.safetensors")
    assert first.exit_code != 0 and len(calls) == 3
    monkeypatch.setattr(train, "train_epoch", real_epoch)
    again = ("part.safetensors", "--resume", *DATA, *QUICK, *args, "-o", "r.safetensors", "--json")
    resumed = cli("train", *again)
    assert resumed.exit_code == 0, resumed.stderr
    pruning = json.loads(resumed.stdout)["training"]["pruning"]
    assert [e["step"] for e in pruning["events"]] == [0, 1, 2]
    assert widths(load_model("r.safetensors")) == [2, 4, 8, 8, 128]
