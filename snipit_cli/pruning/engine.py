"""The pruning loop: score, rank globally, mask, repeat along a schedule.

Knows nothing of files or the CLI; progress is reported through a small protocol so the CLI can
draw a bar and tests can record calls. The criterion only scores: this loop builds its context,
turns the scores into masks through the pure step (a :class:`~snipit_cli.pruning.masks.Ranking`,
what :func:`~snipit_cli.pruning.masks.compute_masks` does in one call) and writes them into the weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from snipit_cli.criteria.base import Criterion, ScoringContext
from snipit_cli.errors import NumericsError, UsageError
from snipit_cli.pruning.masks import (
    FloorError,
    Masks,
    Ranking,
    apply_masks,
    count_kept,
    layer_floors,
    zero_dropped,
)
from snipit_cli.pruning.schedule import count_to_prune
from snipit_cli.sync import LOCAL, Sync
from snipit_cli.types import Batch, BatchSource


class Progress(Protocol):
    """Receives the loop's position; every method is optional to act on."""

    def start_step(self, step: int, n_steps: int, fraction: float, n_batches: int) -> None: ...

    def advance_batch(self) -> None: ...

    def end_step(self, step: int, kept: int, total: int) -> None: ...


class NullProgress:
    """Progress sink that ignores everything (library use, ``--quiet``)."""

    def start_step(self, step: int, n_steps: int, fraction: float, n_batches: int) -> None:
        pass

    def advance_batch(self) -> None:
        pass

    def end_step(self, step: int, kept: int, total: int) -> None:
        pass


#: Share of each layer's weights the collapse guard keeps (at least one weight).
MIN_LAYER_DENSITY = 0.001


@dataclass
class PruneResult:
    """Masks after the last step plus what each step did."""

    masks: Masks
    schedule: list[float]
    kept_per_step: list[int] = field(default_factory=list)
    #: Layers whose alive weights all scored exactly zero at some step (no gradient reached them).
    zero_score_layers: list[str] = field(default_factory=list)
    #: Layers the collapse guard held at their minimum (the ranking alone would have emptied them).
    held_layers: list[str] = field(default_factory=list)
    #: Calibration samples this process read over all steps (its shard, under torchrun).
    samples_read: int = 0

    @property
    def total(self) -> int:
        return sum(m.numel() for m in self.masks.values())

    @property
    def achieved_sparsity(self) -> float:
        return (self.total - count_kept(self.masks)) / self.total


def prune(
    model: nn.Module,
    *,
    weights: dict[str, nn.Parameter],
    criterion: Criterion,
    batches_for_step: BatchSource,
    schedule: list[float],
    n_batches: int,
    seed: int = 0,
    progress: Progress | None = None,
    input_size: tuple[int, ...] | None = None,
    min_layer_density: float | None = MIN_LAYER_DENSITY,
    sync: Sync = LOCAL,
) -> PruneResult:
    """Prune ``weights`` of ``model`` in place along ``schedule`` (pruned fractions).

    Weights that are already zero count as pruned, so pruning a pruned checkpoint again only
    removes more. At every step the criterion scores the network as masked so far, the global
    top-k over all weights is kept, and pruned weights stay pruned (monotone masks). Unless
    ``min_layer_density`` is None, no layer is emptied: each keeps that share of its weights (at
    least 1), taken from the global budget, so the total is still exact. Under ``torchrun``
    (``sync``) every rank scores its shard of the batches, the criterion sums over ranks, and
    every rank applies rank 0's masks, so the ranks cannot drift apart.
    """
    progress = progress or NullProgress()
    generator = torch.Generator().manual_seed(seed)
    masks = current_masks(weights)
    total = sum(w.numel() for w in weights.values())
    _check_keeps_some(schedule, total)
    floors = layer_floors(masks, min_layer_density) if min_layer_density is not None else None
    result = PruneResult(masks=masks, schedule=list(schedule))
    alive = None  # flat indices of the alive weights per layer, handed from step to step
    for step, fraction in enumerate(schedule):
        reads = n_batches if criterion.needs_data else 0
        progress.start_step(step, len(schedule), fraction, reads)
        batches = counted_batches(batches_for_step(step), progress, result) if reads else ()
        ctx = ScoringContext(model, weights, batches, generator, input_size, sync)
        ranking = Ranking(criterion.score(ctx), masks, alive)  # a NaN/Inf score is refused here, by layer
        silent = ranking.silent_layers()
        if step == 0:  # later, our own pruning may have cut every path: ranking goes on by position
            _check_some_signal(silent, masks, criterion)
        result.zero_score_layers += [n for n in silent if n not in result.zero_score_layers]
        keep = min(total - count_to_prune(fraction, total), ranking.n_alive)
        _select(ranking, keep, floors, fraction, result.held_layers)
        if sync.world_size > 1:  # rank 0's masks; the alive indices are read off them again
            masks = dict(zip(ranking.names, sync.broadcast(list(ranking.masks().values())), strict=True))
            apply_masks(weights, masks)
        else:  # indices only: full masks are built once, after the last step
            alive, masks = ranking.kept, None
            zero_dropped(weights, ranking.dropped)
        result.kept_per_step.append(keep)
        progress.end_step(step, keep, total)
    result.masks = masks if masks is not None else ranking.masks()
    return result


def _check_keeps_some(schedule: list[float], total: int) -> None:
    """A sparsity that rounds to zero kept weights (0.9999999 of fewer than 5M) would empty the
    whole model, --allow-collapse or not: refuse it before scoring, with the sparsity that keeps one."""
    if schedule and total and count_to_prune(max(schedule), total) >= total:
        raise UsageError(
            f"--sparsity {max(schedule)} of {total:,} prunable weights rounds to 0 kept weights: the "
            "model would have none left, with or without --allow-collapse; keep at least one weight: "
            f"--sparsity at most 1 - 1/{total} = {math.floor((total - 1) / total * 1e12) / 1e12}"
        )


def _select(ranking: Ranking, keep: int, floors, fraction: float, held: list[str]) -> None:
    """Global top-k; with floors, layers it would empty are held at their minimum instead."""
    try:
        ranking.select(keep, floors, held)
    except FloorError as exc:
        raise UsageError(
            f"sparsity {fraction} keeps {keep} weights, fewer than the {exc.needed} the collapse guard "
            "needs to leave every layer some; lower --sparsity or pass --allow-collapse"
        ) from None


def _check_some_signal(silent: list[str], masks: Masks, criterion: Criterion) -> None:
    """All-zero scores on every alive weight mean no gradient reached the model: nothing to rank."""
    if not criterion.needs_data:
        return
    if len(silent) == sum(1 for m in masks.values() if bool(m.any())):
        raise NumericsError(
            f"every {criterion.name} score is zero: no gradient reaches any prunable weight (a model "
            "whose output does not depend on its weights, or all-zero weights); check the model, or "
            "use --method magnitude"
        )


def current_masks(weights: dict[str, nn.Parameter]) -> Masks:
    """What is alive now: every nonzero weight."""
    return {name: w.detach() != 0 for name, w in weights.items()}


class Tally(Protocol):
    samples_read: int


def counted_batches(
    batches: Iterable[Batch], progress: Progress, tally: Tally | None = None
) -> Iterator[Batch]:
    """``batches``, telling ``progress`` of each and adding its samples to ``tally.samples_read``."""
    for batch in batches:
        yield batch
        if tally is not None:
            tally.samples_read += len(batch[1])
        progress.advance_batch()
