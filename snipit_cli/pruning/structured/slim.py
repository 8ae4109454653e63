"""The structured pass: choose units with gates, remove them, prove the slim model right.

Prove, then cut. Before scoring, a trial removal on a copy finds the groups the model's own code
cannot lose units of (a hard-coded ``view``); after scoring, a second trial removes the chosen
units on a copy, and a group that breaks there (an op torch-pruning does not model, a layer it
would empty) is kept dense and the units are chosen again without it. Kept groups are named in
``limits.kept_groups``. After the surgery the slim model must reproduce the original with the
removed units' gates at zero (:mod:`~snipit_cli.pruning.structured.verify`), now a confirmation;
otherwise nothing is written.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from snipit_cli.criteria.base import UnitCriterion
from snipit_cli.errors import ModelError
from snipit_cli.metrics.macs import count_macs
from snipit_cli.models.arch import ArchSpec, build_model
from snipit_cli.models.input_spec import Size
from snipit_cli.models.slim import Record, record_slim
from snipit_cli.pruning.engine import Progress
from snipit_cli.pruning.structured.engine import UnitPruneResult, prune_units
from snipit_cli.pruning.structured.groups import UnitGraph, find_unit_groups
from snipit_cli.pruning.structured.heads import classifier_layers, module_names
from snipit_cli.pruning.structured.measure import removal_measure
from snipit_cli.pruning.structured.options import StructuredOptions
from snipit_cli.pruning.structured.trials import broken_groups, slim_copy, slim_view, unremovable_groups
from snipit_cli.pruning.structured.verify import Equivalence, remove_and_check
from snipit_cli.sync import LOCAL, Sync, scored_together
from snipit_cli.types import Calibration

#: How often a run chooses its units again after the proof on a copy kept more groups dense.
MAX_RESTARTS = 2


@dataclass
class SlimOutcome:
    """The pruning result, the dense copy it is checked against, and the JSON replay record."""

    result: UnitPruneResult
    dense: nn.Module
    record: Record
    unit_graph: UnitGraph
    equivalence: Equivalence

    @property
    def max_rel_diff(self) -> float:
        return self.equivalence.max_rel_diff

    @property
    def group_sizes(self) -> dict[str, int]:
        """Units of each pruned group before this surgery, by root name."""
        return {g.root: g.size for g in self.unit_graph.groups}


def slim_model(
    model: nn.Module,
    *,
    arch: ArchSpec | None,
    criterion: UnitCriterion,
    data: Calibration,
    schedule: list[float],
    size: Size,
    options: StructuredOptions,
    exclude: Sequence[str],
    seed: int,
    progress: Progress | None = None,
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
    unit_graph = find_unit_groups(model, example=example, protected=protected, exclude=exclude)
    names = module_names(model, protected)
    probe = _probe(size, device)
    found = unremovable_groups(model, unit_graph=unit_graph, probe=probe, protected=names)
    _keep_dense(unit_graph, found, sync, "without one of its units")
    for attempt in range(MAX_RESTARTS + 1):
        slimmed = (
            slim_view(model, unit_graph, example=example, protected=names, exclude=exclude)
            if _views_pay(model, criterion, data, size)
            else None
        )
        result = _choose_units(model, unit_graph, criterion, data, schedule, example, options, seed, progress,
                               sync, dense_units, slimmed)  # fmt: skip
        # Prove before cutting: the final widths on a copy; a group that breaks there is kept
        # dense and the choice is made again without it (the ranking is global).
        final = dict(enumerate(result.gates))
        found = broken_groups(model, unit_graph=unit_graph, gates=final, probe=probe, protected=names)
        if attempt == MAX_RESTARTS or not _keep_dense(unit_graph, found, sync, "at its chosen width"):
            break  # what is still broken after the last restart, the check below names
    dense = copy.deepcopy(model)
    # Each rank checks on its own first batch; a mismatch on any rank stops all of them.
    equivalence = scored_together(
        sync,
        lambda: remove_and_check(
            model, dense, unit_graph=unit_graph, gates=result.gates, batch=_first_batch(data), protected=names
        ),
    )
    return SlimOutcome(result, dense, record_slim(model, _reference(arch, dense)), unit_graph, equivalence)


def _choose_units(model, unit_graph, criterion, data, schedule, example, options, seed, progress, sync,
                  dense_units, slimmed) -> UnitPruneResult:  # fmt: skip
    """One SNAP-it run over the groups of ``unit_graph`` (gates only, the model is not changed)."""
    if not unit_graph.groups:
        kept = f" (kept whole: {'; '.join(unit_graph.kept[:3])})" if unit_graph.kept else ""
        raise ModelError(
            f"the model has no prunable channel group{kept}; check the model or the --exclude patterns"
        )
    measure = removal_measure(
        model,
        target=options.target,
        example=example,
        unit_graph=unit_graph,
        latency_batch=options.latency_batch,
    )
    return prune_units(
        model,
        groups=unit_graph.groups,
        criterion=criterion,
        batches_for_step=data.batches,
        schedule=schedule,
        n_batches=data.local_batches,
        min_keep=options.min_keep,
        measure=measure,
        seed=seed,
        progress=progress,
        round_to=options.round_to,
        sync=sync,
        dense_sizes=[(dense_units or {}).get(g.root, g.size) for g in unit_graph.groups],
        slimmed=slimmed,
    )


#: MACs a scoring step must read per module of the model for slim views to pay: building one
#: (copy, surgery, trace) costs about a millisecond per module, the passes on it save a share of
#: their MACs. resnet18 at 32 px with 5 batches of 64 reads 17x this, mobilenetv3_small at
#: 224 px with 2 batches of 16 reads 0.8x (its views cost 1.1 s and saved less).
VIEW_MACS_PER_MODULE = 10_000_000


def _views_pay(model: nn.Module, criterion: UnitCriterion, data: Calibration, size: Size) -> bool:
    """Whether later steps should score slim copies (see :data:`VIEW_MACS_PER_MODULE`); decided
    from MACs, not timings, so that the same run scores the same way every time."""
    if not criterion.needs_data:
        return False
    samples = data.local_batches * len(_first_batch(data))
    macs = count_macs(model, tuple(size), next(model.parameters()).device)
    return samples * macs >= VIEW_MACS_PER_MODULE * sum(1 for _ in model.modules())


def _first_batch(data: Calibration) -> torch.Tensor:
    return next(iter(data.batches(0)))[0]


def _probe(size: Size, device: torch.device) -> torch.Tensor:
    """One fixed random input (the same on every rank) for the trial removals: a coupling error
    changes every output, and each trial runs two float64 forwards of it."""
    return torch.randn(1, *size, generator=torch.Generator().manual_seed(0)).to(device)


def _keep_dense(unit_graph: UnitGraph, found: dict[int, str], sync: Sync, how: str) -> bool:
    """Keep dense (and list in ``unit_graph.kept``) the groups ``found`` broken by a trial on a
    copy, ``how`` saying which; all ranks take rank 0's finding. True when any was kept."""
    flags = torch.tensor([i in found for i in range(len(unit_graph.groups))], dtype=torch.bool)
    (flags,) = sync.broadcast([flags])
    groups = unit_graph.groups
    for i in torch.nonzero(flags).flatten().tolist():
        reason = found.get(i, "the trial on rank 0 fails")
        unit_graph.kept.append(f"{groups[i].root} ({how}, {reason})")
    unit_graph.groups = [g for i, g in enumerate(groups) if not flags[i]]
    return bool(flags.any())


def _reference(arch: ArchSpec | None, dense: nn.Module) -> nn.Module:
    """The model the slim record is relative to: the arch built fresh, as ``load_model`` will."""
    if arch is None:
        return dense
    try:
        return build_model(arch)
    except ModelError:
        return dense


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
    protected = module_names(outcome.dense, classifier_layers(outcome.dense, example.float()))
    gates = {g.root: gate for g, gate in zip(outcome.unit_graph.groups, outcome.result.gates, strict=True)}
    slim = slim_copy(shadow, example=example, protected=protected, exclude=exclude, gates_by_root=gates)
    return {name: p.detach().flatten().round().long() for name, p in slim.named_parameters()}


def count_units(model: nn.Module, size: Size, exclude: Sequence[str]) -> int:
    """Prunable units of ``model`` as it is now (for schedules stated against the dense model)."""
    device = next(model.parameters()).device
    example = torch.zeros(1, *size, device=device)
    graph = find_unit_groups(
        model, example=example, protected=classifier_layers(model, example), exclude=exclude
    )
    return sum(g.size for g in graph.groups)
