"""``snipit report`` / ``snipit compare`` as library calls: what a checkpoint is, measured."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snipit_cli.data.build import DataOptions, calibration_data
from snipit_cli.errors import ModelError, UsageError
from snipit_cli.metrics.accuracy import evaluate
from snipit_cli.metrics.latency import measure_latency
from snipit_cli.metrics.runtimes import RUNTIMES
from snipit_cli.models import onnx_export
from snipit_cli.models.arch import LIBRARY_PREFIXES
from snipit_cli.models.checkpoint import read_metadata, storage_of
from snipit_cli.models.input_spec import InputSpec
from snipit_cli.models.loading import LoadedModel
from snipit_cli.workflows.documents import (
    connectivity_notes,
    dense_reference,
    measured_blocks,
    nested,
    ordered,
    ratios_block,
    run_block,
)
from snipit_cli.workflows.session import ModelOptions, load, model_document, open_session, resolve_device


@dataclass
class LatencyOptions:
    """``--latency``: batch sizes, repeats after warm-up, and the runtime timed (RUNTIMES)."""

    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    repeats: int = 20
    warmup: int = 3
    runtime: str = "torch"

    def check(self, device: torch.device) -> None:
        """Refuse a runtime this device or install cannot time, before anything is measured."""
        if self.runtime not in RUNTIMES:
            raise UsageError(f"--latency-runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.runtime == "onnxruntime":
            if device.type != "cpu":
                raise UsageError("--latency-runtime onnxruntime times the CPU provider: add --device cpu")
            onnx_export.require_exporter("--latency-runtime onnxruntime", runtime=True)


@dataclass
class DescribeRequest:
    """What ``snipit report`` needs for one model."""

    model: ModelOptions
    data: DataOptions | None = None  # with --eval
    latency: LatencyOptions | None = None
    device: str = "auto"
    input_from: str | None = None  # where an adopted input size came from (compare)


@dataclass
class _Opened:
    """A model of ``report``/``compare`` loaded and probed, before anything is measured."""

    request: DescribeRequest
    loaded: LoadedModel
    model: nn.Module
    spec: InputSpec
    num_classes: int
    device: torch.device
    dataset: Any


def describe(request: DescribeRequest) -> dict[str, Any]:
    """The report document of one model: layers, totals, and accuracy/latency when asked."""
    return _measure(_open(request))


def _open(request: DescribeRequest) -> _Opened:
    """Load and probe one model; a load error names the model (``compare`` loads several)."""
    loaded = load(request.model, name_in_errors=True)
    device = resolve_device(request.device)
    session = open_session(loaded, device=device, data=request.data, input_size=request.model.input_size)
    spec = session.input_spec
    if request.input_from:
        spec = replace(spec, source=request.input_from)
    model = session.model.eval()
    if request.latency:
        request.latency.check(device)
    return _Opened(request, loaded, model, spec, session.num_classes, device, session.dataset)


def _measure(opened: _Opened) -> dict[str, Any]:
    request, loaded, model, spec = opened.request, opened.loaded, opened.model, opened.spec
    device, num_classes = opened.device, opened.num_classes
    started = time.perf_counter()
    metadata = loaded.metadata or {}
    file = None
    if loaded.path is not None:
        file = (loaded.path, loaded.path.stat().st_size, storage_of(metadata))
    blocks = measured_blocks(
        model,
        metadata=metadata,
        input_size=spec.size,
        dense=dense_reference(loaded.arch, metadata, confirmed=loaded.arch_confirmed),
        file=file,
        device=device,
    )
    doc: dict[str, Any] = {
        **blocks,
        "model": model_document(loaded, spec, num_classes, request.model.pretrained),
        "eval": None,
        "latency": None,
        "notes": connectivity_notes(blocks["connectivity"], blocks["pruning"]),
    }
    if request.data:
        data = calibration_data(request.data, opened.dataset, spec, num_classes, device)
        doc["eval"] = {
            **evaluate(model, batches=data.batches(0)),
            "data": str(request.data.spec),
            "split": request.data.split,
        }
    if request.latency:
        lat = request.latency
        doc["latency"] = measure_latency(
            model,
            spec.size,
            batch_sizes=lat.batch_sizes,
            repeats=lat.repeats,
            warmup=lat.warmup,
            device=device,
            runtime=lat.runtime,
        )
    doc["run"] = run_block(str(device), time.perf_counter() - started)
    return ordered("report", doc)


def compare(requests: list[DescribeRequest]) -> dict[str, Any]:
    """Reports of several models plus ratios of each to the first (the baseline).

    Ratios only mean something for models fed the same input: a library model given without
    --input-size/--num-classes takes the ones recorded in a checkpoint being compared, and models
    that still differ are refused before anything is measured.
    """
    opened = [_open(r) for r in _shared_input(requests)]
    _check_same_input(opened)
    docs = [_measure(o) for o in opened]
    return ordered(
        "compare",
        {
            "models": [nested(doc) for doc in docs],
            "ratios": [ratios_block(docs[0], doc) for doc in docs],
            "notes": [note for doc in docs for note in doc["notes"]],
        },
    )


def _shared_input(requests: list[DescribeRequest]) -> list[DescribeRequest]:
    """Library models (``timm:``, ``torchvision:``, ``snipit:``) without an explicit input size or
    class count adopt those of the first snipit checkpoint among the models."""
    recorded = next(filter(None, (_recorded_input(r.model.spec) for r in requests)), None)
    if recorded is None:
        return requests
    (size, classes), source = recorded
    shared = []
    for r in requests:
        if r.model.spec.partition(":")[0] not in LIBRARY_PREFIXES:
            shared.append(r)
            continue
        model = r.model
        if model.input_size is None and size:
            r = replace(r, input_from=f"as {source}")
            model = replace(model, input_size=tuple(size))
        if model.num_classes is None and classes:
            model = replace(model, num_classes=int(classes))
        shared.append(replace(r, model=model))
    return shared


def _recorded_input(spec: str) -> tuple[tuple[list[int] | None, int | None], str] | None:
    """(input size, classes) recorded in a snipit checkpoint's metadata, or None."""
    path = Path(spec).expanduser()
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        model = (read_metadata(path) or {}).get("model") or {}
    except ModelError:
        return None  # describe() names the problem when it loads the file
    if not model.get("input_size"):
        return None
    return (model.get("input_size"), model.get("num_classes")), spec


def _check_same_input(opened: list[_Opened]) -> None:
    first = opened[0]
    for other in opened[1:]:
        if (other.spec.size, other.num_classes) != (first.spec.size, first.num_classes):
            raise UsageError(
                "models compared must take the same input and classes: "
                f"{_input_text(first)} but {_input_text(other)}; pass --input-size C,H,W "
                "(and --num-classes N for library models) so every model is measured alike"
            )


def _input_text(opened: _Opened) -> str:
    size = "x".join(map(str, opened.spec.size))
    return f"{opened.loaded.source} takes {size} with {opened.num_classes} classes ({opened.spec.source})"
