"""Architecture specs: ``timm:NAME``, ``torchvision:NAME``, ``snipit:NAME`` or user code ``module:callable``.

An :class:`ArchSpec` is what snipit records in checkpoint metadata so that a checkpoint can be
rebuilt from tensors alone, never by unpickling a module (as timm's ``_builder`` does).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from snipit_cli.errors import ModelError, UsageError

Kind = Literal["timm", "torchvision", "snipit", "code"]
LIBRARY_PREFIXES = ("timm", "torchvision", "snipit")


@dataclass(frozen=True)
class ArchSpec:
    """How to build a fresh model: library + name, or an importable callable, plus kwargs."""

    kind: Kind
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    num_classes: int | None = None

    def __str__(self) -> str:
        return self.name if self.kind == "code" else f"{self.kind}:{self.name}"

    def to_json(self) -> dict[str, Any]:
        return {"spec": str(self), "kwargs": self.kwargs, "num_classes": self.num_classes}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ArchSpec:
        return parse_arch(doc["spec"], kwargs=doc.get("kwargs") or {}, num_classes=doc.get("num_classes"))

    @property
    def short_name(self) -> str:
        """A file-name friendly name: ``resnet18`` for ``timm:resnet18``, the callable for code."""
        return self.name.rsplit(":", 1)[-1] if self.kind == "code" else self.name.split("/")[-1]


def parse_arch(spec: str, kwargs: dict[str, Any] | None = None, num_classes: int | None = None) -> ArchSpec:
    """Parse ``timm:NAME``, ``torchvision:NAME``, ``pkg.mod:callable`` or ``file.py:callable``."""
    prefix, sep, rest = spec.partition(":")
    if not sep or not rest or not prefix:
        raise UsageError(
            f"cannot read arch {spec!r}; write timm:NAME, torchvision:NAME, "
            "package.module:callable or path/to/file.py:callable"
        )
    if prefix in LIBRARY_PREFIXES:
        return ArchSpec(prefix, rest, dict(kwargs or {}), num_classes)  # type: ignore[arg-type]
    module, _, attr = spec.rpartition(":")
    if module.endswith(".py"):
        module = str(Path(module).expanduser().resolve())
    return ArchSpec("code", f"{module}:{attr}", dict(kwargs or {}), num_classes)


def build_model(arch: ArchSpec, pretrained: bool = False, from_checkpoint: bool = False) -> nn.Module:
    """A freshly initialised model (or the library's pretrained weights with ``pretrained``).

    ``from_checkpoint`` marks a spec read from a checkpoint's metadata rather than typed by the
    user. Then a file cannot make snipit run code: ``.py`` paths are refused and an importable
    ``module:attr`` is only called when it is an ``nn.Module`` class; ``--arch`` confirms either.
    """
    if arch.kind == "timm":
        return _build_timm(arch, pretrained)
    if arch.kind == "torchvision":
        return _build_torchvision(arch, pretrained)
    if pretrained:
        raise UsageError("--pretrained applies to timm: and torchvision: models only")
    if arch.kind == "snipit":
        return _build_zoo(arch)
    return _build_code(arch, from_checkpoint)


def _class_kwargs(arch: ArchSpec) -> dict[str, Any]:
    return {**arch.kwargs, **({"num_classes": arch.num_classes} if arch.num_classes else {})}


def _build_timm(arch: ArchSpec, pretrained: bool) -> nn.Module:
    # timm is the reference model zoo for vision; its registry gives names and data configs.
    import timm

    if not timm.is_model(arch.name):
        raise ModelError(f"unknown timm model {arch.name!r}{_close_matches(arch.name, timm.list_models())}")
    kwargs = _class_kwargs(arch)
    try:
        if not pretrained and "zero_init_last" not in kwargs:
            # timm zero-initialises the last norm of each residual branch by default. Then no
            # gradient reaches the branch at init, gradient criteria score it all zero and prune
            # it whole; the networks SNIP/SNIP-it prune at init have no such zero-init.
            try:
                return timm.create_model(arch.name, pretrained=False, zero_init_last=False, **kwargs)
            except TypeError as exc:
                if "zero_init_last" not in str(exc):
                    raise
        return timm.create_model(arch.name, pretrained=pretrained, **kwargs)
    except Exception as exc:  # timm raises many types; the user needs one sentence
        raise _build_error(arch, pretrained, exc) from exc


def _build_torchvision(arch: ArchSpec, pretrained: bool) -> nn.Module:
    import torchvision

    known = torchvision.models.list_models()
    if arch.name not in known:
        raise ModelError(f"unknown torchvision model {arch.name!r}{_close_matches(arch.name, known)}")
    try:
        weights = "DEFAULT" if pretrained else None
        return torchvision.models.get_model(arch.name, weights=weights, **_class_kwargs(arch))
    except Exception as exc:
        raise _build_error(arch, pretrained, exc) from exc


def _build_zoo(arch: ArchSpec) -> nn.Module:
    from snipit_cli.models.zoo import ZOO

    if arch.name not in ZOO:
        raise ModelError(f"unknown snipit model {arch.name!r}{_close_matches(arch.name, list(ZOO))}")
    try:
        return ZOO[arch.name](**_class_kwargs(arch))
    except TypeError as exc:
        raise ModelError(f"could not build {arch}: {exc}; check --arch-kwargs") from exc


def _build_error(arch: ArchSpec, pretrained: bool, exc: Exception) -> ModelError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if pretrained:
        return ModelError(
            f"could not get pretrained weights for {arch} (offline, or not in the local cache): "
            f"{first}; drop --pretrained, or pass a local checkpoint with --arch {arch}"
        )
    return ModelError(f"could not build {arch}: {first}")


def _close_matches(name: str, known: list[str]) -> str:
    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(matches)}?" if matches else "; no close match"


def _build_code(arch: ArchSpec, from_checkpoint: bool) -> nn.Module:
    origin = "the checkpoint's metadata" if from_checkpoint else "--arch"
    if from_checkpoint and arch.name.rpartition(":")[0].endswith(".py"):
        raise ModelError(
            f"the checkpoint's architecture is the code file {arch.name}; snipit does not run files "
            f"named by a checkpoint: pass --arch {arch.name} to confirm"
        )
    target = _import_callable(arch.name, origin)
    is_class = isinstance(target, type) and issubclass(target, nn.Module)
    if from_checkpoint and not is_class:
        raise ModelError(
            f"the checkpoint names {arch.name!r} as its arch, which is not an nn.Module class; "
            f"snipit does not call functions named inside a file: pass --arch {arch.name} to confirm"
        )
    try:
        model = target(**_class_kwargs(arch))
    except TypeError as exc:
        raise ModelError(
            f"could not call {arch.name} with {_class_kwargs(arch)}: {exc}; check --arch-kwargs"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"{arch.name} returned {type(model).__name__}, not an nn.Module")
    return model


def _import_callable(spec: str, origin: str) -> Any:
    module_name, _, attr = spec.rpartition(":")
    if module_name.endswith(".py"):
        module = _import_file(Path(module_name))
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelError(
                f"cannot import {module_name!r} (named by {origin}): {exc}; "
                "install it or put it on PYTHONPATH"
            ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ModelError(f"{module_name!r} has no attribute {attr!r} (named by {origin})") from None


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise ModelError(f"arch file {str(path)!r} does not exist; check the path in --arch")
    name = f"snipit_user_arch_{abs(hash(str(path)))}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelError(f"cannot import {str(path)!r} as Python code")
    module = importlib.util.module_from_spec(spec)
    # Sibling imports in the user's file (``from blocks import Block``) should work as they do
    # when the user runs it; the folder is on sys.path only while the file executes.
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    sys.modules[name] = module
    return module
