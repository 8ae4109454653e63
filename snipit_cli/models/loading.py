"""Resolve the ``MODEL`` argument: ``timm:NAME``, ``torchvision:NAME`` or a checkpoint file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from snipit_cli.errors import ModelError, UsageError
from snipit_cli.models.arch import LIBRARY_PREFIXES, ArchSpec, build_model, parse_arch, recorded_arch
from snipit_cli.models.budget import allocation_budget, build_budget, file_elements
from snipit_cli.models.checkpoint import read_metadata, read_tensors
from snipit_cli.models.hub_config import FOLDER_CHECKPOINT, read_hub_config
from snipit_cli.models.slim import apply_slim
from snipit_cli.models.state_dict import (
    PICKLE_SUFFIXES,
    extract_state_dict,
    fit_state_dict,
    read_torch_file,
    with_versions_of,
)


@dataclass
class LoadedModel:
    """A model plus where it came from: enough to record and to rebuild it."""

    model: nn.Module
    source: str
    arch: ArchSpec | None
    metadata: dict[str, Any] | None = None
    path: Path | None = None
    #: The user named ``arch`` (a library spec or ``--arch``), rather than the file's metadata
    #: alone: rebuilding it may run the user's code (see ``build_model``'s ``from_checkpoint``).
    arch_confirmed: bool = False
    #: The model's name when not its file's stem: a hub-style folder's name.
    label: str | None = None

    @property
    def name(self) -> str:
        """Short name for default output files: the library name, the folder's or the file stem."""
        if self.label is not None:
            return self.label
        if self.path is not None:
            return self.path.stem
        return self.arch.short_name if self.arch else "model"


def resolve_model(
    spec: str,
    *,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    num_classes: int | None = None,
    pretrained: bool = False,
    trust_pickle: bool = False,
) -> LoadedModel:
    """Build or load the model named by ``spec`` (see the README's "Model sources")."""
    prefix, sep, _ = spec.partition(":")
    if sep and prefix in LIBRARY_PREFIXES:
        if arch:
            raise UsageError(f"--arch is for checkpoint files; {spec} already names the architecture")
        parsed = parse_arch(spec, arch_kwargs, num_classes)
        model = build_model(parsed, pretrained)
        return LoadedModel(model, spec, recorded_arch(parsed, model), arch_confirmed=True)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(
            f"no such file {spec!r}; for a library model write timm:{spec} or torchvision:{spec}"
            if not sep and "/" not in spec and "." not in spec
            else f"no such file {spec!r}; pass a checkpoint path, timm:NAME or torchvision:NAME"
        )
    if pretrained:
        raise UsageError("--pretrained applies to timm:/torchvision: models, not to checkpoint files")
    if path.is_dir():
        return _load_folder(path, spec, arch, arch_kwargs, num_classes)
    user_arch = parse_arch(arch, arch_kwargs, num_classes) if arch else None
    if path.suffix == ".safetensors":
        return _load_safetensors(path, spec, user_arch)
    if path.suffix in PICKLE_SUFFIXES:
        return _load_torch_file(path, spec, user_arch, trust_pickle)
    raise ModelError(f"cannot tell the format of {spec}; use a .safetensors, .pt, .pth or .th file")


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    num_classes: int | None = None,
    trust_pickle: bool = False,
) -> nn.Module:
    """Load a checkpoint snipit wrote (or a state_dict plus ``arch``) into an ``nn.Module``.

    The model is returned in eval mode, on the CPU.
    """
    loaded = resolve_model(
        str(path), arch=arch, arch_kwargs=arch_kwargs, num_classes=num_classes, trust_pickle=trust_pickle
    )
    return loaded.model.eval()


