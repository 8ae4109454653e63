"""Uniformly random scores: the sanity baseline every pruning paper compares against."""

from __future__ import annotations

import torch

from snipit_cli.criteria.base import Criterion, ScoringContext
from snipit_cli.criteria.registry import register_criterion


@register_criterion
class Random(Criterion):
    name = "random"
    summary = "uniformly random scores, one shot, seeded by --seed (sanity baseline)"
    needs_data = False

    def score(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        return {
            name: torch.rand(w.shape, generator=ctx.generator).to(w.device) for name, w in ctx.weights.items()
        }
