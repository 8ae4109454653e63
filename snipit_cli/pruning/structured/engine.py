"""The SNAP-it loop: score units, rank globally, switch gates off, repeat along the schedule.

All steps run on the unmodified model with gates; since gated == slimmed exactly (see
``gates.py``), this is scoring the already slimmed network, and the surgery happens once at the
end. At step i the run reaches node sparsity k_i, i.e. it prunes (k_i - pruned)/(1 - pruned) of
what remains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from snipit_cli.criteria.base import UnitCriterion, UnitScoringContext
from snipit_cli.errors import NumericsError
from snipit_cli.pruning.engine import NullProgress, Progress, counted_batches
from snipit_cli.pruning.structured.gates import gates_installed
from snipit_cli.pruning.structured.groups import UnitGroup
from snipit_cli.sync import LOCAL, Sync
from snipit_cli.types import BatchSource

#: Given the pruned units per group, the fraction of the chosen measure (params, MACs) removed.
Measure = Callable[[list[list[int]]], float]


@dataclass
class UnitPruneResult:
    """Final gates (1 kept, 0 removed) and what bounded the run."""

    gates: list[torch.Tensor]
    schedule: list[float]
    achieved_per_step: list[float] = field(default_factory=list)
    #: Groups that reached their --min-keep floor (they would have lost more units).
    at_floor: list[str] = field(default_factory=list)
    #: Calibration samples this process read over all steps (its shard, under torchrun).
    samples_read: int = 0

    @property
    def pruned(self) -> list[list[int]]:
        return [torch.nonzero(g == 0).flatten().tolist() for g in self.gates]

    @property
    def total_units(self) -> int:
        return sum(g.numel() for g in self.gates)

    @property
    def node_sparsity(self) -> float:
        return sum(int((g == 0).sum()) for g in self.gates) / self.total_units


def prune_units(
    model: nn.Module,
    *,
    groups: list[UnitGroup],
    criterion: UnitCriterion,
    batches_for_step: BatchSource,
    schedule: list[float],
    n_batches: int,
    min_keep: float = 0.05,
    measure: Measure | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    round_to: int = 1,
    sync: Sync = LOCAL,
    dense_sizes: Sequence[int] | None = None,
) -> UnitPruneResult:
    """Choose units to remove along ``schedule``; ``measure`` (default: node fraction) says how
    much a selection removes, and each step prunes the fewest units that reach its fraction.

    With ``round_to`` N > 1, every channel group finally keeps a multiple of N units (the best
    scored of the removed ones come back): CPU kernels run channel counts that are multiples of
    the vector width much faster than odd ones, so the slim model turns MACs into speed.
    Under ``torchrun`` (``sync``) the ranks score their shards and all take rank 0's gates.
    ``dense_sizes`` (default: the groups' sizes now) is what ``min_keep`` is a share of: pruning
    while training slims the model several times, and each floor stays a share of the dense width.
    """
    progress = progress or NullProgress()
    generator = torch.Generator().manual_seed(seed)
    gates = [torch.ones(g.size) for g in groups]
    bases = list(dense_sizes) if dense_sizes is not None else [g.size for g in groups]
    floors = [min(g.size, max(1, math.ceil(min_keep * base))) for g, base in zip(groups, bases, strict=True)]
    result = UnitPruneResult(gates, list(schedule))
    for step, fraction in enumerate(schedule):
        reads = n_batches if criterion.needs_data else 0
        progress.start_step(step, len(schedule), fraction, reads)
        batches = counted_batches(batches_for_step(step), progress, result) if reads else ()
        ctx = UnitScoringContext(model, groups, [g.clone() for g in gates], batches, generator, sync)
        with gates_installed(model, groups, ctx.gates):  # scoring the gated model = the slimmed one
            scores = criterion.score_units(ctx)
        order = _removal_order(scores, gates, floors, groups)
        chosen, achieved = _fewest_reaching(order, gates, fraction, measure)
        for g, u in chosen:
            gates[g][u] = 0.0
        if round_to > 1 and step == len(schedule) - 1:
            _round_kept(gates, scores, groups, round_to)
            achieved = None  # units came back: measure again
        gates[:] = sync.broadcast(gates)  # rank 0's choice, which its search measured
        if measure is None:
            achieved = result.node_sparsity
        elif achieved is None or sync.world_size > 1:
            achieved = measure(result.pruned)
        result.achieved_per_step.append(achieved)
        progress.end_step(step, sum(int(g.sum()) for g in gates), result.total_units)
    result.at_floor = [groups[i].root for i, g in enumerate(gates) if int(g.sum()) <= floors[i] < bases[i]]
    return result


def _round_kept(gates, scores, groups: list[UnitGroup], multiple: int) -> None:
    """Bring back the best-scored removed units until each channel group keeps a multiple of
    ``multiple`` units (or all of them). Heads and grouped-conv offsets are left as they are."""
    for gate, score, group in zip(gates, scores, groups, strict=True):
        if group.kind != "channel":
            continue
        kept = int(gate.sum())
        target = min(group.size, -(-kept // multiple) * multiple)
        removed = torch.nonzero(gate == 0).flatten().tolist()
        best = sorted(removed, key=lambda u, s=score: (-float(s[u]), u))[: target - kept]
        gate[best] = 1.0


def _removal_order(scores, gates, floors, groups) -> list[tuple[int, int]]:
    """Alive units, lowest score first (ties: earlier group, lower unit), minus each group's floor."""
    candidates = []
    for g, (s, gate) in enumerate(zip(scores, gates, strict=True)):
        if not torch.isfinite(s).all():
            raise NumericsError(f"unit scores of group {groups[g].root!r} contain NaN or Inf")
        alive = torch.nonzero(gate).flatten().tolist()
        ranked = sorted(alive, key=lambda u, s=s: (float(s[u]), u))
        removable = max(0, len(alive) - floors[g])
        candidates += [(float(s[u]), g, u) for u in ranked[:removable]]
    candidates.sort(key=lambda c: (c[0], c[1], c[2]))
    return [(g, u) for _, g, u in candidates]


def _fewest_reaching(
    order, gates, fraction, measure: Measure | None
) -> tuple[list[tuple[int, int]], float | None]:
    """The shortest prefix of ``order`` whose removal reaches ``fraction`` (all of it if none does),
    and what it removes as ``measure`` counts it (None without a measure)."""
    total = sum(g.numel() for g in gates)
    pruned_now = total - sum(int(g.sum()) for g in gates)
    if measure is None:
        return order[: max(0, min(len(order), round(fraction * total) - pruned_now))], None
    already = [torch.nonzero(g == 0).flatten().tolist() for g in gates]
    measured: dict[int, float] = {}

    def removed(n: int) -> float:
        trial = [list(units) for units in already]
        for g, u in order[:n]:
            trial[g].append(u)
        measured[n] = measure(trial)
        return measured[n]

    n = smallest_reaching(removed, len(order), fraction)
    n = len(order) if n is None else n
    return order[:n], measured.get(n)


def smallest_reaching(amount: Callable[[int], float], n_max: int, fraction: float) -> int | None:
    """The smallest n in 0..n_max with ``amount(n) >= fraction`` for a non-decreasing ``amount``
    (None if even n_max falls short), in few calls: each call is a trial surgery and a MACs count.

    The bracket narrows by interpolation (what a prefix of units removes is close to linear in
    its length, so a step usually lands next to the answer), falling back to bisection whenever
    interpolation failed to halve the bracket, so it never needs more calls than about twice a
    bisection. Monotone ``amount`` makes the answer unique: the same as bisection finds.
    """
    hi, f_hi = n_max, amount(n_max)
    if f_hi < fraction:
        return None
    lo, f_lo = 0, amount(0)
    if f_lo >= fraction:
        return 0
    bisect = False
    while hi - lo > 1:
        width = hi - lo
        if bisect or f_hi <= f_lo:
            mid = (lo + hi) // 2
        else:  # the first n the line through the bracket's ends says reaches, kept inside it
            guess = lo + (fraction - f_lo) * width / (f_hi - f_lo)
            mid = min(hi - 1, max(lo + 1, math.ceil(guess - 1e-9)))
        f_mid = amount(mid)
        if f_mid >= fraction:
            hi, f_hi = mid, f_mid
        else:
            lo, f_lo = mid, f_mid
        bisect = not bisect and hi - lo > width // 2
    return hi
