"""Forward+backward passes over calibration batches, shared by the gradient criteria."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from snipit_cli.criteria.base import Batch
from snipit_cli.errors import NumericsError


def sum_gradients(
    model: nn.Module, inputs: list[torch.Tensor], batches: Iterable[Batch]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Sum over batches of dL/d``inputs`` (cross-entropy, eval mode) and the summed loss.

    Only ``inputs`` require grad while this runs, so no time goes into gradients of anything
    else; the previous ``requires_grad`` flags and train/eval mode come back afterwards, even on
    error. Inputs the forward pass does not use (auxiliary heads) get zero gradient.
    """
    grads = [torch.zeros_like(t) for t in inputs]
    total_loss = torch.zeros(())
    n_batches = 0
    with _only_these_require_grad(model, inputs), _eval_mode(model):
        for n_batches, (x, y) in enumerate(batches, start=1):
            loss = F.cross_entropy(model(x), y)
            if not torch.isfinite(loss):
                raise NumericsError(
                    f"loss is {loss.item()} on calibration batch {n_batches}; check the input "
                    "normalisation (--mean/--std) and the model's weights"
                )
            if not loss.requires_grad:
                raise NumericsError(
                    "the loss does not depend on any prunable weight (the model's forward detaches its "
                    "output or runs without autograd), so gradient criteria cannot score it; fix the "
                    "model or use --method magnitude"
                )
            for acc, g in zip(grads, torch.autograd.grad(loss, inputs, allow_unused=True), strict=True):
                if g is not None:
                    acc.add_(g)
            total_loss = total_loss + loss.detach().cpu()
    if n_batches == 0:
        raise NumericsError("no calibration batch was read; check --batches and the dataset")
    return grads, total_loss


@contextmanager
def _only_these_require_grad(model: nn.Module, tensors: list[torch.Tensor]) -> Iterator[None]:
    saved = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for t in tensors:
            t.requires_grad_(True)
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
