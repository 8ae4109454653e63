"""Checkpoint layouts users have, written by torch.save as their tools write them, loaded
through ``snipit prune``: older PyTorch versions, Lightning, EMA weights, DDP, torch.compile."""

import argparse
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from tiny_models import TinyCNN
from torch import nn

from snipit_cli.models.checkpoint import read_tensors

ARCH = "tiny_models:TinyCNN"
HERE = Path(__file__).parent
SMALL = ("--method", "magnitude", "--sparsity", "0.5", "--input-size", "3,8,8", "--batches", "1")


class LitLike(nn.Module):
    """What a PyTorch Lightning module is to its checkpoint: an ``nn.Module`` holding the network
    as an attribute (``self.model``, ``self.net``...), so its state_dict keys carry that name."""

    def __init__(self, attribute: str = "model") -> None:
        super().__init__()
        setattr(self, attribute, TinyCNN())


def _trained(seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    model = TinyCNN()
    for bn in (model.features[1], model.features[4]):
        bn.running_mean.uniform_()  # buffers must come from the file too
        bn.num_batches_tracked.fill_(7 + seed)
    return model


def _prune(cli, path: Path, arch: str = ARCH) -> dict[str, torch.Tensor]:
    """``snipit prune`` the file by magnitude: every kept value is the file's own."""
    out = path.with_name(f"{path.stem}-pruned.safetensors")
    result = cli("prune", path, "--arch", arch, *SMALL, "-o", out, "-q")
    assert result.exit_code == 0, result.stderr
    return read_tensors(out)


def _assert_values_of(pruned: dict[str, torch.Tensor], state: dict[str, torch.Tensor], prefix: str = ""):
    expected = {k.removeprefix(prefix): v for k, v in state.items()}
    assert pruned.keys() == expected.keys()
    for name, value in pruned.items():
        assert torch.equal(value, torch.where(value != 0, expected[name], 0)), name
    kept = sum(int((v != 0).sum()) for k, v in pruned.items() if k.endswith("weight"))
    assert kept > 0
    means = [k for k in expected if k.endswith("features.1.running_mean")]
    assert len(means) == 1 and torch.equal(pruned[means[0]], expected[means[0]])


def _old_state_dict(model: torch.nn.Module) -> OrderedDict:
    """A state_dict as PyTorch before 0.4.1 saved it: BatchNorm at version 1, no num_batches_tracked."""
    state = model.state_dict()
    for name in [k for k in state if k.endswith("num_batches_tracked")]:
        del state[name]
        state._metadata[name.removesuffix(".num_batches_tracked")]["version"] = 1
    return state


def test_a_file_from_before_pytorch_0_4_1_loads(cli, tmp_path):
    model = _trained()
    path = tmp_path / "old.pth"
    torch.save(_old_state_dict(model), path)
    pruned = _prune(cli, path)
    # BatchNorm's own loading fills the counter of an old file with 0, as torch does.
    assert int(pruned["features.1.num_batches_tracked"]) == 0
    expected = {**model.state_dict(), "features.1.num_batches_tracked": torch.tensor(0)}
    expected["features.4.num_batches_tracked"] = torch.tensor(0)
    _assert_values_of(pruned, expected)


def test_a_current_file_missing_a_counter_is_still_refused_in_one_line(cli, tmp_path):
    state = _trained().state_dict()  # version 2 metadata: the counter must be there
    del state["features.4.num_batches_tracked"]
    path = tmp_path / "cut.pth"
    torch.save(state, path)
    result = cli("prune", path, "--arch", ARCH, *SMALL, "-q")
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and line.endswith(
        "does not fit the architecture: missing in file: features.4.num_batches_tracked. "
        "Check --arch, --arch-kwargs and --num-classes"
    )


def test_a_shape_mismatch_is_one_line(cli, tmp_path):
    path = tmp_path / "nine.pth"
    torch.save(TinyCNN(num_classes=9).state_dict(), path)
    result = cli("prune", path, "--arch", ARCH, *SMALL, "-q")
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "shape mismatch (file vs model): head.weight (9, 8) vs (5, 8), head.bias (9,) vs (5,)" in line


def test_a_module_refusing_a_file_without_versions_is_one_line(cli, tmp_path):
    import torchvision

    path = tmp_path / "plain.pt"
    torch.save(dict(torchvision.models.mnasnet0_5(num_classes=4).state_dict()), path)  # no _metadata
    result = cli("prune", path, "--arch", "torchvision:mnasnet0_5", "--num-classes", "4", *SMALL, "-q")
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "version should be set to 1 or 2 instead of None (the file records no module versions" in line


@pytest.mark.parametrize("attribute", ["model", "net"])
def test_a_lightning_checkpoint_loads(cli, tmp_path, attribute):
    lit = LitLike(attribute)
    lit.load_state_dict({f"{attribute}.{k}": v for k, v in _trained().state_dict().items()})
    checkpoint = {  # the keys Lightning's ModelCheckpoint writes
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": lit.state_dict(),
        "loops": {},
        "callbacks": {},
        "optimizer_states": [torch.optim.SGD(lit.parameters(), lr=0.1).state_dict()],
        "lr_schedulers": [],
        "hyper_parameters": {"lr": 0.1, "num_classes": 5},
    }
    path = tmp_path / "epoch=3-step=120.ckpt"
    torch.save(checkpoint, path)
    _assert_values_of(_prune(cli, path), lit.state_dict(), prefix=f"{attribute}.")


def test_an_old_lightning_checkpoint_keeps_its_module_versions(cli, tmp_path):
    lit = LitLike("model")
    lit.model.load_state_dict(_trained().state_dict())
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": _old_state_dict(lit), "epoch": 1}, path)  # versions follow the prefix
    pruned = _prune(cli, path)
    assert int(pruned["features.4.num_batches_tracked"]) == 0


def test_a_timm_training_checkpoint_uses_its_plain_weights(cli, tmp_path):
    plain, ema = _trained(0), _trained(1)
    checkpoint = {  # timm's train.py CheckpointSaver, args included
        "epoch": 10,
        "arch": "tinycnn",
        "state_dict": plain.state_dict(),
        "optimizer": torch.optim.SGD(plain.parameters(), lr=0.1).state_dict(),
        "version": 2,
        "args": argparse.Namespace(model="tinycnn", lr=0.1),
        "state_dict_ema": ema.state_dict(),
        "metric": 71.5,
    }
    path = tmp_path / "model_best.pth.tar"  # the name timm's CheckpointSaver gives it
    torch.save(checkpoint, path)
    _assert_values_of(_prune(cli, path), plain.state_dict())


@pytest.mark.parametrize("key", ["state_dict_ema", "model_ema"])
def test_ema_weights_load_when_they_are_all_there_is(cli, tmp_path, key):
    ema = _trained(1)
    path = tmp_path / "ema.pth"
    torch.save({key: ema.state_dict(), "epoch": 10}, path)
    _assert_values_of(_prune(cli, path), ema.state_dict())


def test_weights_beside_the_scripts_own_tensors_load(cli, tmp_path):
    model = _trained()
    path = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "best_acc": torch.tensor(0.91), "step": torch.tensor(40)}, path)
    _assert_values_of(_prune(cli, path), model.state_dict())


def test_compiled_and_data_parallel_models_load(cli, tmp_path):
    model = _trained()
    for name, wrapped, prefix in [
        ("compiled", torch.compile(model), "_orig_mod."),  # state_dict() compiles nothing
        ("dp", torch.nn.DataParallel(model), "module."),
        ("dp-compiled", torch.compile(torch.nn.DataParallel(model)), "_orig_mod.module."),
    ]:
        state = wrapped.state_dict()
        assert all(k.startswith(prefix) for k in state)
        path = tmp_path / f"{name}.pt"
        torch.save(state, path)
        _assert_values_of(_prune(cli, path), model.state_dict())


def test_a_model_whose_child_is_called_module_keeps_its_names(cli, tmp_path):
    holder = LitLike("module")  # as layout_models.Holder
    holder.module.load_state_dict(_trained().state_dict())
    path = tmp_path / "holder.pt"
    torch.save(holder.state_dict(), path)  # keys module.features...: they fit as saved
    _assert_values_of(_prune(cli, path, f"{HERE / 'layout_models.py'}:Holder"), holder.state_dict())
