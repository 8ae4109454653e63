"""GraSP: keep the weights whose removal would hurt gradient flow the most.

Wang, Zhang, Grosse, "Picking Winning Tickets Before Training by Preserving Gradient Flow",
ICLR 2020 (arXiv 2002.07376). The paper scores S = -theta * Hg and removes the highest S; with
"higher is kept" we return theta * Hg, signed. The two passes and the temperature T = 200 on the
logits follow the authors' code; unlike it, BatchNorm runs in eval mode (as our SNIP does) and
Linear layers are not re-initialised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snipit_cli.criteria.base import Criterion, ScoringContext
from snipit_cli.criteria.passes import _eval_mode, _only_these_require_grad
from snipit_cli.criteria.registry import register_criterion
from snipit_cli.errors import NumericsError
from snipit_cli.sync import scored_together
from snipit_cli.types import Batch

#: Logits are divided by this before the loss, as in the authors' code: it softens the softmax so
#: the Hessian-gradient product is not dominated by a few saturated examples.
TEMPERATURE = 200.0


@register_criterion
class Grasp(Criterion):
    name = "grasp"
    summary = "one-shot gradient-flow preservation theta * Hg, signed (Wang et al. 2020)"

    def score(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        # Both passes read the same batches and ctx.batches can be read only once; calibration
        # sets are small, so keeping them in a list costs little.
        # Under torchrun each rank reads its shard; g must be the sum over all ranks before the
        # second pass, and Hg is summed the same way.
        batches = scored_together(ctx.sync, list, ctx.batches)
        if sum(ctx.sync.gather_int(len(batches))) == 0:
            raise NumericsError("no calibration batch was read; check --batches and the dataset")
        weights = list(ctx.weights.values())
        with _only_these_require_grad(ctx.model, weights), _eval_mode(ctx.model):
            g = ctx.sync.sum(scored_together(ctx.sync, _summed_gradient, ctx.model, weights, batches))
            hg = scored_together(ctx.sync, _hessian_gradient_product, ctx.model, weights, batches, g)
            hg = ctx.sync.sum(hg)
        return {name: w.detach() * h for (name, w), h in zip(ctx.weights.items(), hg, strict=True)}


def _tempered_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_no: int) -> torch.Tensor:
    loss = F.cross_entropy(model(x) / TEMPERATURE, y)
    if not torch.isfinite(loss):
        raise NumericsError(
            f"loss is {loss.item()} on calibration batch {batch_no}; check the input "
            "normalisation (--mean/--std) and the model's weights"
        )
    return loss


def _summed_gradient(
    model: nn.Module, weights: list[torch.Tensor], batches: list[Batch]
) -> list[torch.Tensor]:
    """g = sum over batches of dL/dw, no graph kept (the authors' first pass)."""
    g = [torch.zeros_like(w) for w in weights]
    for batch_no, (x, y) in enumerate(batches, start=1):
        loss = _tempered_loss(model, x, y, batch_no)
        _accumulate(g, torch.autograd.grad(loss, weights, allow_unused=True))
    return g


def _hessian_gradient_product(
    model: nn.Module, weights: list[torch.Tensor], batches: list[Batch], g: list[torch.Tensor]
) -> list[torch.Tensor]:
    """Hg = sum over batches of d(g . dL/dw)/dw, with g held constant (the second pass)."""
    hg = [torch.zeros_like(w) for w in weights]
    for batch_no, (x, y) in enumerate(batches, start=1):
        loss = _tempered_loss(model, x, y, batch_no)
        grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
        terms = [(gi * d).sum() for gi, d in zip(g, grads, strict=True) if d is not None]
        z = torch.stack(terms).sum() if terms else None
        if z is not None and z.requires_grad:  # otherwise no weight reaches the loss twice: Hg = 0
            _accumulate(hg, torch.autograd.grad(z, weights, allow_unused=True))
    return hg


def _accumulate(total: list[torch.Tensor], parts: tuple[torch.Tensor | None, ...]) -> None:
    """Add ``parts`` into ``total``; a weight the graph does not reach (None) adds nothing."""
    for acc, part in zip(total, parts, strict=True):
        if part is not None:
            acc.add_(part)
