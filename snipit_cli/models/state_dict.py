"""Reading state_dicts from .pt/.pth/.th/.safetensors files safely, and fitting them to a model.

Safe by default, as timm's ``_helpers.load_state_dict``: safetensors by extension, otherwise
``torch.load(weights_only=True)``; a pickled module loads only with ``trust_pickle``.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snipit_cli.errors import ModelError, UnsafeCheckpointError

PICKLE_SUFFIXES = (".pt", ".pth", ".th", ".bin", ".ckpt")
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")


def read_torch_file(path: Path, trust_pickle: bool = False) -> Any:
    """``torch.load`` onto the CPU, refusing anything beyond tensors unless ``trust_pickle``.

    ``map_location='cpu'`` lets checkpoints saved on a GPU load on a CPU-only machine.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            raise UnsafeCheckpointError(
                f"{path} holds pickled Python objects beyond tensors (e.g. a whole nn.Module); "
                "loading it would run code from the file. If you trust its source, re-run with "
                "--trust-pickle; better, save model.state_dict() and pass --arch"
            ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise ModelError(f"cannot read {path} as a PyTorch checkpoint: {_first_line(exc)}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"cannot unpickle {path}: {_first_line(exc)}") from exc


def extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: unwraps ``{"state_dict": ...}``/``{"model": ...}``, strips ``module.``."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        inner = next(
            (obj[k] for k in WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping | nn.Module)), None
        )
        if inner is None:
            break
        obj = inner.state_dict() if isinstance(inner, nn.Module) else inner
    if not isinstance(obj, Mapping) or not _is_tensor_dict(obj):
        raise ModelError(
            f"{path} does not hold a state_dict (a mapping of names to tensors, possibly under "
            f"'state_dict' or 'model'); found {type(obj).__name__}"
        )
    return strip_prefix({k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}, "module.")


def _is_tensor_dict(obj: Mapping) -> bool:
    return (
        bool(obj)
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, torch.Tensor) for v in obj.values())
    )


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` (DataParallel/DDP's ``module.``) when every key carries it."""
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return state


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model`` strictly, or explain the first mismatches in one line."""
    expected = model.state_dict()
    tied = _tied_aliases(expected)
    missing = [k for k in expected if k not in state and not (tied.get(k, set()) & state.keys())]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            parts.append(f"shape mismatch (file vs model): {_first(wrong)}")
        if missing:
            parts.append(f"missing in file: {_first(missing)}")
        if unexpected:
            parts.append(f"not in model: {_first(unexpected)}")
        raise ModelError(
            f"{what} does not fit the architecture: {'; '.join(parts)}. Check --arch, "
            "--arch-kwargs and --num-classes"
        )
    # Tied tensors are saved once (safetensors' save_model); loading one name fills its aliases.
    model.load_state_dict(state, strict=False)


def _tied_aliases(state: Mapping[str, torch.Tensor]) -> dict[str, set[str]]:
    """For each name whose tensor shares storage with others, the other names."""
    groups: dict[tuple[int, int, tuple[int, ...]], set[str]] = {}
    for name, t in state.items():
        if t.numel():
            groups.setdefault(
                (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape)), set()
            ).add(name)
    return {n: g - {n} for g in groups.values() if len(g) > 1 for n in g}


def _first(items: list[str], n: int = 3) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
