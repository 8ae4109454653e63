"""Per-layer and total parameter/nonzero/sparsity counts, read from the tensors themselves."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from snipit_cli.layers import is_excluded, prunable_layers


def layer_rows(
    model: nn.Module, exclude: Sequence[str] = (), dense: nn.Module | None = None
) -> list[dict[str, Any]]:
    """One row per Conv/Linear layer: name, type, weight shape, params, nonzero, sparsity.

    A layer whose weight is tied to an earlier one says so (``tied_to``) and is not prunable
    itself, so totals count the shared tensor once. Given the ``dense`` original of a slim
    model, each row also has its ``dense_shape``.
    """
    dense_modules = dict(dense.named_modules()) if dense is not None else {}
    rows = []
    owner: dict[int, str] = {}
    for name, layer in prunable_layers(model).items():
        w = layer.weight.detach()
        nonzero = int(torch.count_nonzero(w))
        tied_to = owner.setdefault(id(layer.weight), name)
        rows.append(
            {
                "name": name,
                "type": type(layer).__name__,
                "shape": list(w.shape),
                "params": w.numel(),
                "nonzero": nonzero,
                "sparsity": (w.numel() - nonzero) / w.numel(),
                "prunable": not is_excluded(name, exclude) and tied_to == name,
                **({"tied_to": tied_to} if tied_to != name else {}),
                **({"dense_shape": list(dense_modules[name].weight.shape)} if name in dense_modules else {}),
            }
        )
    return rows


def param_totals(
    model: nn.Module, rows: list[dict[str, Any]], dense: nn.Module | None = None
) -> dict[str, int]:
    """Totals over all parameters (``total``, ``nonzero``) and over prunable weights; with the
    ``dense`` original of a slim model, its parameter count as ``dense``."""
    prunable = [r for r in rows if r["prunable"]]
    return {
        "total": count_params(model),
        "nonzero": sum(int(torch.count_nonzero(p.detach())) for p in _unique_params(model)),
        "prunable": sum(r["params"] for r in prunable),
        "prunable_nonzero": sum(r["nonzero"] for r in prunable),
        **({"dense": count_params(dense)} if dense is not None else {}),
    }


def count_params(model: nn.Module) -> int:
    """Number of parameters, tied tensors counted once."""
    return sum(p.numel() for p in _unique_params(model))


def _unique_params(model: nn.Module) -> list[nn.Parameter]:
    return list({id(p): p for p in model.parameters()}.values())
