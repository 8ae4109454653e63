"""The SNAP-it loop: score units, rank globally, switch gates off, repeat along the schedule.

Gates switch units off on the unmodified model; since gated == slimmed exactly (see
``gates.py``), scoring it is scoring the already slimmed network. A caller that can build the
slimmed network (``slimmed``) has the later steps score that instead: the same gradients, from
passes that cost what the slim model costs (half the MACs at SNAP-it 0.5). The model itself is
cut once, at the end. At step i the run reaches node sparsity k_i, i.e. it prunes
(k_i - pruned)/(1 - pruned) of what remains.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

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
class SlimView:
    """The model with the gated-off units removed, to score instead of the gated original:
    ``groups[i]`` is group i of the original with only its ``alive[i]`` units left, in order."""

    model: nn.Module
    groups: list[UnitGroup]
    alive: list[torch.Tensor]


class Guide(Protocol):
    """A cheap model of a costly measure (a latency table): what a selection removes, and per
    group the amount one more removed unit saves."""

    def removed(self, pruned: Sequence[Sequence[int]]) -> float: ...

    def unit_costs(self, pruned: Sequence[Sequence[int]]) -> list[float]: ...


@dataclass
class GuidedMeasure:
    """A measure each call of which is costly (``exact``: a trial model timed) with a ``guide``:
    the ranking weighs each unit's score by its group's unit cost (least score per unit of the
    measure goes first, as latency-aware pruning does), the steps before the last read the
    guide only, and the last step starts at the guide's answer and settles it on ``exact``."""

    exact: Measure
    guide: Guide

    def __call__(self, pruned: list[list[int]]) -> float:
        return self.exact(pruned)


