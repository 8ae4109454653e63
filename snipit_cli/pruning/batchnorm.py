"""BatchNorm recalibration: re-estimate the running statistics of a pruned network.

Pruning a trained network shifts the input statistics of every BatchNorm after a pruned layer;
the stale running mean and variance, more than the removed weights, then cost the accuracy (a
trained CIFAR-10 CNN at 0.5 weight sparsity, SNIP-it, no fine-tuning: 26% top-1 as pruned, 51%
recalibrated; ``benchmarks/results/quality.md``). The statistics
are re-estimated as a cumulative average over calibration batches (``momentum=None``).

``torch.optim.swa_utils.update_bn`` does the same for one process, but puts the whole model in
train mode, so dropout and drop-path disturb the statistics the eval-mode network will see, and
it knows nothing of other ranks. Here only the BatchNorm layers run in train mode, and under
``torchrun`` the ranks' averages are combined, weighted by the batches each read.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from snipit_cli.sync import LOCAL, Sync
from snipit_cli.types import Batch


def tracked_batchnorms(model: nn.Module) -> dict[str, _BatchNorm]:
    """The BatchNorm layers that keep running statistics (those eval mode uses)."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, _BatchNorm) and m.track_running_stats and m.running_mean is not None
    }


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Batch], sync: Sync | None = None) -> int:
    """Reset and re-estimate every tracked BatchNorm's running mean and variance from ``batches``
    (inputs, labels); returns the number of batches this process read. Weights, the other
    modules' modes and the model's own mode are left as they were."""
    layers = tracked_batchnorms(model)
    sync = sync or LOCAL
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in layers.values()}
    read = 0
    try:
        model.eval()
        for m in layers.values():
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches, not an exponential one
            m.train()
        with torch.no_grad():
            for inputs, _ in batches:
                model(inputs)
                read += 1
    finally:
        for m, mode in modes.items():
            m.training = mode
        for m, momentum in momenta.items():
            m.momentum = momentum
    _combine_ranks(list(layers.values()), read, sync)
    return read


def _combine_ranks(layers: list[_BatchNorm], read: int, sync: Sync) -> None:
    """Each rank averaged its own batches: the all-ranks average weights each by its count."""
    if sync.world_size == 1 or not layers:
        return
    device = layers[0].running_mean.device
    count = torch.tensor([float(read)], device=device)
    stats = [t * read for m in layers for t in (m.running_mean, m.running_var)]
    *summed, total = sync.sum([*stats, count])
    n = max(float(total.item()), 1.0)
    for i, m in enumerate(layers):
        m.running_mean.copy_(summed[2 * i] / n)
        m.running_var.copy_(summed[2 * i + 1] / n)
        m.num_batches_tracked.fill_(int(n))
