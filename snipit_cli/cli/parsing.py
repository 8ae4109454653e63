"""Turning flag strings into typed values, with errors that name the flag."""

from __future__ import annotations

import json
from typing import Any

from snipit_cli.data.build import DataOptions
from snipit_cli.data.specs import default_data_root, parse_data_spec
from snipit_cli.errors import UsageError
from snipit_cli.models.input_spec import Size
from snipit_cli.workflows.prune import ModelOptions


def parse_input_size(text: str) -> Size:
    """``"3,32,32"`` -> (3, 32, 32), or a usage error saying what is expected."""
    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise UsageError(f"--input-size must be C,H,W with positive integers (e.g. 3,32,32), got {text!r}")
    return size  # type: ignore[return-value]


def parse_floats(text: str, option: str, positive: bool = False) -> tuple[float, ...]:
    """``"0.5"`` or ``"0.5,0.4,0.3"`` -> floats, for --mean/--std."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(
            f"{option} takes one number or one per channel, comma-separated; got {text!r}"
        ) from None
    if positive and any(v <= 0 for v in values):
        raise UsageError(f"{option} values must be positive, got {text!r}")
    return values


def parse_json_object(text: str | None, option: str) -> dict[str, Any] | None:
    """A JSON object flag such as ``--arch-kwargs '{"num_classes": 10}'``."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} is not valid JSON ({exc.msg}); e.g. '{{\"num_classes\": 10}}'") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object, e.g. '{{\"num_classes\": 10}}'")
    return value


def model_options(spec, arch, arch_kwargs, num_classes, pretrained, trust_pickle, input_size) -> ModelOptions:
    """The model flags shared by prune and train, parsed."""
    return ModelOptions(
        spec=spec,
        arch=arch,
        arch_kwargs=parse_json_object(arch_kwargs, "--arch-kwargs"),
        num_classes=num_classes,
        pretrained=pretrained,
        trust_pickle=trust_pickle,
        input_size=parse_input_size(input_size) if input_size else None,
    )


def data_options(
    data, data_root, split, download, batch_size, batches, seed, mean, std, workers
) -> DataOptions:
    """The data flags shared by prune and train, parsed (``split`` as its string value)."""
    return DataOptions(
        spec=parse_data_spec(data),
        root=data_root or default_data_root(),
        split=split,
        download=download,
        batch_size=batch_size,
        batches=batches,
        seed=seed,
        mean=parse_floats(mean, "--mean") if mean else None,
        std=parse_floats(std, "--std", positive=True) if std else None,
        workers=workers,
    )
