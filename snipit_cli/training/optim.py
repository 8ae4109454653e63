"""Optimizers, the learning-rate schedule, and optimizer state that follows channel surgery."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from snipit_cli.errors import UsageError
from snipit_cli.training.options import OptimizerOptions


def make_optimizer(model: nn.Module, options: OptimizerOptions) -> torch.optim.Optimizer:
    """Weight decay on weights only: norms and biases are not decayed (the usual recipe)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    groups = [
        {"params": decay, "weight_decay": options.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if options.name == "adamw":
        return torch.optim.AdamW(groups, lr=options.base_lr)
    return torch.optim.SGD(groups, lr=options.base_lr, momentum=options.momentum)


def lr_at(options: OptimizerOptions, step: int, total_steps: int) -> float:
    """Learning rate at optimizer step ``step`` of ``total_steps`` (cosine to 0, or constant)."""
    if options.lr_schedule == "constant" or total_steps <= 0:
        return options.base_lr
    return options.base_lr * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


def state_by_name(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict[str, torch.Tensor]]:
    """Optimizer state keyed by parameter name (stable across surgery and across processes)."""
    names = {p: n for n, p in model.named_parameters()}
    return {
        names[p]: {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        for p, state in optimizer.state.items()
        if p in names
    }


def load_state_by_name(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: Mapping[str, Mapping[str, torch.Tensor]]
) -> None:
    """Put named state back on ``optimizer`` (after a resume or a surgery); shapes must match."""
    params = dict(model.named_parameters())
    for name, entries in state.items():
        p = params.get(name)
        if p is None:
            continue
        for key, value in entries.items():
            if value.dim() > 0 and value.shape != p.shape:
                raise UsageError(
                    f"optimizer state {name}/{key} has shape {tuple(value.shape)}, not {tuple(p.shape)}"
                )
        optimizer.state[p] = {k: v.to(p.device).clone() for k, v in entries.items()}


def slice_state(
    state: Mapping[str, Mapping[str, torch.Tensor]],
    kept: Mapping[str, torch.Tensor],
    shapes: Mapping[str, torch.Size],
) -> dict[str, dict[str, torch.Tensor]]:
    """Optimizer state after surgery: each parameter-shaped tensor keeps the entries that survived.

    ``kept[name]`` holds the flat indices (into the old parameter) of the new parameter's
    entries, in order, so momentum and Adam moments stay attached to the weights they belong to.
    """
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, entries in state.items():
        if name not in kept:
            out[name] = dict(entries)
            continue
        index = kept[name]
        out[name] = {
            key: value.flatten()[index.to(value.device)].view(shapes[name]) if value.dim() > 0 else value
            for key, value in entries.items()
        }
    return out
