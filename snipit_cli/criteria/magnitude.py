"""Weight magnitude |w|: the classic data-free baseline (Han et al., NeurIPS 2015)."""

from __future__ import annotations

import torch

from snipit_cli.criteria.base import Criterion, ScoringContext
from snipit_cli.criteria.registry import register_criterion


@register_criterion
class Magnitude(Criterion):
    name = "magnitude"
    summary = "global weight magnitude |w|, one shot, no data (Han et al. 2015)"
    needs_data = False

    def score(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        return {name: w.detach().abs() for name, w in ctx.weights.items()}
