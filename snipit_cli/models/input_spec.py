"""What input a model expects: size (C, H, W) and normalisation, and where that came from."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from snipit_cli.errors import ModelError, UsageError
from snipit_cli.models.arch import ArchSpec

Size = tuple[int, int, int]
#: 3 x 4096 x 4096: larger images are not what snipit prunes for, and a size read from a file
#: (recorded, or a zoo model's ``img_size`` kwarg) must not make the first probe allocate GBs.
MAX_INPUT_VALUES = 3 * 4096 * 4096


@dataclass(frozen=True)
class InputSpec:
    """Input shape and (optional) mean/std the model was built for."""

    size: Size
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    source: str = ""


def library_input_spec(model: nn.Module, arch: ArchSpec | None) -> InputSpec | None:
    """What the model's library says: timm's data config, torchvision's weights preset, or the
    zoo network's own size (no mean/std: the dataset's are used)."""
    if arch is not None and arch.kind == "timm" or getattr(model, "pretrained_cfg", None):
        from timm.data import resolve_data_config

        cfg = resolve_data_config({}, model=model)
        return InputSpec(tuple(cfg["input_size"]), tuple(cfg["mean"]), tuple(cfg["std"]), "timm data config")
    if arch is not None and arch.kind == "torchvision":
        return _torchvision_spec(arch.name)
    if arch is not None and arch.kind == "snipit":
        side = int(arch.kwargs.get("img_size", 28))
        return InputSpec((int(arch.kwargs.get("in_chans", 1)), side, side), None, None, "snipit model")
    return None


def _torchvision_spec(name: str) -> InputSpec | None:
    import torchvision

    try:
        preset = torchvision.models.get_model_weights(name).DEFAULT.transforms()
    except (ValueError, AttributeError, KeyError):
        return None
    crop = getattr(preset, "crop_size", None)
    if not crop:
        return None
    h = w = int(crop[0])
    return InputSpec((3, h, w), tuple(preset.mean), tuple(preset.std), "torchvision weights preset")


def probe_num_classes(model: nn.Module, size: Size, device: torch.device) -> int:
    """Run one zero image through the model: checks the input size and reads the class count.

    A model with an empty layer (a width or class count of 0 in its kwargs) is named as such
    first: its forward fails too, but not because of the input size. The probe's own warnings
    are not shown: the run's first real forward shows them again if they matter.
    """
    _check_no_empty_layers(model)
    if math.prod(size) > MAX_INPUT_VALUES:
        raise UsageError(
            f"an input of shape {tuple(size)} has {math.prod(size):,} values, more than snipit takes "
            f"({MAX_INPUT_VALUES:,}, 3x4096x4096); pass a smaller --input-size C,H,W"
        )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = model(torch.zeros(1, *size, device=device))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(
            f"the model does not accept inputs of shape {size}: {first}; pass --input-size C,H,W"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[1] < 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"expected (batch, classes) logits from the model, got {shape}; snipit prunes classifiers"
        )
    return int(out.shape[1])


def _check_no_empty_layers(model: nn.Module) -> None:
    empty = [(name, tuple(p.shape)) for name, p in model.named_parameters() if p.numel() == 0]
    if empty:
        name, shape = empty[0]
        raise ModelError(
            f"the model was built with an empty layer ({name} has shape {shape}"
            f"{f', and {len(empty) - 1} more' if len(empty) > 1 else ''}): it cannot be built with "
            "these --arch-kwargs / --num-classes; give every width and class count at least 1"
        )


def broadcast_channels(values: Sequence[float], channels: int, option: str) -> tuple[float, ...]:
    """Repeat a single value or a 1-channel statistic over ``channels``; check lengths otherwise."""
    if len(values) == channels:
        return tuple(values)
    if len(values) == 1:
        return tuple(values) * channels
    if channels == 1:
        return (sum(values) / len(values),)
    raise UsageError(f"{option} has {len(values)} values but the model takes {channels} channels")
