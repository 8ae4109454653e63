"""The layers whose outputs stay whole (the classifier heads), found by running the model once."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from snipit_cli.layers import PRUNABLE_TYPES


def classifier_layers(model: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """Layers whose outputs must stay whole: the last Conv/Linear the forward pass runs, and every
    Conv/Linear whose output has the model's output shape (e.g. DeiT's distillation head)."""
    ran: list[tuple[nn.Module, torch.Size]] = []
    handles = [
        m.register_forward_hook(lambda m, _, out: ran.append((m, out.shape)))
        for m in model.modules()
        if isinstance(m, PRUNABLE_TYPES)
    ]
    try:
        with torch.no_grad():
            final = model.eval()(example)
    finally:
        for handle in handles:
            handle.remove()
    heads = {m for m, shape in ran if shape == final.shape}
    return list({*heads, *(m for m, _ in ran[-1:])})


def module_names(model: nn.Module, modules: Sequence[nn.Module]) -> list[str]:
    """Qualified names of ``modules`` in ``model``, in ``model``'s order."""
    return [n for n, m in model.named_modules() if m in modules]
