"""The structured half of ``snipit prune``: choose units with gates, remove them, prove it.

Before scoring, a trial removal on a copy finds the groups the model's own code cannot lose units
of (a hard-coded ``view``): they are kept dense and named in ``limits.kept_groups``. After surgery
the slim model must reproduce the original with the removed units' gates at zero (relative max
difference <= 1e-4 on a calibration batch, eval mode); otherwise nothing is written and the error
names the group that breaks it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from snipit_cli.criteria.base import UnitCriterion
from snipit_cli.data.calibration import CalibrationData
from snipit_cli.errors import ModelError, SnipitError, UsageError
from snipit_cli.metrics.macs import count_macs
from snipit_cli.metrics.sparsity import count_params
from snipit_cli.models.arch import ArchSpec, build_model
from snipit_cli.models.input_spec import Size
from snipit_cli.models.slim import Record, record_slim
from snipit_cli.pruning.engine import Progress
from snipit_cli.pruning.structured.engine import Measure, UnitPruneResult, prune_units
from snipit_cli.pruning.structured.gates import gates_installed
from snipit_cli.pruning.structured.groups import UnitGraph, find_unit_groups
from snipit_cli.pruning.structured.surgery import remove_units
from snipit_cli.pruning.structured.trials import (
    TOLERANCE,
    relative_difference,
    removal_failure,
    slim_copy,
    unremovable_groups,
)
from snipit_cli.pruning.sync import LOCAL, Sync, scored_together
from snipit_cli.pruning.targets import PRUNABLE_TYPES

TARGETS = ("nodes", "params", "macs")


@dataclass
class StructuredOptions:
    """What ``--structured`` adds: what --sparsity counts, and the per-group floor."""

    target: str = "nodes"
    min_keep: float = 0.05
    round_to: int = 1

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UsageError(f"--target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.round_to < 1:
            raise UsageError(f"--round-to must be 1 or more, got {self.round_to}")
        if not 0.0 <= self.min_keep < 1.0:
            raise UsageError(f"--min-keep is a fraction of each group's units in [0, 1), got {self.min_keep}")


@dataclass
class SlimOutcome:
    """The pruning result, the dense copy it is checked against, and the JSON replay record."""

    result: UnitPruneResult
    dense: nn.Module
    record: Record
    unit_graph: UnitGraph
    max_rel_diff: float

    @property
    def group_sizes(self) -> dict[str, int]:
        """Units of each pruned group before this surgery, by root name."""
        return {g.root: g.size for g in self.unit_graph.groups}


def slim_model(
    model: nn.Module,
    arch: ArchSpec | None,
    criterion: UnitCriterion,
    data: CalibrationData,
    schedule: list[float],
    size: Size,
    options: StructuredOptions,
    exclude: Sequence[str],
    seed: int,
    progress: Progress | None,
    sync: Sync = LOCAL,
    dense_units: dict[str, int] | None = None,
) -> SlimOutcome:
    """Prune units of ``model`` in place along ``schedule`` and remove them physically.

    ``dense_units`` (group root -> units of the dense model) is what ``--min-keep`` is a share
    of when the model was slimmed before (pruning while training); default: its widths now.
    """
    device = next(model.parameters()).device
    example = torch.zeros(1, *size, device=device)
    protected = classifier_layers(model, example)
    model.eval()
    unit_graph = find_unit_groups(model, example, protected, exclude)
    names = _names(model, protected)
    _keep_unremovable(model, unit_graph, _probe(size, device), names, sync)
    if not unit_graph.groups:
        kept = f" (kept whole: {'; '.join(unit_graph.kept[:3])})" if unit_graph.kept else ""
        raise ModelError(
            f"the model has no prunable channel group{kept}; check the model or the --exclude patterns"
        )
    roots = [g.root for g in unit_graph.groups]
    measure = _measure(model, options.target, example, names, exclude, size, roots)
    bases = [(dense_units or {}).get(g.root, g.size) for g in unit_graph.groups]
    result = prune_units(
        model, unit_graph.groups, criterion, data.batches, schedule, data.local_batches,
        options.min_keep, measure, seed, progress, options.round_to, sync, bases,
    )  # fmt: skip
    dense = copy.deepcopy(model)
    # Each rank checks on its own first batch; a mismatch on any rank stops all of them.
    diff = scored_together(
        sync, lambda: _remove_and_check(model, dense, unit_graph, result, _first_batch(data), names)
    )
    return SlimOutcome(result, dense, record_slim(model, _reference(arch, dense)), unit_graph, diff)


def _probe(size: Size, device: torch.device) -> torch.Tensor:
    """Two fixed random inputs (the same on every rank) for the trial removals."""
    return torch.randn(2, *size, generator=torch.Generator().manual_seed(0)).to(device)


def _keep_unremovable(model, unit_graph: UnitGraph, probe, protected, sync: Sync) -> None:
    """Keep dense (and list in ``unit_graph.kept``) the groups whose removal breaks the model's
    forward, found by trial removals on a copy before any scoring; all ranks take rank 0's."""
    found = unremovable_groups(model, unit_graph, probe, protected)
    flags = torch.tensor([i in found for i in range(len(unit_graph.groups))], dtype=torch.bool)
    (flags,) = sync.broadcast([flags])
    groups = unit_graph.groups
    for i in torch.nonzero(flags).flatten().tolist():
        reason = found.get(i, "the trial on rank 0 fails")
        unit_graph.kept.append(f"{groups[i].root} (without one of its units, {reason})")
    unit_graph.groups = [g for i, g in enumerate(groups) if not flags[i]]


