"""What a selection of units removes, in the unit the run's ``--target`` counts."""

from __future__ import annotations

import torch
from torch import nn

from snipit_cli.metrics.macs import count_macs
from snipit_cli.pruning.structured.engine import Measure
from snipit_cli.pruning.structured.groups import UnitGraph
from snipit_cli.pruning.structured.surgery import remove_units
from snipit_cli.pruning.structured.trials import graph_copy


def removal_measure(
    model: nn.Module, *, target: str, example: torch.Tensor, unit_graph: UnitGraph
) -> Measure | None:
    """Fraction of params or MACs a selection removes, by removing it from a copy (``None`` for
    nodes: the engine then counts units itself).

    The copy takes ``model``'s traced graph along (:func:`graph_copy`) instead of tracing again:
    the bisection of ``--target params|macs`` measures a dozen selections per step, and the trace
    was most of what each cost.
    """
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
        trial, trial_graph = graph_copy(model, unit_graph)
        remove_units(trial, trial_graph, pruned)
        return 1.0 - count(trial.eval()) / dense_amount

    return removed
