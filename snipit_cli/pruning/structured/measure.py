"""What a selection of units removes, in the unit the run's ``--target`` counts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from snipit_cli.metrics.latency import measure_latency, probe_batch
from snipit_cli.metrics.macs import count_macs
from snipit_cli.pruning.structured.counting import Counter, width_counter
from snipit_cli.pruning.structured.engine import GuidedMeasure, Measure
from snipit_cli.pruning.structured.groups import UnitGraph
from snipit_cli.pruning.structured.latency_table import build_latency_table
from snipit_cli.pruning.structured.options import kernel_multiple
from snipit_cli.pruning.structured.surgery import remove_units
from snipit_cli.pruning.structured.trials import graph_copy


def removal_measure(
    model: nn.Module, *, target: str, example: torch.Tensor, unit_graph: UnitGraph, latency_batch: int = 1
) -> Measure | None:
    """Fraction of params, MACs or latency a selection removes (``None`` for nodes: the engine
    then counts units itself).

    Counted from the widths the selection leaves (:mod:`.counting`) where the model allows,
    else by removing it from a copy; the first selection is counted both ways, and a mismatch
    means trial copies for the rest of the run (the width count is only a shortcut).
    """
    if target == "nodes":
        return None
    size = tuple(example.shape[1:])
    if target == "latency":
        return latency_measure(model, unit_graph, size=size, batch=latency_batch, device=example.device)

    def count(m: nn.Module) -> int:
        return (
            sum(p.numel() for p in m.parameters())
            if target == "params"
            else count_macs(m, size, example.device)
        )

    dense_amount = count(model)

    def on_a_copy(pruned: Sequence[Sequence[int]]) -> int:
        trial, trial_graph = graph_copy(model, unit_graph)
        remove_units(trial, trial_graph, pruned)
        return count(trial.eval())

    counter = _checked(width_counter(model, unit_graph.groups, target=target, input_size=size), on_a_copy)
    return lambda pruned: 1.0 - counter(pruned) / dense_amount


#: Timed forwards per trial of ``--target latency`` (after warm-up): a median of 7 sits within a
#: few percent on a quiet CPU, and the search makes 3-5 trials a step.
TRIAL_REPEATS = 7


def latency_measure(model: nn.Module, unit_graph: UnitGraph, *, size, batch: int, device) -> Measure:
    """Fraction of the dense forward latency (median, at ``batch``) a selection removes, each
    selection timed on a copy by the code ``compare --latency`` uses, guided by a latency table
    of the layers' widths timed on the device (:mod:`.latency_table`) where the model allows one.

    What a width costs depends on the kernels of the device, so both are measured there. The
    table weighs the ranking and places the steps before the last; the last step's width is
    found on timed trial copies. The search assumes a non-decreasing measure; timing noise can
    make a trial read a little off, which moves the step's choice by a few units, and the report
    gives the final figure measured again, with more repeats.
    """

    def median_ms(m: nn.Module) -> float:
        timing = measure_latency(
            m, size, batch_sizes=(batch,), repeats=TRIAL_REPEATS, warmup=2, device=device
        )
        return timing["batch_sizes"][str(batch)]["median_ms"]

    dense_ms = median_ms(model)

    def removed(pruned: Sequence[Sequence[int]]) -> float:
        trial, trial_graph = graph_copy(model, unit_graph)
        remove_units(trial, trial_graph, pruned)
        return 1.0 - median_ms(trial) / dense_ms

    example = probe_batch(size, batch).to(device)
    multiple, _ = kernel_multiple(torch.device(device))
    table = build_latency_table(
        model, unit_graph.groups, example=example, dense_ms=dense_ms, multiple=multiple
    )
    return removed if table is None else GuidedMeasure(exact=removed, guide=table)


def _checked(shortcut: Counter | None, reference: Counter) -> Counter:
    """``shortcut`` once its first answer equals ``reference``'s, else ``reference``."""
    if shortcut is None:
        return reference
    trusted: list[Counter] = []

    def count(pruned: Sequence[Sequence[int]]) -> int:
        if trusted:
            return trusted[0](pruned)
        exact = reference(pruned)
        trusted.append(shortcut if shortcut(pruned) == exact else reference)
        return exact

    return count