def _remove_and_check(model, dense, unit_graph: UnitGraph, result: UnitPruneResult, batch, names) -> float:
    """Surgery, then the equivalence check; whatever the user's model raises names the group."""
    try:
        remove_units(model, unit_graph, result.pruned)
        return check_equivalence(model, dense, unit_graph, result.gates, batch, names)
    except SnipitError:
        raise
    except Exception as exc:  # noqa: BLE001 (the user's forward code can raise anything)
        first_line = (str(exc).strip().splitlines() or [""])[0][:160]
        culprit = _first_broken_group(dense, unit_graph, result.gates, batch, names)
        raise ModelError(
            f"the slimmed model does not run ({type(exc).__name__}: {first_line}){culprit}; "
            "nothing was written"
        ) from exc


def _first_batch(data: CalibrationData) -> torch.Tensor:
    return next(iter(data.batches(0)))[0]


def classifier_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Layers whose outputs must stay whole: the last Conv/Linear the forward pass runs, and every
    Conv/Linear whose output has the model's output shape (e.g. DeiT's distillation head)."""
    ran: list[tuple[nn.Module, torch.Size]] = []
    handles = [
        m.register_forward_hook(lambda m, _, out: ran.append((m, out.shape)))
        for m in model.modules()
        if isinstance(m, PRUNABLE_TYPES)
    ]
    try:
        with torch.no_grad():
            final = model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    heads = {m for m, shape in ran if shape == final.shape}
    return list({*heads, *(m for m, _ in ran[-1:])})


def check_equivalence(
    slim: nn.Module,
    dense: nn.Module,
    unit_graph: UnitGraph,
    gates: list[torch.Tensor],
    batch: torch.Tensor,
    protected: Sequence[str] = (),
) -> float:
    """Relative max difference of slim vs gated dense outputs; an error above the tolerance."""
    slim.eval(), dense.eval()
    with torch.no_grad():
        out = slim(batch)
        with gates_installed(dense, unit_graph.groups, gates):
            reference = dense(batch)
    diff = relative_difference(out, reference)
    if not diff <= TOLERANCE:
        culprit = _first_broken_group(dense, unit_graph, gates, batch, protected)
        raise ModelError(
            f"the slimmed model does not match the gated original (relative difference {diff:.2e} > "
            f"{TOLERANCE:g}){culprit}; nothing was written"
        )
    return diff


def _first_broken_group(dense, unit_graph, gates, batch, protected) -> str:
    """Remove each group alone from a copy to find one whose coupling torch-pruning missed."""
    for i, group in enumerate(unit_graph.groups):
        if bool(gates[i].all()):
            continue
        failure = removal_failure(dense, unit_graph, {i: gates[i]}, batch, protected)
        if failure is not None:
            return (
                f": removing units of {group.root} alone breaks it ({failure}; a width fixed in the model's "
                f"code, or an op torch-pruning does not model); keep it with --exclude '{group.root}'"
            )
    return ""


def kept_indices(outcome: SlimOutcome, size: Size, exclude: Sequence[str]) -> dict[str, torch.Tensor]:
    """For every parameter of the slim model, the flat indices of its entries in the dense one.

    The same surgery is replayed on a float64 copy whose parameters hold their own flat indices
    (exact up to 2**53), so optimizer state can follow the weights through the surgery.
    """
    shadow = copy.deepcopy(outcome.dense).double()
    with torch.no_grad():
        for p in shadow.parameters():
            p.copy_(torch.arange(p.numel(), dtype=torch.float64).view_as(p))
    device = next(shadow.parameters()).device
    example = torch.zeros(1, *size, device=device, dtype=torch.float64)
    protected = _names(outcome.dense, classifier_layers(outcome.dense, example.float()))
    gates = {g.root: gate for g, gate in zip(outcome.unit_graph.groups, outcome.result.gates, strict=True)}
    slim = slim_copy(shadow, example, protected, exclude, gates)
    return {name: p.detach().flatten().round().long() for name, p in slim.named_parameters()}


def count_units(model: nn.Module, size: Size, exclude: Sequence[str]) -> int:
    """Prunable units of ``model`` as it is now (for schedules stated against the dense model)."""
    device = next(model.parameters()).device
    example = torch.zeros(1, *size, device=device)
    graph = find_unit_groups(model, example, classifier_layers(model, example), exclude)
    return sum(g.size for g in graph.groups)


def _names(model: nn.Module, modules: Sequence[nn.Module]) -> list[str]:
    return [n for n, m in model.named_modules() if m in modules]


def _measure(model, target, example, protected, exclude, size, roots) -> Measure | None:
    """Fraction of params or MACs a selection removes, by slimming a copy (``None`` for nodes)."""
    if target == "nodes":
        return None

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
        return 1.0 - count(slim_copy(model, example, protected, exclude, gates)) / dense_amount

    return removed


def _reference(arch: ArchSpec | None, dense: nn.Module) -> nn.Module:
    """The model the slim record is relative to: the arch built fresh, as ``load_model`` will."""
    if arch is None:
        return dense
    try:
        return build_model(arch)
    except ModelError:
        return dense


def slim_report(outcome: SlimOutcome, model: nn.Module, size: Size) -> dict[str, Any]:
    """Node and MAC figures of a slim model against its dense original, and what bounded it."""
    result = outcome.result
    macs_dense, macs_slim = count_macs(outcome.dense, size), count_macs(model, size)
    removed = {
        "nodes": result.node_sparsity,
        "params": 1 - count_params(model) / count_params(outcome.dense),
        "macs": 1 - macs_slim / macs_dense,
    }
    return {
        "removed": removed,
        "nodes": {
            "dense": result.total_units,
            "remaining": result.total_units - sum(len(p) for p in result.pruned),
            "sparsity": result.node_sparsity,
        },
        "macs": {"dense": macs_dense, "pruned": macs_slim, "removed": removed["macs"]},
        "equivalence": {"max_rel_diff": outcome.max_rel_diff, "tolerance": TOLERANCE},
        "limits": {"kept_groups": outcome.unit_graph.kept, "at_min_keep": result.at_floor},
    }


def limit_notes(limits: dict[str, list[str]]) -> list[str]:
    """One-line remarks on what kept the run from pruning more."""
    notes = []
    if limits["kept_groups"]:
        notes.append(f"kept whole: {'; '.join(limits['kept_groups'][:5])}")
    if limits["at_min_keep"]:
        notes.append(f"groups held at their --min-keep floor: {', '.join(limits['at_min_keep'][:5])}")
    return notes
