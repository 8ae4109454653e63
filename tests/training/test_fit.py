"""training/fit.py: the training core on its own (no files, no CLI), and its hooks."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from snipit_cli.data.training import EpochData
from snipit_cli.training.fit import fit, start
from snipit_cli.training.optim import OptimizerOptions


def _data(n: int, seed: int) -> EpochData:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)
    return EpochData(TensorDataset(x, y), batch_size=4, seed=0, shuffle=True, device=torch.device("cpu"),
                     num_classes=3)  # fmt: skip


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))


def test_fit_holds_the_masks_records_every_epoch_and_returns_a_new_state():
    model = _model()
    weights = {"0.weight": model[0].weight, "2.weight": model[2].weight}
    masks = {name: (torch.arange(w.numel()) % 2 == 0).reshape(w.shape) for name, w in weights.items()}
    with torch.no_grad():
        for name, w in weights.items():
            w.mul_(masks[name])
    first = start(model, weights=weights, masks=masks, options=OptimizerOptions(lr=0.1))
    seen = []
    done = fit(first, train=_data(12, 0), test=_data(8, 1), options=OptimizerOptions(lr=0.1), epochs=3,
               after_epoch=lambda state: seen.append(state.epochs_done))  # fmt: skip
    assert (first.epochs_done, first.step, first.history) == (0, 0, ())  # the caller's state is untouched
    assert (done.epochs_done, done.step, seen) == (3, 9, [1, 2, 3])
    assert [r["epoch"] for r in done.history] == [1, 2, 3]
    assert all(r["test_top1"] is not None and r["weight_sparsity"] == 0.5 for r in done.history)
    for name, w in weights.items():
        assert torch.equal(w[~masks[name]], torch.zeros(int((~masks[name]).sum())))
        assert w[masks[name]].ne(0).all()


def test_before_epoch_returns_the_state_the_epoch_trains(tmp_path: Path):
    """What pruning while training relies on: the hook's state (here: new masks) is what trains."""
    model = _model()
    weights = {"0.weight": model[0].weight}
    dense = {"0.weight": torch.ones_like(model[0].weight, dtype=torch.bool)}
    half = {"0.weight": torch.arange(48).reshape(8, 6) < 24}

    def prune_at_epoch_1(epoch, state):
        return replace(state, masks=half) if epoch == 1 else state

    state = start(model, weights=weights, masks=dense, options=OptimizerOptions(lr=0.1))
    done = fit(state, train=_data(8, 0), test=None, options=OptimizerOptions(lr=0.1), epochs=2,
               before_epoch=prune_at_epoch_1)  # fmt: skip
    assert [r["weight_sparsity"] for r in done.history] == [0.0, 0.5]
    assert [r["test_top1"] for r in done.history] == [None, None]
    assert model[0].weight[24:].eq(0).all() and done.masks is half
