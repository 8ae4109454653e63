"""BatchNorm recalibration: the running statistics are the plain average of the batches'
statistics, hand-computed here; nothing else of the model changes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from snipit_cli.pruning.batchnorm import recalibrate_batchnorm, tracked_batchnorms

# Two batches of two samples, two features: batch means (2, 4) and (6, 2); unbiased variances
# (2, 8) and (2, 8). The cumulative average: mean (4, 3), variance (2, 8).
BATCHES = [
    (torch.tensor([[1.0, 2.0], [3.0, 6.0]]), torch.zeros(2, dtype=torch.long)),
    (torch.tensor([[5.0, 0.0], [7.0, 4.0]]), torch.zeros(2, dtype=torch.long)),
]


def _identity_then_bn(front: nn.Module | None = None) -> nn.Sequential:
    linear = nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.eye(2))
        linear.bias.zero_()
    bn = nn.BatchNorm1d(2, momentum=0.3)
    with torch.no_grad():  # stale statistics, as a trained checkpoint's would be after pruning
        bn.running_mean.fill_(100.0)
        bn.running_var.fill_(50.0)
        bn.weight.fill_(2.0)
    return nn.Sequential(*([front] if front is not None else []), linear, bn)


def test_the_statistics_are_the_average_of_the_batches():
    model = _identity_then_bn()
    read = recalibrate_batchnorm(model, BATCHES)
    bn = model[-1]
    assert read == 2
    assert torch.equal(bn.running_mean, torch.tensor([4.0, 3.0]))
    assert torch.equal(bn.running_var, torch.tensor([2.0, 8.0]))
    assert int(bn.num_batches_tracked) == 2


@pytest.mark.parametrize("training", [False, True])
def test_modes_momentum_and_weights_are_left_as_they_were(training):
    model = _identity_then_bn(nn.Dropout(0.9))  # dropout in train mode would change the statistics
    model.train(training)
    params = copy.deepcopy(dict(model.named_parameters()))
    recalibrate_batchnorm(model, BATCHES)
    bn = model[-1]
    assert torch.equal(bn.running_mean, torch.tensor([4.0, 3.0]))  # dropout stayed off
    assert bn.momentum == 0.3
    assert all(m.training == training for m in model.modules())
    assert all(torch.equal(p, params[n]) for n, p in model.named_parameters())


def test_untracked_and_absent_batchnorms_are_left_alone():
    untracked = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, track_running_stats=False))
    assert tracked_batchnorms(untracked) == {}
    assert recalibrate_batchnorm(untracked, BATCHES) == 2
    assert tracked_batchnorms(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))) == {}


class _TwoRanks:
    """Rank 0's view of a world of two whose other rank sums in ``other``."""

    rank, world_size = 0, 2

    def __init__(self, other: list[torch.Tensor]):
        self.other = other

    def sum(self, tensors):
        return [t + o for t, o in zip(tensors, self.other, strict=True)]


def test_ranks_are_combined_weighted_by_the_batches_each_read():
    # rank 0 reads batch 0; rank 1 reads batch 1 twice: the average over the three batches read
    # is mean (2 + 6 + 6) / 3, (4 + 2 + 2) / 3; the variances are equal in every batch.
    other_mean, other_var = torch.tensor([6.0, 2.0]), torch.tensor([2.0, 8.0])
    model = _identity_then_bn()
    sync = _TwoRanks([other_mean * 2, other_var * 2, torch.tensor([2.0])])
    recalibrate_batchnorm(model, BATCHES[:1], sync)
    bn = model[-1]
    torch.testing.assert_close(bn.running_mean, torch.tensor([14 / 3, 8 / 3]))
    torch.testing.assert_close(bn.running_var, torch.tensor([2.0, 8.0]))
    assert int(bn.num_batches_tracked) == 3
