"""The default ``--storage`` follows what the run did, not a stray zero in the tensors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mnist_files import write_learnable_mnist
from safetensors.torch import load_file

from snipit_cli.models.zoo import LeNet300100


def _mlp_with_zeros(path: Path) -> None:
    """TinyMLP(hidden=128) whose weights from input pixel 0 are exactly zero (a dead border pixel;
    no unit removal can take them away) and a zero bias (``nn.init.zeros_``): zeros that no pruning
    made, like the 12 that timm vgg11_bn's pre_logits conv holds at random init."""
    from tiny_models import TinyMLP

    torch.manual_seed(0)
    model = TinyMLP(hidden=128)
    with torch.no_grad():
        model.net[1].weight[:, 0] = 0.0
        model.net[1].bias.zero_()
    torch.save(model.state_dict(), path)


def test_structured_output_is_dense_although_the_model_holds_exact_zeros(cli, tmp_path):
    _mlp_with_zeros(tmp_path / "mlp.pt")
    args = ("mlp.pt", "--arch", "tiny_models:TinyMLP", "--arch-kwargs", '{"hidden": 128}', "--structured",
            "--sparsity", "0.5", "--input-size", "1,4,4", "--batch-size", "2", "--batches", "1",
            "--steps", "1", "-o", "s.safetensors", "--json")  # fmt: skip
    result = cli("prune", *args)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["storage"]["format"] == "dense"
    stored = load_file(tmp_path / "s.safetensors")
    assert sorted(stored) == ["net.1.bias", "net.1.weight", "net.3.bias", "net.3.weight"]
    assert stored["net.1.weight"].shape == (64, 16) and not stored["net.1.weight"][:, 0].any()


def test_unstructured_output_is_sparse_and_explicit_storage_wins(cli, tmp_path):
    _mlp_with_zeros(tmp_path / "mlp.pt")
    args = ("mlp.pt", "--arch", "tiny_models:TinyMLP", "--arch-kwargs", '{"hidden": 128}',
            "--sparsity", "0.9", "--input-size", "1,4,4", "--batch-size", "2", "--batches", "1",
            "--steps", "1", "--json")  # fmt: skip
    sparse = cli("prune", *args, "-o", "u.safetensors")
    assert sparse.exit_code == 0, sparse.stderr
    assert json.loads(sparse.stdout)["storage"]["format"] == "sparse"
    assert "net.1.weight.__bitmask" in load_file(tmp_path / "u.safetensors")
    structured = cli("prune", *args, "--structured", "--storage", "sparse", "-o", "s.safetensors")
    assert structured.exit_code == 0, structured.stderr
    assert json.loads(structured.stdout)["storage"]["format"] == "sparse"


@pytest.mark.parametrize(("pruned", "storage"), [(0.0, "dense"), (0.5, "sparse")])
def test_train_stores_sparse_only_a_model_with_pruned_weights(cli, tmp_path, pruned, storage):
    """A dense checkpoint with one exact zero per layer trains to a dense file; one half zero, sparse."""
    write_learnable_mnist(tmp_path / "mnist-root", 64)
    torch.manual_seed(0)
    model = LeNet300100()
    with torch.no_grad():
        for layer in (model.fc1, model.fc2, model.fc3):
            flat = layer.weight.view(-1)
            flat[: max(1, int(pruned * flat.numel()))] = 0.0
    torch.save(model.state_dict(), tmp_path / "l.pt")
    result = cli("train", "l.pt", "--arch", "snipit:lenet300-100", "--data", "mnist",
                 "--data-root", "mnist-root", "--split", "test", "--holdout", "0.25", "--test-split", "none",
                 "--batch-size", "32", "--epochs", "1", "-o", "t.safetensors", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["storage"]["format"] == storage
    assert ("fc1.weight.__bitmask" in load_file(tmp_path / "t.safetensors")) == (storage == "sparse")
