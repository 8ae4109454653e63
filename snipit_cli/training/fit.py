"""Epochs of training with the masks held: the core ``snipit train`` and ``prune --finetune-epochs``
share. Pure: a model, its data, optimizer options and masks in; the trained state and its per-epoch
history out. No files, no CLI: what happens between epochs (pruning, checkpoints) is the caller's,
through ``before_epoch`` (which returns the state to train on) and ``after_epoch``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from snipit_cli.data.training import EpochData
from snipit_cli.metrics.accuracy import evaluate
from snipit_cli.metrics.sparsity import count_params
from snipit_cli.pruning.masks import count_kept
from snipit_cli.training.loop import EpochProgress, NullEpochProgress, train_epoch
from snipit_cli.training.optim import OptimizerOptions, lr_at, make_optimizer


@dataclass(frozen=True)
class TrainState:
    """Where a run stands: what it trains (the optimizer follows the model) and what it did."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    weights: Mapping[str, nn.Parameter]  # the prunable weights whose masks are held
    masks: Mapping[str, torch.Tensor]
    step: int = 0
    epochs_done: int = 0
    history: tuple[dict[str, Any], ...] = ()

    @property
    def weight_sparsity(self) -> float:
        """Pruned share of the masked weights."""
        total = sum(m.numel() for m in self.masks.values())
        return (total - count_kept(self.masks)) / total


def start(
    model: nn.Module,
    *,
    weights: Mapping[str, nn.Parameter],
    masks: Mapping[str, torch.Tensor],
    options: OptimizerOptions,
) -> TrainState:
    """A fresh run: a new optimizer over ``model``, nothing trained yet."""
    return TrainState(model, make_optimizer(model, options), dict(weights), dict(masks))


def fit(
    state: TrainState,
    *,
    train: EpochData,
    test: EpochData | None,
    options: OptimizerOptions,
    epochs: int,
    progress: EpochProgress | None = None,
    before_epoch: Callable[[int, TrainState], TrainState] | None = None,
    after_epoch: Callable[[TrainState], None] | None = None,
) -> TrainState:
    """Train from ``state.epochs_done`` to ``epochs``, evaluating on ``test`` after each epoch.

    The learning rate follows ``options``' schedule over all ``epochs``, so a resumed run (a state
    with epochs done) continues the schedule where it stopped.
    """
    progress = progress or NullEpochProgress()
    total_steps = epochs * train.n_batches
    for epoch in range(state.epochs_done, epochs):
        started = time.perf_counter()
        if before_epoch is not None:
            state = before_epoch(epoch, state)
        progress.start_epoch(epoch, epochs, train.n_batches)
        trained = train_epoch(
            model=state.model,
            batches=train.batches(epoch),
            optimizer=state.optimizer,
            lr_for_step=lambda step: lr_at(options, step, total_steps),
            first_step=state.step,
            weights=state.weights,
            masks=state.masks,
            progress=progress,
        )
        state = replace(state, step=int(trained["steps"]), epochs_done=epoch + 1)
        lr = lr_at(options, state.step, total_steps)
        record = epoch_record(state, trained=trained, test=test, lr=lr, started=started)
        state = replace(state, history=(*state.history, record))
        progress.end_epoch(record)
        if after_epoch is not None:
            after_epoch(state)
    return state


def epoch_record(
    state: TrainState,
    *,
    trained: Mapping[str, float | int],
    test: EpochData | None,
    lr: float,
    started: float,
) -> dict[str, Any]:
    """One history entry: the epoch's training figures and, with a test set, its evaluation."""
    evaluated = evaluate(state.model, batches=test.batches(0)) if test is not None else None
    return {
        "epoch": state.epochs_done,
        "lr": lr,
        "train_loss": trained["loss"],
        "train_top1": trained["top1"],
        "test_top1": evaluated["top1"] if evaluated else None,
        "test_top5": evaluated["top5"] if evaluated else None,
        "test_loss": evaluated["loss"] if evaluated else None,
        "weight_sparsity": state.weight_sparsity,
        "params": count_params(state.model),
        "seconds": round(time.perf_counter() - started, 3),
    }
