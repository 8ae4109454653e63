"""SNIP and SNIP-it connection sensitivity.

SNIP: Lee, Ajanthan, Torr, "SNIP: Single-shot Network Pruning based on Connection Sensitivity",
ICLR 2019 (arXiv 1810.02340). SNIP-it: Verdenius, Stol, Forré, "Pruning via Iterative Ranking of
Sensitivity Statistics", arXiv 2006.00896 — the same score, recomputed on the already pruned
network at every step of a shrinking schedule.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from snipit_cli.criteria.base import Criterion, ScoringContext
from snipit_cli.criteria.registry import register_criterion
from snipit_cli.errors import NumericsError


@register_criterion
class Snip(Criterion):
    name = "snip"
    summary = "one-shot connection sensitivity |w * dL/dw| (Lee et al. 2019)"

    def score(self, ctx: ScoringContext) -> dict[str, torch.Tensor]:
        grads = accumulate_gradients(ctx)
        return {name: (w.detach() * grads[name]).abs() for name, w in ctx.weights.items()}


@register_criterion
class SnipIt(Snip):
    name = "snip-it"
    summary = "SNIP rescored on the pruned network over a shrinking schedule (Verdenius et al. 2020)"
    iterative = True


def accumulate_gradients(ctx: ScoringContext) -> dict[str, torch.Tensor]:
    """Sum of dL/dw over the calibration batches, cross-entropy loss, model in eval mode.

    Only the prunable weights require grad while this runs, so no time goes into gradients of
    biases and norm layers; the previous ``requires_grad`` flags and train/eval mode come back
    afterwards, even on error.
    """
    grads = {name: torch.zeros_like(w) for name, w in ctx.weights.items()}
    n_batches = 0
    with _only_weights_require_grad(ctx.model, ctx.weights.values()), _eval_mode(ctx.model):
        for n_batches, (inputs, labels) in enumerate(ctx.batches, start=1):
            loss = F.cross_entropy(ctx.model(inputs), labels)
            if not torch.isfinite(loss):
                raise NumericsError(
                    f"loss is {loss.item()} on calibration batch {n_batches}; check the input "
                    "normalisation (--mean/--std) and the model's weights"
                )
            # allow_unused: layers the eval-mode forward skips (e.g. auxiliary heads) get no
            # gradient; they score zero rather than failing the run.
            batch_grads = torch.autograd.grad(loss, list(ctx.weights.values()), allow_unused=True)
            for acc, g in zip(grads.values(), batch_grads, strict=True):
                if g is not None:
                    acc.add_(g)
    if n_batches == 0:
        raise NumericsError("no calibration batch was read; check --batches and the dataset")
    return grads


@contextmanager
def _only_weights_require_grad(model: nn.Module, weights) -> Iterator[None]:
    saved = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for w in weights:
            w.requires_grad_(True)
        yield
    finally:
        for p, flag in saved.items():
            p.requires_grad_(flag)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
