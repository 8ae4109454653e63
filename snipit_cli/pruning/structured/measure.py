"""What a selection of units removes, in the unit the run's ``--target`` counts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from snipit_cli.metrics.macs import count_macs
from snipit_cli.pruning.structured.engine import Measure
from snipit_cli.pruning.structured.trials import slim_copy


def removal_measure(
    model: nn.Module,
    *,
    target: str,
    example: torch.Tensor,
    protected: Sequence[str],
    exclude: Sequence[str],
    roots: Sequence[str],
) -> Measure | None:
    """Fraction of params or MACs a selection removes, by slimming a copy (``None`` for nodes:
    the engine then counts units itself)."""
    if target == "nodes":
        return None
    size = tuple(example.shape[1:])

    def count(m: nn.Module) -> int:
        return (
            sum(p.numel() for p in m.parameters())
            if target == "params"
            else count_macs(m, size, example.device)
        )

    dense_amount = count(model)

    def removed(pruned: list[list[int]]) -> float:
        gates = {}
        for root, units in zip(roots, pruned, strict=True):
            gate = torch.ones(max(units, default=0) + 1)
            gate[units] = 0
            gates[root] = gate
        trial = slim_copy(model, example=example, protected=protected, exclude=exclude, gates_by_root=gates)
        return 1.0 - count(trial) / dense_amount

    return removed
