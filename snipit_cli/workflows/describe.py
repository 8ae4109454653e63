"""``snipit report`` / ``snipit compare`` as library calls: what a checkpoint is, measured."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

import snipit_cli
from snipit_cli.data.build import DataOptions, calibration_data
from snipit_cli.errors import ModelError, UsageError
from snipit_cli.metrics.accuracy import evaluate
from snipit_cli.metrics.latency import measure_latency
from snipit_cli.metrics.macs import macs_by_module
from snipit_cli.metrics.sparsity import layer_rows, param_totals
from snipit_cli.models.arch import LIBRARY_PREFIXES, ArchSpec, build_model
from snipit_cli.models.checkpoint import read_metadata, storage_of
from snipit_cli.models.input_spec import InputSpec
from snipit_cli.models.loading import LoadedModel
from snipit_cli.models.storage import dense_nbytes
from snipit_cli.workflows.session import ModelOptions, load, open_session, resolve_device

#: Keys of the checkpoint metadata that describe how it was pruned.
PRUNING_KEYS = (
    "method",
    "structured",
    "schedule",
    "sparsity",
    "exclude",
    "seed",
    "min_keep",
    "calibration",
    "nodes",
)


@dataclass
class LatencyOptions:
    """``--latency``: batch sizes, repeats after warm-up."""

    batch_sizes: list[int] = field(default_factory=lambda: [1, 32])
    repeats: int = 20
    warmup: int = 3


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
    return _Opened(request, loaded, model, spec, session.num_classes, device, session.dataset)


def _measure(opened: _Opened) -> dict[str, Any]:
    request, loaded, model, spec = opened.request, opened.loaded, opened.model, opened.spec
    device, num_classes = opened.device, opened.num_classes
    metadata = loaded.metadata or {}
    dense = _dense_reference(loaded.arch, metadata, loaded.arch_confirmed)

    rows = layer_rows(model, dense=dense)
    macs = macs_by_module(model, spec.size, device)
    for row in rows:
        row["macs"] = macs.get(row["name"], 0)
    params = param_totals(model, rows, dense=dense)
    size_bytes = loaded.path.stat().st_size if loaded.path else None
    doc: dict[str, Any] = {
        "snipit_version": snipit_cli.__version__,
        "source": loaded.source,
        "model": {
            "arch": loaded.arch.to_json() if loaded.arch else None,
            "input_size": list(spec.size),
            "input_size_from": spec.source,
            "num_classes": num_classes,
        },
        "pruning": {k: metadata[k] for k in PRUNING_KEYS if k in metadata} or None,
        "totals": {
            **params,
            "weight_sparsity": 1 - params["prunable_nonzero"] / params["prunable"]
            if params["prunable"]
            else 0.0,
            "node_sparsity": _node_sparsity(rows, metadata),
            "macs": macs[""],
            "file_size": size_bytes,
            **file_figures(size_bytes, params["total"], dense_nbytes(model.state_dict())),
            "storage": storage_of(metadata) if loaded.path else None,
        },
        "layers": rows,
        "eval": None,
        "latency": None,
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
        )
    return doc


def file_figures(file_size: int | None, params: int, dense_size: int) -> dict[str, Any]:
    """Bytes per parameter and the file against its dense tensors (what --storage dense holds,
    less the header): sparse storage shows as a ratio well below 1."""
    return {
        "file_bytes_per_param": file_size / params if file_size and params else None,
        "dense_size": dense_size,
        "file_to_dense": file_size / dense_size if file_size and dense_size else None,
    }


def compare(requests: list[DescribeRequest]) -> dict[str, Any]:
    """Reports of several models plus ratios of each to the first (the baseline).

    Ratios only mean something for models fed the same input: a library model given without
    --input-size/--num-classes takes the ones recorded in a checkpoint being compared, and models
    that still differ are refused before anything is measured.
    """
    opened = [_open(r) for r in _shared_input(requests)]
    _check_same_input(opened)
    docs = [_measure(o) for o in opened]
    return {"models": docs, "ratios": [ratios(docs[0], doc) for doc in docs]}


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


def ratios(base: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """How many times fewer params/nonzeros/MACs/bytes, how many times faster, accuracy change."""

    def fewer(key: str) -> float | None:
        a, b = base["totals"].get(key), other["totals"].get(key)
        return a / b if a and b else None

    out: dict[str, Any] = {
        "source": other["source"],
        "params": fewer("total"),
        "nonzero": fewer("nonzero"),
        "macs": fewer("macs"),
        "file_size": fewer("file_size"),
        "file_bytes_per_param": fewer("file_bytes_per_param"),
    }
    if base["latency"] and other["latency"]:
        out["speedup"] = {
            bs: base["latency"]["batch_sizes"][bs]["median_ms"] / t["median_ms"]
            for bs, t in other["latency"]["batch_sizes"].items()
            if bs in base["latency"]["batch_sizes"]
        }
    if base["eval"] and other["eval"] and base["eval"]["top1"] is not None:
        out["top1_change"] = other["eval"]["top1"] - base["eval"]["top1"]
    return out


def _dense_reference(arch: ArchSpec | None, metadata: dict[str, Any], confirmed: bool) -> nn.Module | None:
    """The dense architecture behind a slim checkpoint, for dense shapes (None otherwise); built
    as the checkpoint was loaded: from the metadata alone, or as the user's ``--arch``."""
    if not metadata.get("slim") or arch is None:
        return None
    with torch.random.fork_rng():
        return build_model(arch, from_checkpoint=not confirmed)


def _node_sparsity(rows: list[dict[str, Any]], metadata: dict[str, Any]) -> float | None:
    if "nodes" in metadata:
        return metadata["nodes"]["sparsity"]
    if not any("dense_shape" in r for r in rows):
        return None
    dense = sum(r["dense_shape"][0] for r in rows if r["prunable"])
    return 1 - sum(r["shape"][0] for r in rows if r["prunable"]) / dense
