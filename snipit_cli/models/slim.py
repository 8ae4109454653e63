"""Record and replay a slimmed architecture as JSON, never by unpickling a module.

After channel removal only tensor shapes and a few integer attributes differ from the dense
model (``out_channels``, ``num_features``, ``groups``, ``num_heads``...). The record keeps, per
module, the attributes and parameter/buffer shapes that differ; rebuilding builds the dense
model from its arch spec, applies them, then loads the slim tensors (as timm's
``adapt_model_from_string`` does from a string of shapes).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from snipit_cli.errors import ModelError

Record = dict[str, dict[str, dict[str, Any]]]
_SIMPLE = (bool, int, float, tuple, list)


def record_slim(slim: nn.Module, dense: nn.Module) -> Record:
    """Per-module attributes and tensor shapes of ``slim`` that differ from ``dense``."""
    dense_modules = dict(dense.named_modules())
    record: Record = {}
    for name, module in slim.named_modules():
        reference = dense_modules[name]
        attrs = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in vars(module).items()
            if not key.startswith("_")
            and key != "training"
            and isinstance(value, _SIMPLE)
            and vars(reference).get(key) != value
        }
        shapes = {
            key: list(tensor.shape)
            for key, tensor in _tensors(module)
            if list(tensor.shape) != list(getattr(reference, key).shape)
        }
        if attrs or shapes:
            record[name] = {"attrs": attrs, "shapes": shapes}
    return record


def apply_slim(model: nn.Module, record: Record) -> None:
    """Turn a freshly built dense ``model`` into the recorded slim shape (values still to load)."""
    modules = dict(model.named_modules())
    for name, entry in record.items():
        if name not in modules:
            raise ModelError(f"slim record names module {name!r}, which the architecture does not have")
        module = modules[name]
        for key, value in entry.get("attrs", {}).items():
            if not isinstance(vars(module).get(key), _SIMPLE) or not isinstance(value, _SIMPLE):
                raise ModelError(f"slim record sets {name}.{key}, which is not a plain attribute there")
            setattr(module, key, tuple(value) if isinstance(value, list) else value)
        tensors = dict(_tensors(module))
        for key, shape in entry.get("shapes", {}).items():
            if key not in tensors:
                raise ModelError(f"slim record gives a shape for {name}.{key}, which is no tensor there")
            old = tensors[key]
            empty = torch.empty(shape, dtype=old.dtype, device=old.device)
            setattr(
                module,
                key,
                nn.Parameter(empty, requires_grad=old.requires_grad)
                if isinstance(old, nn.Parameter)
                else empty,
            )


def _tensors(module: nn.Module):
    yield from ((k, v) for k, v in module.named_parameters(recurse=False) if v is not None)
    yield from ((k, v) for k, v in module.named_buffers(recurse=False) if v is not None)
