"""The default ``--storage`` is dense whatever the run did: plain safetensors with the model's keys;
``--storage sparse`` asks for the bitmask archive format."""

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


def test_unstructured_output_is_dense_and_explicit_sparse_storage_wins(cli, tmp_path):
    _mlp_with_zeros(tmp_path / "mlp.pt")
    args = ("mlp.pt", "--arch", "tiny_models:TinyMLP", "--arch-kwargs", '{"hidden": 128}',
            "--sparsity", "0.9", "--input-size", "1,4,4", "--batch-size", "2", "--batches", "1",
            "--steps", "1", "--json")  # fmt: skip
    dense = cli("prune", *args, "-o", "u.safetensors")
    assert dense.exit_code == 0, dense.stderr
    doc = json.loads(dense.stdout)
    assert doc["storage"] == {"format": "dense", "encoding": "dense"}
    stored = load_file(tmp_path / "u.safetensors")  # the model's own keys, the zeros stored as zeros
    assert sorted(stored) == ["net.1.bias", "net.1.weight", "net.3.bias", "net.3.weight"]
    zeros = int((stored["net.1.weight"] == 0).sum()) + int((stored["net.3.weight"] == 0).sum())
    removed = doc["params"]["prunable"] - doc["params"]["prunable_nonzero"]
    assert zeros == removed == round(0.9 * (128 * 16 + 3 * 128))
    sparse = cli("prune", *args, "--storage", "sparse", "-o", "s.safetensors")
    assert sparse.exit_code == 0, sparse.stderr
    assert json.loads(sparse.stdout)["storage"] == {"format": "sparse", "encoding": "bitmask-v1"}
    assert "net.1.weight.__bitmask" in load_file(tmp_path / "s.safetensors")
    structured = cli("prune", *args, "--structured", "--storage", "sparse", "-o", "t.safetensors")
    assert structured.exit_code == 0, structured.stderr
    assert json.loads(structured.stdout)["storage"]["format"] == "sparse"


@pytest.mark.parametrize(("pruned", "storage"), [(0.5, None), (0.5, "sparse")])
def test_train_stores_dense_unless_asked_for_sparse(cli, tmp_path, pruned, storage):
    """A checkpoint half of whose weights are zero trains to a dense file by default, to the bitmask
    encoding with --storage sparse."""
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
                 "--batch-size", "32", "--epochs", "1", "-o", "t.safetensors", "--json",
                 *(("--storage", storage) if storage else ()))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["storage"]["format"] == (storage or "dense")
    stored = load_file(tmp_path / "t.safetensors")
    assert ("fc1.weight.__bitmask" in stored) == (storage == "sparse")
    assert ("fc1.weight" in stored) == (storage is None)
