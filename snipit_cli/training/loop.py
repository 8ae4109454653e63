"""One training epoch with masks held exactly, and what it measured."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from snipit_cli.errors import NumericsError
from snipit_cli.pruning.masks import apply_masks
from snipit_cli.types import Batch


class EpochProgress(Protocol):
    def start_epoch(self, epoch: int, n_epochs: int, n_batches: int) -> None: ...

    def advance_batch(self, loss: float) -> None: ...

    def end_epoch(self, record: dict) -> None: ...


class NullEpochProgress:
    def start_epoch(self, epoch: int, n_epochs: int, n_batches: int) -> None:
        pass

    def advance_batch(self, loss: float) -> None:
        pass

    def end_epoch(self, record: dict) -> None:
        pass


def train_epoch(
    model: nn.Module,
    *,
    batches: Iterable[Batch],
    optimizer: torch.optim.Optimizer,
    lr_for_step: Callable[[int], float],
    first_step: int,
    weights: Mapping[str, nn.Parameter],
    masks: Mapping[str, torch.Tensor],
    progress: EpochProgress,
) -> dict[str, float | int]:
    """Train over ``batches`` once; returns mean loss, accuracy, samples and the last step index.

    The masks are applied again after every optimizer step: momentum and weight decay would
    otherwise move pruned weights off zero.
    """
    model.train()
    step, loss_sum, correct, samples = first_step, 0.0, 0, 0
    for x, y in batches:
        for group in optimizer.param_groups:
            group["lr"] = lr_for_step(step)
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        if not torch.isfinite(loss):
            raise NumericsError(
                f"training loss is {loss.item()} at step {step}; lower --lr or check the data normalisation"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        apply_masks(weights, masks)
        step += 1
        loss_value = float(loss.detach())
        loss_sum += loss_value * len(y)
        correct += int((logits.detach().argmax(1) == y).sum())
        samples += len(y)
        progress.advance_batch(loss_value)
    return {
        "loss": loss_sum / max(samples, 1),
        "top1": correct / max(samples, 1),
        "samples": samples,
        "steps": step,
    }
