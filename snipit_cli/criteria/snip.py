"""SNIP and SNIP-it connection sensitivity.

SNIP: Lee, Ajanthan, Torr, "SNIP: Single-shot Network Pruning based on Connection Sensitivity",
ICLR 2019 (arXiv 1810.02340). SNIP-it: Verdenius, Stol, Forré, "Pruning via Iterative Ranking of
Sensitivity Statistics", arXiv 2006.00896 — the same score, recomputed on the already pruned
network at every step of a shrinking schedule.
"""

from __future__ import annotations

import torch

from snipit_cli.criteria.base import Criterion, ScoringContext
from snipit_cli.criteria.passes import sum_gradients
from snipit_cli.criteria.registry import register_criterion


@register_criterion
class Snip(Criterion):
    name = "snip"
    summary = "one-shot connection sensitivity |w * dL/dw| (Lee et al. 2019)"

    def score(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        grads = accumulate_gradients(ctx)
        # in place: the sums are this call's own tensors, and 11.7M-weight copies are not free
        return {name: grads[name].mul_(w.detach()).abs_() for name, w in ctx.weights.items()}


@register_criterion
class SnipIt(Snip):
    name = "snip-it"
    summary = "SNIP rescored on the pruned network over a shrinking schedule (Verdenius et al. 2020)"
    schedule_kind = "snipit"


def accumulate_gradients(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    """Sum of dL/dw over the calibration batches (see :func:`sum_gradients`)."""
    grads, _ = sum_gradients(ctx.model, list(ctx.weights.values()), ctx.batches, sync=ctx.sync)
    return dict(zip(ctx.weights, grads, strict=True))
