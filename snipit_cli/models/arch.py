"""Architecture specs: ``timm:NAME``, ``torchvision:NAME``, ``snipit:NAME`` or user code ``module:callable``.

An :class:`ArchSpec` is what snipit records in checkpoint metadata so that a checkpoint can be
rebuilt from tensors alone, never by unpickling a module (as timm's ``_builder`` does). Importing
user code (``module:callable``, a ``.py`` file) and the check on code a checkpoint names live in
:mod:`~snipit_cli.models.user_code`.
"""

from __future__ import annotations

import contextlib
import difflib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from torch import nn

from snipit_cli.errors import ModelError, SnipitError, UsageError
from snipit_cli.models.user_code import check_recorded_code, import_callable

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
    folder = rest.removeprefix("local-dir:") if prefix == "timm" else ""
    if folder and folder != rest:  # timm reads it relative to the working directory; record it whole
        folder = str(Path(folder).expanduser().resolve())
        return ArchSpec("timm", f"local-dir:{folder}", dict(kwargs or {}), num_classes)
    if prefix in LIBRARY_PREFIXES:
        return ArchSpec(prefix, rest, dict(kwargs or {}), num_classes)  # type: ignore[arg-type]
    module, _, attr = spec.rpartition(":")
    if module.endswith(".py"):
        module = str(Path(module).expanduser().resolve())
    return ArchSpec("code", f"{module}:{attr}", dict(kwargs or {}), num_classes)


def build_model(
    arch: ArchSpec, pretrained: bool = False, from_checkpoint: bool = False, checkpoint: Path | None = None
) -> nn.Module:
    """A freshly initialised model (or the library's pretrained weights with ``pretrained``).

    ``from_checkpoint`` marks a spec read from the metadata of ``checkpoint`` rather than typed by
    the user. Then a file cannot make snipit run code: ``.py`` paths are refused, a ``module:attr``
    is imported only from an installed package (see :func:`check_recorded_code`) and called only
    when it is an ``nn.Module`` class; ``--arch`` confirms any of these.
    """
    if arch.kind in ("timm", "torchvision"):
        # torch.hub prints "Downloading: ..." to stdout, where it would break `--json | jq`.
        build = _build_timm if arch.kind == "timm" else _build_torchvision
        with contextlib.redirect_stdout(sys.stderr):
            return build(arch, pretrained)
    if pretrained:
        raise UsageError("--pretrained applies to timm: and torchvision: models only")
    if arch.kind == "snipit":
        return _build_zoo(arch)
    return _build_code(arch, from_checkpoint, checkpoint)


def recorded_arch(arch: ArchSpec, model: nn.Module) -> ArchSpec:
    """The spec to record for ``model`` built from ``arch``.

    A ``timm:hf-hub:...`` or ``timm:local-dir:...`` model is recorded as the architecture and
    arguments timm built it with (its config's ``architecture``, ``model_args`` and class count,
    read back with timm's ``get_model_args``), so a pruned checkpoint rebuilds without the hub
    or the folder. Other specs are recorded as given.
    """
    if arch.kind != "timm" or _timm_source(arch)[0] is None:
        return arch
    from timm.models import get_model_args

    kwargs = get_model_args(model)
    num_classes = kwargs.pop("num_classes", arch.num_classes)
    return ArchSpec("timm", model.pretrained_cfg["architecture"], kwargs, num_classes)


def _class_kwargs(arch: ArchSpec) -> dict[str, Any]:
    return {**arch.kwargs, **({"num_classes": arch.num_classes} if arch.num_classes else {})}


def _build_timm(arch: ArchSpec, pretrained: bool) -> nn.Module:
    # timm is the reference model zoo for vision; its registry gives names and data configs.
    import timm

    source, name = _timm_source(arch)
    if source is None and not timm.is_model(name):
        raise ModelError(f"unknown timm model {name!r}{_close_matches(name, timm.list_models())}")
    # timm resolves hf-hub:/local-dir: itself (config.json -> architecture, args, weights).
    unreachable = _hub_unreachable() if pretrained or source == "hf-hub" else None
    try:
        with _hub_offline() if unreachable else contextlib.nullcontext():
            return _create_timm(arch.name, pretrained, _class_kwargs(arch))
    except SnipitError:  # e.g. the allocation budget of a checkpoint's rebuild: already one line
        raise
    except Exception as exc:  # timm raises many types; the user needs one sentence
        raise _build_error(arch, pretrained, exc, unreachable) from exc


