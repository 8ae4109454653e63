"""Forward+backward passes over calibration batches, shared by the gradient criteria."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from snipit_cli.errors import NumericsError
from snipit_cli.sync import LOCAL, Sync, scored_together
from snipit_cli.types import Batch


def sum_gradients(
    model: nn.Module, inputs: list[torch.Tensor], batches: Iterable[Batch], *, sync: Sync = LOCAL
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Sum over batches of dL/d``inputs`` (cross-entropy, eval mode) and the summed loss.

    Only ``inputs`` require grad while this runs, so no time goes into gradients of anything
    else; the previous ``requires_grad`` flags and train/eval mode come back afterwards, even on
    error. Inputs the forward pass does not use (auxiliary heads) get zero gradient. Under
    ``torchrun`` each rank sums its own shard of the batches and ``sync`` adds the ranks' sums,
    so every rank holds the sum over all batches.
    """
    grads, total_loss, n_batches = scored_together(sync, _local_sums, model, inputs, batches)
    *grads, total_loss, n_batches = sync.sum([*grads, total_loss, n_batches])
    if int(n_batches) == 0:
        raise NumericsError("no calibration batch was read; check --batches and the dataset")
    return grads, total_loss


def _local_sums(
    model: nn.Module, inputs: list[torch.Tensor], batches: Iterable[Batch]
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """This process's gradient and loss sums and how many batches it read."""
    grads: list[torch.Tensor | None] = [None] * len(inputs)
    total_loss = torch.zeros(())
    n_batches = 0
    with _only_these_require_grad(model, inputs), _eval_mode(model):
        for n_batches, (x, y) in enumerate(batches, start=1):
            loss = F.cross_entropy(model(x), y)
            check_loss(loss, n_batches)
            for i, g in enumerate(torch.autograd.grad(loss, inputs, allow_unused=True)):
                if g is None:
                    continue
                if grads[i] is None:  # the first batch's gradient starts the sum (an expanded one is copied)
                    grads[i] = g.contiguous()
                else:
                    grads[i].add_(g)
            total_loss = total_loss + loss.detach().cpu()
    sums = [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]
    return sums, total_loss, torch.tensor(float(n_batches))


def check_loss(loss: torch.Tensor, batch_no: int) -> None:
    """A loss that is not finite or does not reach any scored input cannot rank anything."""
    if not torch.isfinite(loss):
        raise NumericsError(
            f"loss is {loss.item()} on calibration batch {batch_no}; check the input "
            "normalisation (--mean/--std) and the model's weights"
        )
    if not loss.requires_grad:
        raise NumericsError(
            "the loss does not depend on any prunable weight (the model's forward detaches its "
            "output or runs without autograd), so gradient criteria cannot score it; fix the "
            "model or use --method magnitude"
        )


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
