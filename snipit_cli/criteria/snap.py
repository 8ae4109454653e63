"""Unit-level criteria for ``--structured``: SNAP, SNAP-it, filter L1 norm, random.

SNAP/SNAP-it: Verdenius, Stol, Forré, "Pruning via Iterative Ranking of Sensitivity Statistics",
arXiv 2006.00896 — the node-level variant of SNIP-it: a multiplicative gate g = 1 on each unit,
score |dL/dg| divided by the loss (the gate's elasticity, comparable across layers), ranked
globally. L1: Li, Kadav, Durdanovic, Samet, Graf, "Pruning Filters for Efficient ConvNets",
ICLR 2017 — the L1 norm of each filter of the group's root layer.
"""

from __future__ import annotations

import torch

from snipit_cli.criteria.base import UnitCriterion, UnitScoringContext
from snipit_cli.criteria.passes import sum_gradients
from snipit_cli.criteria.registry import register_criterion


@register_criterion
class Snap(UnitCriterion):
    name = "snap"
    summary = "one-shot node sensitivity |dL/dgate| / L per channel/neuron/head (Verdenius et al. 2020)"

    def score_units(self, ctx: UnitScoringContext) -> list[torch.Tensor]:
        # ctx.gates are the gates the engine has installed: their gradients are the sensitivities.
        grads, loss = sum_gradients(ctx.model, ctx.gates, ctx.batches, sync=ctx.sync)
        return [g.abs() / loss.clamp_min(torch.finfo(torch.float32).tiny) for g in grads]


@register_criterion
class SnapIt(Snap):
    name = "snap-it"
    summary = "SNAP rescored on the slimmed network over the SNIP-it schedule (Verdenius et al. 2020)"
    schedule_kind = "snipit"


@register_criterion
class FilterL1(UnitCriterion):
    name = "l1"
    summary = "L1 norm of each filter of the group's root layer, one shot, no data (Li et al. 2017)"
    needs_data = False

    def score_units(self, ctx: UnitScoringContext) -> list[torch.Tensor]:
        modules = dict(ctx.model.named_modules())
        scores = []
        for group in ctx.groups:
            weight = modules[group.root].weight.detach()
            row_norms = weight.abs().flatten(1).sum(1).cpu()
            scores.append(torch.stack([row_norms[rows].sum() for rows in group.units]))
        return scores


@register_criterion
class RandomUnits(UnitCriterion):
    name = "random"
    summary = "uniformly random unit scores, one shot, seeded by --seed (sanity baseline)"
    needs_data = False

    def score_units(self, ctx: UnitScoringContext) -> list[torch.Tensor]:
        return [torch.rand(group.size, generator=ctx.generator) for group in ctx.groups]
