"""``snipit report`` / ``snipit compare`` as library calls: what a checkpoint is, measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import snipit_cli
from snipit_cli.data.build import DataOptions, calibration_data, dataset_input_spec, open_dataset
from snipit_cli.errors import ModelError
from snipit_cli.metrics.accuracy import evaluate
from snipit_cli.metrics.latency import measure_latency
from snipit_cli.metrics.macs import macs_by_module
from snipit_cli.metrics.sparsity import layer_rows, param_totals
from snipit_cli.models.arch import ArchSpec, build_model
from snipit_cli.models.checkpoint import storage_of
from snipit_cli.models.input_spec import probe_num_classes
from snipit_cli.models.storage import dense_nbytes
from snipit_cli.workflows.prune import ModelOptions, load, resolve_device, resolve_input_spec

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


def describe(request: DescribeRequest) -> dict[str, Any]:
    """The report document of one model: layers, totals, and accuracy/latency when asked."""
    try:
        loaded = load(request.model)
    except ModelError as exc:
        raise ModelError(f"cannot load {request.model.spec}: {exc}") from exc
    device = resolve_device(request.device)
    dataset = open_dataset(request.data) if request.data else None
    spec = resolve_input_spec(request.model.input_size, loaded, dataset_input_spec(dataset))
    model = loaded.model.eval().to(device)
    num_classes = probe_num_classes(model, spec.size, device)
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
        data = calibration_data(request.data, dataset, spec, num_classes, device)
        doc["eval"] = {
            **evaluate(model, data.batches(0)),
            "data": str(request.data.spec),
            "split": request.data.split,
        }
    if request.latency:
        lat = request.latency
        doc["latency"] = measure_latency(model, spec.size, lat.batch_sizes, lat.repeats, lat.warmup, device)
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
    """Reports of several models plus ratios of each to the first (the baseline)."""
    docs = [describe(r) for r in requests]
    return {"models": docs, "ratios": [ratios(docs[0], doc) for doc in docs]}


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
