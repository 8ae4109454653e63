"""Reading state_dicts from .pt/.pth/.th/.safetensors files safely, and fitting them to a model.

Safe by default, as timm's ``_helpers.load_state_dict``: safetensors by extension, otherwise
``torch.load(weights_only=True)``; a pickled module loads only with ``trust_pickle``. Fitting is
torch's own ``load_state_dict``: it reads the module versions in ``_metadata`` and upgrades old
layouts (BatchNorm files from before PyTorch 0.4.1 have no ``num_batches_tracked``).
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snipit_cli.errors import ModelError, UnsafeCheckpointError
from snipit_cli.models.dtypes import check_dtypes

#: ``.tar``: timm's training scripts write ``checkpoint-N.pth.tar``; ``.ckpt``: Lightning.
PICKLE_SUFFIXES = (".pt", ".pth", ".th", ".bin", ".ckpt", ".tar")
#: Where training scripts put the weights (Lightning and timm: ``state_dict``), in the order tried.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
#: EMA weights (timm's train.py, ultralytics): used only when a file holds no plain weights, as
#: timm's own scripts do (``--use-ema`` is off by default in its validate.py).
EMA_KEYS = ("state_dict_ema", "model_ema", "ema")

State = OrderedDict[str, Any]


def read_torch_file(path: Path, trust_pickle: bool = False) -> Any:
    """``torch.load`` onto the CPU, refusing anything beyond tensors unless ``trust_pickle``.

    ``map_location='cpu'`` lets checkpoints saved on a GPU load on a CPU-only machine. Like timm's
    ``_torch_load``, ``argparse.Namespace`` (the ``args`` of timm's training checkpoints) is allowed:
    unpickling it only fills an attribute dict.
    """
    allowed = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        with allowed([argparse.Namespace]) if allowed else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not trust_pickle:
            raise UnsafeCheckpointError(
                f"{path} holds pickled Python objects beyond tensors (e.g. a whole nn.Module); "
                "loading it would run code from the file. If you trust its source, re-run with "
                "--trust-pickle; better, save model.state_dict() and pass --arch"
            ) from exc
    except (RuntimeError, EOFError, OSError) as exc:
        # torch's text for its oldest (tar) format advises weights_only=False, which no snipit
        # user can pass: --trust-pickle is that choice here.
        if "legacy .tar format" not in str(exc):
            raise ModelError(f"cannot read {path} as a PyTorch checkpoint: {_first_line(exc)}") from exc
        if not trust_pickle:
            raise UnsafeCheckpointError(
                f"{path} is in PyTorch's legacy .tar format, which loads only by unpickling (that could "
                "run code from the file). If you trust its source, re-run with --trust-pickle"
            ) from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"cannot unpickle {path}: {_first_line(exc)}") from exc


def extract_state_dict(obj: Any, path: Path) -> State:
    """The tensors of a checkpoint, unwrapped from ``{"state_dict": ...}`` (Lightning, timm),
    ``{"model": ...}`` and the like, with the module versions (``_metadata``) torch saved."""
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    # A state_dict's values are tensors: a mapping under a wrapper key is the wrapped one, even
    # beside a few tensors of the training script's own (``{"model": ..., "best_acc": tensor}``).
    while isinstance(obj, Mapping):
        inner = _weights_entry(obj)
        if inner is None:
            break
        obj = inner.state_dict() if isinstance(inner, nn.Module) else inner
    if not isinstance(obj, Mapping) or not _is_tensor_dict(obj):
        raise ModelError(
            f"{path} does not hold a state_dict (a mapping of names to tensors, possibly under "
            f"'state_dict', 'model' or 'state_dict_ema'); found {type(obj).__name__}"
        )
    return _keeping_metadata(obj, {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)})


def _weights_entry(obj: Mapping) -> Mapping | nn.Module | None:
    for key in (*WRAPPER_KEYS, *EMA_KEYS):
        value = obj.get(key)
        if isinstance(value, Mapping | nn.Module) and (len(value) if isinstance(value, Mapping) else True):
            return value
    return None


def _is_tensor_dict(obj: Mapping) -> bool:
    return (
        bool(obj)
        and all(isinstance(k, str) for k in obj)
        and any(isinstance(v, torch.Tensor) for v in obj.values())
    )


def with_versions_of(model: nn.Module, state: Mapping[str, Any]) -> State:
    """``state`` carrying ``model``'s module versions as its ``_metadata``.

    For safetensors, which stores no versions: torch reads a missing version as the oldest and
    runs legacy conversions, which some modules refuse (torchvision's MNASNet: "version should be
    set to 1 or 2 instead of None"). snipit writes its checkpoints from a model of this very code,
    so its versions are the file's; and the format is younger than every version change of
    torch's and torchvision's modules, so the same holds for other safetensors files.
    """
    return _keeping_metadata(model.state_dict(), state)


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model`` with torch's ``load_state_dict``, or explain the first
    mismatches in one line. A dtype snipit cannot prune (complex, float8, ints for a float) is
    refused by name first (see :mod:`snipit_cli.models.dtypes`).

    Wrapper prefixes (DDP, ``torch.compile``, a Lightning module's attribute) are stripped only
    when the stripped names fit the model better. Tied tensors are saved once (safetensors'
    ``save_model``): one name present fills its aliases, so the others are not missing.
    """
    expected = model.state_dict()
    state = align_keys(state, expected.keys())
    check_dtypes({k: v for k, v in state.items() if k in expected}, expected, what)
    wrong = {
        k: f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and v.shape != expected[k].shape
    }
    try:
        # Shape mismatches are kept out: torch raises on them only after loading the rest.
        loadable = _keeping_metadata(state, {k: v for k, v in state.items() if k not in wrong})
        result = model.load_state_dict(loadable, strict=False)
    except (RuntimeError, ValueError) as exc:  # a module's own loading code refusing the file
        hint = (
            ""
            if hasattr(state, "_metadata")
            else " (the file records no module versions: save model.state_dict() as it is)"
        )
        raise ModelError(f"{what} does not load into the architecture: {_load_error(exc)}{hint}") from exc
    tied = _tied_aliases(expected)
    missing = [k for k in result.missing_keys if k not in wrong and not tied.get(k, set()) & state.keys()]
    if wrong or missing or result.unexpected_keys:
        raise _mismatch(what, list(wrong.values()), missing, result.unexpected_keys)


def _mismatch(what: str, wrong: list[str], missing: list[str], unexpected: list[str]) -> ModelError:
    parts = []
    if wrong:
        parts.append(f"shape mismatch (file vs model): {_first(wrong)}")
    if missing:
        parts.append(f"missing in file: {_first(missing)}")
    if unexpected:
        parts.append(f"not in model: {_first(unexpected)}")
    return ModelError(
        f"{what} does not fit the architecture: {'; '.join(parts)}. Check --arch, "
        "--arch-kwargs and --num-classes"
    )


def align_keys(state: Mapping[str, Any], expected: Any) -> State:
    """``state`` under the names that fit ``expected`` best: as saved; cleaned of DDP's
    ``module.`` and ``torch.compile``'s ``_orig_mod.`` by timm's ``clean_state_dict``; or also
    without a first name all keys share (a Lightning module's ``model.``/``net.`` attribute).

    The first of the most fitting wins, so names that already fit are never changed.
    """
    from timm.models import clean_state_dict

    expected = set(expected)
    as_saved = _renamed(state, dict)
    cleaned = _renamed(as_saved, clean_state_dict)
    candidates = [as_saved, cleaned, _renamed(_strip_shared_component(cleaned), clean_state_dict)]
    return max(candidates, key=lambda c: len(expected.intersection(c)))  # max keeps the first of ties


def _strip_shared_component(state: State) -> State:
    first = {k.split(".", 1)[0] for k in state}
    if len(first) != 1 or not all("." in k for k in state):
        return state
    prefix = f"{first.pop()}."
    return _renamed(state, lambda d: {k[len(prefix) :]: v for k, v in d.items() if k.startswith(prefix)})


def _renamed(state: Mapping[str, Any], rename: Callable[[dict[str, Any]], Mapping[str, Any]]) -> State:
    """``rename`` applied to the keys of ``state`` and, alike, to the module names of its
    ``_metadata`` (which name modules, ``layer1.0.bn1``, where keys name tensors under them)."""
    out = OrderedDict(rename(dict(state)))
    metadata = getattr(state, "_metadata", None)
    if metadata is not None:
        dotted = {f"{m}." if m else "": v for m, v in metadata.items()}
        out._metadata = OrderedDict(  # type: ignore[attr-defined]
            (k.removesuffix("."), v) for k, v in rename(dotted).items()
        )
    return out


def _keeping_metadata(source: Mapping[str, Any], items: Mapping[str, Any]) -> State:
    """``items`` as an OrderedDict with the module versions of ``source``."""
    out = OrderedDict(items)
    if hasattr(source, "_metadata"):
        out._metadata = source._metadata  # type: ignore[attr-defined]
    return out


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


def _load_error(exc: BaseException) -> str:
    """torch's ``Error(s) in loading state_dict for X:`` heading is followed by the error itself."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        return lines[1]
    return lines[0] if lines else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
