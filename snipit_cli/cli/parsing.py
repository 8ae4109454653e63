"""Turning flag strings into typed values, with errors that name the flag."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from snipit_cli.data.specs import default_data_root, parse_data_spec
from snipit_cli.errors import UsageError
from snipit_cli.pruning.structured.options import AUTO, StructuredOptions

if TYPE_CHECKING:  # the option objects come with torch, imported when a command runs (start-up)
    from snipit_cli.data.build import DataOptions
    from snipit_cli.models.input_spec import Size
    from snipit_cli.workflows.session import ModelOptions


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


#: Keyword arguments that, in timm, torchvision and snipit's own models, count something a
#: model needs at least one of: zero or negative builds empty or impossible layers (torch then
#: warns per layer and fails far from the cause), a float or bool is never meant.
COUNT_KWARGS = ("num_classes", "in_chans", "in_channels", "width", "img_size", "embed_dim", "depth")


def parse_arch_kwargs(text: str | None) -> dict[str, Any] | None:
    """``--arch-kwargs``: a JSON object whose well-known counts are positive integers."""
    kwargs = parse_json_object(text, "--arch-kwargs")
    for key in COUNT_KWARGS:
        value = (kwargs or {}).get(key)
        if isinstance(value, bool) or (isinstance(value, int | float) and not _positive_int(value)):
            raise UsageError(
                f"--arch-kwargs {key} must be a positive integer, got {json.dumps(value)}: the model "
                f"cannot be built with {key}={json.dumps(value)}"
            )
    return kwargs


def _positive_int(value: float) -> bool:
    return isinstance(value, int) and value >= 1


def check_num_classes(num_classes: int | None) -> int | None:
    """``--num-classes`` is a classifier's output count: at least 1 when given."""
    if num_classes is not None and num_classes < 1:
        raise UsageError(f"--num-classes must be at least 1 (snipit prunes classifiers), got {num_classes}")
    return num_classes


def model_options(
    *, spec, arch, arch_kwargs, num_classes, pretrained, trust_pickle, input_size
) -> ModelOptions:
    """The model flags shared by prune, train, report and compare, parsed."""
    from snipit_cli.workflows.session import ModelOptions

    return ModelOptions(
        spec=spec,
        arch=arch,
        arch_kwargs=parse_arch_kwargs(arch_kwargs),
        num_classes=check_num_classes(num_classes),
        pretrained=pretrained,
        trust_pickle=trust_pickle,
        input_size=parse_input_size(input_size) if input_size else None,
    )


def data_options(
    *, data, data_root, split, download, batch_size, batches, seed, mean, std, workers
) -> DataOptions:
    """The data flags shared by prune, train, report and compare, parsed (``split`` as its string value)."""
    from snipit_cli.data.build import DataOptions

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


def structured_options(
    structured: bool,
    target: str | None,
    min_keep: float | None,
    round_to: str | int | None,
    latency_batch: int | None = None,
) -> StructuredOptions | None:
    """``--structured`` and its options (shared by prune and train); the options alone are refused."""
    if not structured:
        if target is not None or min_keep is not None or round_to is not None or latency_batch is not None:
            raise UsageError(
                "--target, --min-keep, --round-to and --latency-batch apply to --structured pruning; "
                "add --structured"
            )
        return None
    if latency_batch is not None and str(target) != "latency":
        raise UsageError("--latency-batch sets the batch of --target latency; add --target latency")
    defaults = StructuredOptions()
    return StructuredOptions(
        target=str(target) if target else defaults.target,  # a StrEnum member's str is its value
        min_keep=defaults.min_keep if min_keep is None else min_keep,
        round_to=defaults.round_to if round_to is None else parse_round_to(round_to),
        latency_batch=defaults.latency_batch if latency_batch is None else latency_batch,
    )


def parse_round_to(text: str | int) -> int | str:
    """``--round-to``: a whole number of channels, or ``auto`` (the device's multiple)."""
    value = str(text).strip().lower()
    if value == AUTO:
        return AUTO
    try:
        return int(value)
    except ValueError:
        raise UsageError(
            f"--round-to must be a whole number of channels, 1 or more, or auto; got {text!r}"
        ) from None