def _create_timm(name: str, pretrained: bool, kwargs: dict[str, Any]) -> nn.Module:
    import timm

    if not pretrained and "zero_init_last" not in kwargs:
        # timm zero-initialises the last norm of each residual branch by default. Then no
        # gradient reaches the branch at init, gradient criteria score it all zero and prune
        # it whole; the networks SNIP/SNIP-it prune at init have no such zero-init.
        try:
            return timm.create_model(name, pretrained=False, zero_init_last=False, **kwargs)
        except TypeError as exc:
            if "zero_init_last" not in str(exc):
                raise
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def _timm_source(arch: ArchSpec) -> tuple[str | None, str]:
    """timm's own reading of a model name: (``hf-hub``/``local-dir``/None, repo/folder/name)."""
    from timm.models import parse_model_name

    try:
        return parse_model_name(arch.name)
    except ValueError as exc:
        source, colon, rest = arch.name.partition(":")
        if colon and not rest:
            raise ModelError(f"{arch} names no Hub repo or folder after {source}:") from exc
        if colon:
            raise ModelError(
                f"unknown timm model source in {arch}; timm reads timm:hf-hub:ORG/NAME (a Hub repo) "
                "and timm:local-dir:PATH (a folder with config.json)"
            ) from exc
        raise ModelError(
            f"{arch} looks like a Hub repo or a folder, not a timm model name; "
            f"write timm:hf-hub:{arch.name} or timm:local-dir:{arch.name}"
        ) from exc


#: Seconds to wait for the Hugging Face Hub before working from its cache alone.
HUB_PROBE_TIMEOUT_S = 3.0


def _hub_unreachable() -> str | None:
    """Why the Hugging Face Hub cannot be reached, or None (reachable, or offline mode already on).

    Unreachable, each file the hub client looks for costs it five retries (about 25 s); one
    request with a short timeout (through the client's own session: its proxies and endpoint)
    tells at once.
    """
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception as exc:  # the transport's errors differ between huggingface_hub versions
        return f"the Hugging Face Hub at {constants.ENDPOINT} cannot be reached ({_first(exc)})"
    return None


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """huggingface_hub's offline mode (cached files only, no retries) for one build.

    The hub reads ``constants.HF_HUB_OFFLINE`` at each request and has no other switch once
    imported; it is restored afterwards.
    """
    from huggingface_hub import constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


def _build_torchvision(arch: ArchSpec, pretrained: bool) -> nn.Module:
    import torchvision

    known = torchvision.models.list_models()
    if arch.name not in known:
        raise ModelError(f"unknown torchvision model {arch.name!r}{_close_matches(arch.name, known)}")
    try:
        weights = "DEFAULT" if pretrained else None
        return torchvision.models.get_model(arch.name, weights=weights, **_class_kwargs(arch))
    except SnipitError:
        raise
    except Exception as exc:
        raise _build_error(arch, pretrained, exc, None) from exc


def _build_zoo(arch: ArchSpec) -> nn.Module:
    from snipit_cli.models.zoo import ZOO

    if arch.name not in ZOO:
        raise ModelError(f"unknown snipit model {arch.name!r}{_close_matches(arch.name, list(ZOO))}")
    try:
        return ZOO[arch.name](**_class_kwargs(arch))
    except TypeError as exc:
        raise ModelError(f"could not build {arch}: {exc}; check --arch-kwargs") from exc


def _build_error(arch: ArchSpec, pretrained: bool, exc: Exception, unreachable: str | None) -> ModelError:
    first = _first(exc)
    fix = f"drop --pretrained, or pass a local checkpoint with --arch {arch}"
    if _is_hub_cache_miss(exc):
        what = f"pretrained weights for {arch}" if pretrained else f"the config of {arch}"
        return ModelError(
            f"could not get {what}: {unreachable or _hub_state()}, and the local cache does not hold "
            f"them; {fix if pretrained else 'connect, or set HF_HOME to a cache that has them'}"
        )
    if arch.kind == "timm" and _timm_source(arch)[0] == "local-dir":
        return ModelError(f"could not build {arch} from its folder: {first}")
    if pretrained:
        return ModelError(
            f"could not get pretrained weights for {arch} (offline, or not in the local cache): "
            f"{first}; {fix}"
        )
    return ModelError(f"could not build {arch}: {first}")


def _is_hub_cache_miss(exc: Exception) -> bool:
    """The hub client could not connect (or was told not to) and had no cached copy."""
    from huggingface_hub.errors import LocalEntryNotFoundError

    return isinstance(exc, LocalEntryNotFoundError)


def _hub_state() -> str:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "the Hugging Face Hub's offline mode is on (HF_HUB_OFFLINE)"
    return f"{constants.ENDPOINT} could not be reached"


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _close_matches(name: str, known: list[str]) -> str:
    matches = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {', '.join(matches)}?" if matches else "; no close match"


def _build_code(arch: ArchSpec, from_checkpoint: bool, checkpoint: Path | None) -> nn.Module:
    origin = "the checkpoint's metadata" if from_checkpoint else "--arch"
    if from_checkpoint:
        check_recorded_code(arch.name, checkpoint)
    target = import_callable(arch.name, origin)
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