#: Builds the slim view for these gates, or None when it cannot (the engine then scores gated).
Slimmer = Callable[[list[torch.Tensor]], "SlimView | None"]


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
    slimmed: Slimmer | None = None,
) -> UnitPruneResult:
    """Choose units to remove along ``schedule``; ``measure`` (default: node fraction) says how
    much a selection removes, and each step prunes the fewest units that reach its fraction.

    With ``round_to`` N > 1, every channel group finally keeps a multiple of N units (the best
    scored of the removed ones come back): CPU kernels run channel counts that are multiples of
    the vector width much faster than odd ones, so the slim model turns MACs into speed.
    Under ``torchrun`` (``sync``) the ranks score their shards and all take rank 0's gates.
    ``dense_sizes`` (default: the groups' sizes now) is what ``min_keep`` is a share of: pruning
    while training slims the model several times, and each floor stays a share of the dense width.
    ``slimmed`` builds the slim network that steps after the first score, for criteria that read
    data (the scores of data-free ones do not depend on the passes).
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
        last_rounded = round_to > 1 and step == len(schedule) - 1  # ranks the removed units too
        view = slimmed(gates) if slimmed and reads and not last_rounded and result.node_sparsity else None
        scores = _scores(criterion, model, groups, gates, view, batches, generator, sync)
        guided = isinstance(measure, GuidedMeasure)
        costs = measure.guide.unit_costs(result.pruned) if guided else None
        order = _removal_order(scores, gates, floors, groups, costs)
        start = result.achieved_per_step[-1] if result.achieved_per_step else 0.0  # no unit is out yet
        if guided and step < len(schedule) - 1:  # the guide's figures only, until the last step
            chosen, achieved = _fewest_reaching(order, gates, fraction, measure.guide.removed, start)
        elif guided:  # from the guide's answer, on the exact measure (its start is not known)
            guide = measure.guide.removed
            chosen, achieved = _fewest_reaching(order, gates, fraction, measure.exact, guide=guide)
        else:
            chosen, achieved = _fewest_reaching(order, gates, fraction, measure, start)
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


def _scores(criterion, model, groups, gates, view, batches, generator, sync) -> list[torch.Tensor]:
    """Unit scores of this step: on the slim view when there is one (spread back to the original
    units; removed ones get 0, they are not ranked), else on the gated model."""
    if view is None:
        ctx = UnitScoringContext(model, groups, [g.clone() for g in gates], batches, generator, sync)
        with gates_installed(model, groups, ctx.gates):  # scoring the gated model = the slimmed one
            return criterion.score_units(ctx)
    ctx = UnitScoringContext(view.model, view.groups, [torch.ones(g.size) for g in view.groups], batches,
                             generator, sync)  # fmt: skip
    with gates_installed(view.model, view.groups, ctx.gates):
        slim_scores = criterion.score_units(ctx)
    spread = [torch.zeros(g.size) for g in groups]
    for full, alive, score in zip(spread, view.alive, slim_scores, strict=True):
        full[alive] = score.to(full)
    return spread


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


def _removal_order(scores, gates, floors, groups, costs=None) -> list[tuple[int, int]]:
    """Alive units, lowest score first (ties: earlier group, lower unit), minus each group's floor;
    with ``costs`` (per group, what one unit saves), lowest score per unit of cost first, and a
    unit that saves nothing last."""
    candidates = []
    for g, (s, gate) in enumerate(zip(scores, gates, strict=True)):
        if not torch.isfinite(s).all():
            raise NumericsError(f"unit scores of group {groups[g].root!r} contain NaN or Inf")
        alive = torch.nonzero(gate).flatten().tolist()
        ranked = sorted(alive, key=lambda u, s=s: (float(s[u]), u))
        removable = max(0, len(alive) - floors[g])
        cost = 1.0 if costs is None else costs[g]
        candidates += [(float(s[u]) / cost if cost > 0 else math.inf, g, u) for u in ranked[:removable]]
    candidates.sort(key=lambda c: (c[0], c[1], c[2]))
    return [(g, u) for _, g, u in candidates]


def _fewest_reaching(
    order, gates, fraction, measure: Measure | None, start: float | None = None, guide: Measure | None = None
) -> tuple[list[tuple[int, int]], float | None]:
    """The shortest prefix of ``order`` whose removal reaches ``fraction`` (all of it if none does),
    and what it removes as ``measure`` counts it (None without a measure). ``start`` is what the
    gates remove now, when known; a ``guide``'s answer (a cheap estimate of ``measure``) is the
    first prefix ``measure`` is asked about."""
    total = sum(g.numel() for g in gates)
    pruned_now = total - sum(int(g.sum()) for g in gates)
    if measure is None:
        return order[: max(0, min(len(order), round(fraction * total) - pruned_now))], None
    already = [torch.nonzero(g == 0).flatten().tolist() for g in gates]
    measured: dict[int, float] = {}

    def removed(n: int) -> float:
        measured[n] = measure(_with_prefix(already, order, n))
        return measured[n]

    first, within = None, 1
    if guide is not None:  # a timed measure: the guide, offset by where the gates stand, guesses
        start = measure(already) if start is None else start
        offset = guide(already) - start
        first = _prefix_reaching(order, already, fraction + offset, guide)
        within = len(order) // 100  # settled to 1% of the units, below the timing noise
    n = smallest_reaching(removed, len(order), fraction, start=start, first=first, within=within)
    n = len(order) if n is None else n
    return order[:n], measured.get(n)


def _prefix_reaching(order, already, fraction, measure: Measure) -> int:
    """The shortest prefix of ``order`` that ``measure`` says reaches ``fraction`` (all of it if none)."""

    n = smallest_reaching(lambda n: measure(_with_prefix(already, order, n)), len(order), fraction)
    return len(order) if n is None else n


def _with_prefix(already, order, n: int) -> list[list[int]]:
    """The removed units per group once the first ``n`` of ``order`` are removed too."""
    trial = [list(units) for units in already]
    for g, u in order[:n]:
        trial[g].append(u)
    return trial


def smallest_reaching(
    amount: Callable[[int], float],
    n_max: int,
    fraction: float,
    *,
    start: float | None = None,
    first: int | None = None,
    within: int = 1,
) -> int | None:
    """The smallest n in 0..n_max with ``amount(n) >= fraction`` for a non-decreasing ``amount``
    (None if even n_max falls short), in few calls: each call is a trial surgery and a MACs count.

    ``start`` is ``amount(0)`` when the caller knows it (the previous step's figure). The first
    guess assumes what is left removes linearly; then each guess is the secant through the last
    two points (what a prefix of units removes is close to linear in its length, so guesses land
    next to the answer), a little past it until an upper end is found, then strictly inside the
    bracket, with a bisection after two guesses in a row that failed to halve it. A monotone ``amount`` makes
    the answer unique: the same as bisection finds. ``first``, when given, is the first guess (an
    estimate of the answer), taken as it is. With ``within`` > 1 the search stops once the answer is
    bracketed that closely and returns the upper end (one that reaches ``fraction``): for a noisy
    measure, where the last units of precision are noise.
    """
    f_lo = amount(0) if start is None else start
    if f_lo >= fraction:
        return 0
    lo, hi = 0, None  # amount(lo) < fraction <= amount(hi); hi None: not found yet
    prev, last = None, (0, f_lo)
    guess: float = (fraction - f_lo) / max(1.0 - f_lo, 1e-12) * n_max if first is None else first
    given = first is not None
    bisect, slow = False, 0
    while hi is None or hi - lo > max(1, within):
        top = n_max if hi is None else hi - 1
        if lo >= top and hi is None:
            return None  # amount(n_max) < fraction
        bracketed = hi is not None
        width = (hi or 0) - lo
        if bisect:
            guess = (lo + top + 1) / 2
        elif prev is not None and last[1] != prev[1]:
            guess = last[0] + (fraction - last[1]) * (last[0] - prev[0]) / (last[1] - prev[1])
        if not math.isfinite(guess):  # a secant through two nearly equal figures
            guess = (lo + top + 1) / 2
        if not bracketed and not given:  # aim a little past, so that the next point is likely an upper end
            guess = lo + 1.25 * (guess - lo) + 1
        given = False
        n = min(top, max(lo + 1, math.ceil(guess - 1e-9)))
        f = amount(n)
        if f >= fraction:
            hi = n
        else:
            lo = n
        slow = slow + 1 if bracketed and hi is not None and hi - lo > width // 2 else 0
        bisect = slow >= 2  # two guesses in a row that did not halve the bracket
        prev, last = last, (n, f)
    return hi
