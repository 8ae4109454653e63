"""The criterion interface: a small callable that turns a model and data into per-weight scores."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from snipit_cli.pruning.schedule import one_shot_schedule, snipit_schedule
from snipit_cli.pruning.structured.groups import UnitGroup
from snipit_cli.pruning.sync import LOCAL, Sync

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class ScoringContext:
    """What a criterion may look at when it scores one pruning step.

    ``weights`` are the prunable parameters by module name, already masked by earlier steps;
    ``batches`` yields (inputs, labels) on the model's device and is read at most once;
    ``input_size`` (C, H, W) lets data-free criteria build their own input; ``sync`` adds up
    what the ranks of a ``torchrun`` launch computed on their shards of the batches.
    """

    model: nn.Module
    weights: dict[str, nn.Parameter]
    batches: Iterable[Batch]
    generator: torch.Generator
    input_size: tuple[int, ...] | None = None
    sync: Sync = LOCAL


class CriterionInfo(ABC):  # noqa: B024  (abstract through its subclasses' score methods)
    """What the registry, the schedule and ``snipit methods`` read off every criterion."""

    #: ``weights`` for unstructured criteria, ``units`` for ``--structured`` ones.
    level: ClassVar[str]
    #: Registry name, as given to ``--method``.
    name: ClassVar[str]
    #: One line for ``snipit methods``.
    summary: ClassVar[str]
    #: True for criteria that follow the SNIP-it schedule and rescore after every step.
    iterative: ClassVar[bool] = False
    #: False for data-free criteria, which then read no calibration batches.
    needs_data: ClassVar[bool] = True

    def schedule(self, sparsity: float, steps: int | None = None) -> list[float]:
        """Pruned fraction after each scoring round: SNIP-it's (``steps`` S, default 5) for
        iterative criteria, a single step otherwise. Criteria with their own schedule override."""
        if self.iterative:
            return snipit_schedule(sparsity, 5 if steps is None else steps)
        return one_shot_schedule(sparsity)


class Criterion(CriterionInfo):
    """Scores every prunable weight; higher means more important (kept first).

    Scores may be negative (GraSP's are signed); only their order matters.
    """

    level = "weights"

    @abstractmethod
    def score(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        """Return one finite score tensor per entry of ``ctx.weights``, same shapes."""


@dataclass
class UnitScoringContext:
    """What a unit criterion may look at: the unmodified model, its unit groups, current gates.

    ``gates[i]`` holds one value per unit of ``groups[i]``: 1 alive, 0 pruned by earlier steps.
    Scoring the gated model is scoring the slimmed one: the gates reproduce it exactly.
    """

    model: nn.Module
    groups: list[UnitGroup]
    gates: list[torch.Tensor]
    batches: Iterable[Batch]
    generator: torch.Generator
    sync: Sync = LOCAL


class UnitCriterion(CriterionInfo):
    """Scores every prunable unit (channel, neuron, head) of every group; higher is kept first."""

    level = "units"

    @abstractmethod
    def score_units(self, ctx: UnitScoringContext) -> list[torch.Tensor]:
        """One non-negative score per unit, one tensor per group (same order as ``ctx.groups``)."""