def _load_folder(
    path: Path, spec: str, arch: str | None, arch_kwargs: dict[str, Any] | None, num_classes: int | None
) -> LoadedModel:
    """A hub-style folder: ``model.safetensors`` with snipit's metadata (``-o DIR/``; slim ones
    too) loads as that file; else timm builds it from ``config.json`` (its ``local-dir:`` source,
    as ``save_for_hf`` and ``push_to_hf_hub`` lay it out) and loads the folder's weights."""
    weights = path / FOLDER_CHECKPOINT
    if not weights.is_file():
        if (path / "pytorch_model.bin").is_file():
            raise ModelError(
                f"{spec} holds pytorch_model.bin (a pickle) and no {FOLDER_CHECKPOINT}; pass "
                f"timm:local-dir:{spec}, or save it with save_for_hf(..., safe_serialization=True)"
            )
        raise ModelError(
            f"{spec} is a folder without {FOLDER_CHECKPOINT}; pass a checkpoint file (.safetensors, "
            ".pt, .pth, .th) or a hub-style folder (config.json + model.safetensors)"
        )
    if arch or read_metadata(weights) is not None:
        user_arch = parse_arch(arch, arch_kwargs, num_classes) if arch else None
        loaded = _load_safetensors(weights, spec, user_arch)
        loaded.label = path.name
        return loaded
    config = read_hub_config(path)
    if config is None or "architecture" not in config:
        raise ModelError(
            f"{spec} holds {FOLDER_CHECKPOINT} without snipit metadata and no config.json naming its "
            f"architecture; pass --arch timm:NAME, torchvision:NAME or module:callable"
        )
    parsed = parse_arch(f"timm:local-dir:{path}", arch_kwargs, num_classes)
    model = build_model(parsed, pretrained=True)
    return LoadedModel(
        model, spec, recorded_arch(parsed, model), None, weights, arch_confirmed=True, label=path.name
    )


def _class_spec(model: nn.Module) -> ArchSpec:
    """``module:Class`` of a trusted pickled model: pickle itself found the class by that name,
    so the pruned checkpoint can name it too (rebuilt with no arguments, or with --arch-kwargs)."""
    cls = type(model)
    return ArchSpec("code", f"{cls.__module__}:{cls.__qualname__}")


def _load_safetensors(path: Path, spec: str, user_arch: ArchSpec | None) -> LoadedModel:
    metadata = read_metadata(path)
    arch = user_arch
    if arch is None and metadata is not None:
        recorded = (metadata.get("model") or {}).get("arch")
        arch = ArchSpec.from_json(recorded) if recorded else None
    if arch is None:
        raise ModelError(
            f"{spec} holds only tensors and no snipit metadata; say which model they belong to "
            "with --arch timm:NAME, torchvision:NAME or module:callable"
        )
    model = _rebuild(arch, path, spec, (metadata or {}).get("slim"), from_checkpoint=user_arch is None)
    fit_state_dict(model, with_versions_of(model, read_tensors(path)), what=spec)
    if user_arch is not None:
        arch = recorded_arch(user_arch, model)
    return LoadedModel(model, spec, arch, metadata, path, arch_confirmed=user_arch is not None)


def _rebuild(arch: ArchSpec, path: Path, spec: str, slim: Any, from_checkpoint: bool) -> nn.Module:
    """``arch`` built (and slimmed by a structured checkpoint's record) allocating no more than
    the file's tensors can fill: the metadata cannot make snipit allocate without bound."""
    elements = file_elements(path)
    holds = f"{spec} holds {elements:,} tensor elements, but"
    with allocation_budget(
        build_budget(elements, slim=bool(slim)),
        f"{holds} building {arch}",
        "the architecture does not fit the file (check its kwargs and num_classes: recorded, "
        "or --arch-kwargs and --num-classes)",
    ):
        model = build_model(arch, from_checkpoint=from_checkpoint, checkpoint=path)
    if slim:
        with allocation_budget(
            build_budget(elements, slim=False), f"{holds} its slim record", "the record does not describe it"
        ):
            apply_slim(model, slim)
    return model


def _load_torch_file(path: Path, spec: str, user_arch: ArchSpec | None, trust_pickle: bool) -> LoadedModel:
    obj = read_torch_file(path, trust_pickle)
    if isinstance(obj, nn.Module) and user_arch is None:
        return LoadedModel(obj, spec, _class_spec(obj), None, path)
    if user_arch is None:
        raise ModelError(
            f"{spec} holds a state_dict; say which model it belongs to with --arch "
            "timm:NAME, torchvision:NAME or module:callable (and --arch-kwargs / --num-classes)"
        )
    model = build_model(user_arch)
    fit_state_dict(model, extract_state_dict(obj, path), what=spec)
    return LoadedModel(model, spec, recorded_arch(user_arch, model), None, path, arch_confirmed=True)
