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
    """Turn a freshly built dense ``model`` into the recorded slim shape (values still to load).

    Every recorded value must be of the kind the attribute already holds (an int where an int
    is, a list of ints for a tuple of ints) and every shape a list of sizes, so a lying record
    is refused by name instead of failing inside torch or in the first forward.
    """
    modules = dict(model.named_modules())
    for name, entry in record.items():
        if name not in modules:
            raise ModelError(f"slim record names module {name!r}, which the architecture does not have")
        module = modules[name]
        for key, value in entry.get("attrs", {}).items():
            old = vars(module).get(key)
            if not isinstance(old, _SIMPLE) or not _same_kind(old, value):
                raise ModelError(
                    f"slim record sets {name}.{key} to {value!r}, which is not a plain attribute of that "
                    f"kind there (it is {old!r})"
                )
            setattr(module, key, tuple(value) if isinstance(value, list) else value)
        tensors = dict(_tensors(module))
        for key, shape in entry.get("shapes", {}).items():
            if key not in tensors:
                raise ModelError(f"slim record gives a shape for {name}.{key}, which is no tensor there")
            old = tensors[key]
            if not _is_shape(shape) or len(shape) != old.dim():
                raise ModelError(
                    f"slim record gives {name}.{key} the shape {shape!r}; it needs {old.dim()} sizes >= 0"
                )
            empty = torch.empty(shape, dtype=old.dtype, device=old.device)
            setattr(
                module,
                key,
                nn.Parameter(empty, requires_grad=old.requires_grad)
                if isinstance(old, nn.Parameter)
                else empty,
            )


def _same_kind(old: Any, new: Any) -> bool:
    """``new`` is what ``old`` is: bool, int, float (an int too), or a list for a tuple/list of
    such items (any length: a slimmed ``kernel_size`` keeps its rank, others may change)."""
    if isinstance(old, bool) or isinstance(new, bool):
        return type(old) is type(new)
    if isinstance(old, int):
        return isinstance(new, int)
    if isinstance(old, float):
        return isinstance(new, int | float)
    if isinstance(old, tuple | list):
        items = old or (0,)  # an empty tuple's items: ints (sizes), as torch's are
        return isinstance(new, list) and all(any(_same_kind(o, n) for o in items) for n in new)
    return False


def _is_shape(shape: Any) -> bool:
    sizes = isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
    return sizes and all(d >= 0 for d in shape)


def _tensors(module: nn.Module):
    yield from ((k, v) for k, v in module.named_parameters(recurse=False) if v is not None)
    yield from ((k, v) for k, v in module.named_buffers(recurse=False) if v is not None)
