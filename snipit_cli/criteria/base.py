"""The criterion interface: a small callable that turns a model and data into per-weight scores.

Criteria are the bottom of the algorithm stack: they import nothing of ``pruning/``. The engines
(``pruning.engine``, ``pruning.structured.engine``) build the contexts, install the unit gates and
turn scores into masks; a criterion only scores what it is handed. Its schedule is declared, not
computed here (:attr:`CriterionInfo.schedule_kind`): ``pruning.schedule.schedule_for`` is the one
place that turns a kind and a sparsity into fractions, so the schedules stay plain functions
testable on their own and a criterion cannot grow a second way of computing one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import torch
from torch import nn

from snipit_cli.sync import LOCAL, Sync
from snipit_cli.types import Batch

#: Schedule families ``pruning.schedule.schedule_for`` knows: a single step, SNIP-it's halving
#: steps, SynFlow's exponential ones.
ScheduleKind = Literal["one-shot", "snipit", "exponential"]


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
    #: The schedule family the criterion is meant to run along (see ``pruning.schedule``).
    schedule_kind: ClassVar[ScheduleKind] = "one-shot"
    #: True for criteria that rescore after every step: those whose schedule has more than one.
    iterative: ClassVar[bool] = False
    #: False for data-free criteria, which then read no calibration batches.
    needs_data: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.iterative = cls.schedule_kind != "one-shot"


class Criterion(CriterionInfo):
    """Scores every prunable weight; higher means more important (kept first).

    Scores may be negative (GraSP's are signed); only their order matters.
    """

    level = "weights"

    @abstractmethod
    def score(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        """Return one finite score tensor per entry of ``ctx.weights``, same shapes."""


class Units(Protocol):
    """What a unit criterion reads of one coupled group (``pruning.structured.groups.UnitGroup``)."""

    #: Name of the Conv/Linear whose output channels the group's units are.
    root: str
    #: Root output channels of each unit.
    units: list[list[int]]

    @property
    def size(self) -> int: ...


@dataclass
class UnitScoringContext:
    """What a unit criterion may look at: the unmodified model, its unit groups, current gates.

    ``gates[i]`` holds one value per unit of ``groups[i]``: 1 alive, 0 pruned by earlier steps.
    While the criterion scores, the engine has these very tensors installed as the model's unit
    gates (``pruning.structured.gates``), so a forward pass of ``model`` is a forward pass of the
    slimmed network and gradients with respect to ``gates`` are the units' sensitivities.
    """

    model: nn.Module
    groups: Sequence[Units]
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
