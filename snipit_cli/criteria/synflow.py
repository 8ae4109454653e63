"""SynFlow: iterative synaptic-flow conservation, without any data.

Tanaka, Kunin, Yamins, Ganguli, "Pruning neural networks without any data by iteratively
conserving synaptic flow", NeurIPS 2020 (arXiv 2006.05467). Every weight and buffer is replaced by
its absolute value, an all-ones input is pushed through, and R = sum(output) is the "synaptic
flow"; a weight scores |theta * dR/dtheta|. Rescoring over 100 exponentially shrinking steps is
what avoids layer collapse, so the criterion declares the exponential schedule (100 rounds by
default, ``pruning.schedule``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from snipit_cli.criteria.base import Criterion, ScoringContext
from snipit_cli.criteria.registry import register_criterion
from snipit_cli.errors import NumericsError, UsageError

#: Scores above this would turn into Inf when cast to float32 for ranking.
_FLOAT32_MAX = torch.finfo(torch.float32).max


@register_criterion
class SynFlow(Criterion):
    name = "synflow"
    summary = "data-free synaptic flow |w * dR/dw| over 100 exponential steps (Tanaka et al. 2020)"
    schedule_kind = "exponential"
    needs_data = False

    def score(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        if ctx.input_size is None:
            raise UsageError("synflow needs the model's input size; pass --input-size C,H,W")
        # A float64 copy: the products of |weights| over many layers overflow float32 quickly,
        # and the caller's model (dtype, values, requires_grad) must stay as it is.
        linear = _linearized_copy(ctx.model)
        params = {name: linear.get_submodule(name).weight for name in ctx.weights}
        for p in linear.parameters():
            p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
        flow = _synaptic_flow(linear, ctx.input_size, next(iter(params.values())).device)
        grads = torch.autograd.grad(flow, list(params.values()), allow_unused=True)
        scores = {
            name: (p.detach() * g).abs() if g is not None else torch.zeros_like(p.detach())
            for (name, p), g in zip(params.items(), grads, strict=True)
        }
        return _as_float32(scores, ctx.weights)


@torch.no_grad()
def _linearized_copy(model: nn.Module) -> nn.Module:
    """Eval-mode float64 copy with every floating parameter and buffer made non-negative.

    Buffers too (BatchNorm running statistics), as the authors' ``linearize`` does on the
    state_dict. Pruned weights are exactly zero and stay so, hence score zero.
    """
    linear = copy.deepcopy(model).double().eval()
    for t in [*linear.parameters(), *linear.buffers()]:
        if t.is_floating_point():
            t.abs_()
    return linear


def _synaptic_flow(model: nn.Module, input_size: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """R = sum of the output for an all-ones input; non-finite even in float64 is an error."""
    flow = model(torch.ones((1, *input_size), dtype=torch.float64, device=device)).sum()
    if not torch.isfinite(flow):
        raise NumericsError(
            f"synflow's synaptic flow R = sum(model(ones)) is {flow.item()} even in float64 on the "
            "model with |weights|; the network's weights are too large for this criterion"
        )
    return flow


def _as_float32(scores: dict[str, torch.Tensor], like: dict[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    """Cast to float32 on each weight's device, first dividing all layers by one common factor
    if the largest score would not fit: a shared factor keeps the global ranking."""
    top = max(float(s.max()) for s in scores.values())
    scale = top if top > _FLOAT32_MAX else 1.0
    return {name: (s / scale).to(device=like[name].device, dtype=torch.float32) for name, s in scores.items()}
