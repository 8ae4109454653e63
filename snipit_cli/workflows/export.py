"""``snipit export`` as a library call: a model (dense, masked or slim) as an ONNX file with a
dynamic batch dimension, checked against PyTorch before it is published.

With onnxruntime installed, the file is run on fixed-seed probe batches of two sizes (so the
dynamic batch dimension is exercised, not only declared) and the largest absolute difference from
PyTorch's output is reported; one above the tolerance is an error and no file is left, since a
deployment artifact that computes something else is worse than none. Both runtimes are then timed
on the same batches. Without onnxruntime the file is written unchecked, and a note says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from snipit_cli.errors import ModelError, UsageError
from snipit_cli.fileio import check_writable, write_atomic
from snipit_cli.metrics.latency import probe_batch, summary, time_calls
from snipit_cli.models import onnx_export
from snipit_cli.models.input_spec import InputSpec
from snipit_cli.models.storage import dense_nbytes
from snipit_cli.workflows.documents import file_block, ordered, run_block
from snipit_cli.workflows.session import ModelOptions, load, model_document, open_session

Runner = Callable[[np.ndarray], np.ndarray]  # the file's graph on onnxruntime (onnx_export.onnx_runner)

#: The largest |onnx - torch| allowed: RTOL of the output's scale (max |torch output|) plus ATOL,
#: so an export of a model with tiny logits (random-init EfficientNet: 1e-5) is still held to them.
RTOL, ATOL = 1e-4, 1e-6


@dataclass
class ExportRequest:
    """``snipit export MODEL -o FILE.onnx``, parsed."""

    model: ModelOptions
    output: Path | None = None  # default: <model>.onnx
    opset: int | None = None  # default: the exporter's
    check_batches: list[int] = field(default_factory=lambda: [1, 3])
    repeats: int = 20
    warmup: int = 3
    force: bool = False


def run_export(request: ExportRequest) -> dict[str, Any]:
    """Export, check against PyTorch, publish atomically, time both; the export document."""
    started = time.perf_counter()
    onnx_export.require_exporter()
    _check_request(request)
    loaded = load(request.model)
    output = request.output or Path(f"{loaded.name}.onnx")
    if output.suffix != ".onnx":
        raise UsageError(f"-o/--output must end in .onnx, got {output}")
    check_writable(output, request.force, (loaded.path,) if loaded.path else ())
    session = open_session(loaded, device=torch.device("cpu"), data=None, input_size=request.model.input_size)
    model, spec = session.model.eval(), session.input_spec
    notes: list[str] = []
    checked: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        checked["opset"] = onnx_export.export_onnx(model, probe_batch(spec.size, 2), tmp, request.opset)
        if onnx_export.has_onnxruntime():
            checked["run"] = onnx_export.onnx_runner(tmp)  # the graph is in memory: it outlives the rename
            checked["parity"] = _parity(model, checked["run"], spec, request.check_batches, loaded.source)

    write_atomic(output, write)
    latency = None
    if "parity" in checked:
        latency = _latency(model, checked["run"], spec, request)
    else:
        notes.append(f"onnxruntime is not installed: the file was not run or checked ({onnx_export.EXTRA})")
    return ordered(
        "export",
        {
            "model": model_document(loaded, spec, session.num_classes, request.model.pretrained),
            "file": file_block(output, output.stat().st_size, *_param_counts(model)),
            "onnx": {
                "opset": checked["opset"],
                "input": onnx_export.INPUT,
                "output": onnx_export.OUTPUT,
                "dynamic_batch": True,
                "exporter": "torch.onnx.export(dynamo=True)",
                "versions": onnx_export.versions(),
            },
            "parity": checked.get("parity"),
            "latency": latency,
            "run": run_block("cpu", time.perf_counter() - started),
            "notes": notes,
        },
    )


def _param_counts(model: nn.Module) -> tuple[int, int]:
    """Parameters (tied ones once) and the bytes of the model's tensors stored densely."""
    state = model.state_dict(keep_vars=False)
    return sum(p.numel() for p in model.parameters()), dense_nbytes(state)


def _check_request(request: ExportRequest) -> None:
    if not request.check_batches or any(b < 1 for b in request.check_batches):
        raise UsageError(f"--check-batch sizes must be 1 or more, got {request.check_batches}")
    if request.repeats < 1 or request.warmup < 0:
        raise UsageError(
            f"--repeats must be 1 or more and --warmup 0 or more, got {request.repeats}, {request.warmup}"
        )
    if request.opset is not None and not 18 <= request.opset <= 23:
        raise UsageError(
            f"--opset must be between 18 and 23 (the dynamo exporter's range), got {request.opset}"
        )


def _parity(
    model: nn.Module, run: Runner, spec: InputSpec, batches: list[int], source: str
) -> dict[str, Any]:
    """|onnx - torch| on a probe batch of each size; refuses a file that computes something else."""
    diffs, scale = {}, 0.0
    for batch in batches:
        x = probe_batch(spec.size, batch, seed=batch)
        with torch.inference_mode():
            expected = model(x).numpy()
        got = run(x.numpy())
        if got.shape != expected.shape:
            raise ModelError(
                f"the ONNX export of {source} gives shape {got.shape} for batch {batch}, not {expected.shape}"
            )
        diffs[str(batch)] = float(np.abs(got - expected).max())
        scale = max(scale, float(np.abs(expected).max()))
    worst, allowed = max(diffs.values()), RTOL * scale + ATOL
    if not worst <= allowed:  # NaN fails too
        raise ModelError(
            f"the ONNX export of {source} differs from PyTorch by up to {worst:.3g} (allowed "
            f"{allowed:.3g}); nothing was written"
        )
    return {
        "max_abs_diff": worst,
        "max_rel_diff": worst / scale if scale else None,
        "by_batch": diffs,
        "tolerance": allowed,
        "runtime": f"onnxruntime {onnx_export.versions()['onnxruntime']} (CPU)",
    }


def _latency(model: nn.Module, run: Runner, spec: InputSpec, request: ExportRequest) -> dict[str, Any]:
    """Both runtimes on the same probe batch, one after the other per batch size, median of repeats."""
    results = {}
    for batch in request.check_batches:
        x = probe_batch(spec.size, batch)
        array = x.numpy()
        with torch.inference_mode():
            torch_ms = summary(
                time_calls(lambda x=x: model(x), repeats=request.repeats, warmup=request.warmup)
            )
        onnx_ms = summary(time_calls(lambda a=array: run(a), repeats=request.repeats, warmup=request.warmup))
        results[str(batch)] = {
            "torch": torch_ms,
            "onnxruntime": onnx_ms,
            "speedup": torch_ms["median_ms"] / onnx_ms["median_ms"],
        }
    return {
        "batch_sizes": results,
        "repeats": request.repeats,
        "warmup": request.warmup,
        "threads": torch.get_num_threads(),
        "device": "cpu",
    }
