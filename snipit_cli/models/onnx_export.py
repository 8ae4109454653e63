"""ONNX export of a (dense, masked or slim) model, and running the file back with onnxruntime.

The exporter is torch's own dynamo-based one (``torch.onnx.export(..., dynamo=True)``): it traces
with ``torch.export``, so functional ops in ``forward`` and the reshapes of a slim model are
captured as the model computes them, and it is the exporter PyTorch maintains (the TorchScript one
is deprecated). It needs ``onnx`` and ``onnxscript``; ``onnxruntime`` runs the file to check it.
All three are the optional extra ``snipit-cli[onnx]``, so the core install stays small.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from snipit_cli.errors import ModelError, UsageError

EXTRA = "pip install 'snipit-cli[onnx]'"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
INPUT, OUTPUT = "input", "logits"


def require_exporter(what: str = "snipit export", runtime: bool = False) -> None:
    """Refuse, before any work, when the exporter's packages (and with ``runtime``, onnxruntime)
    are not installed."""
    names = ("onnx", "onnxscript", "onnxruntime") if runtime else ("onnx", "onnxscript")
    missing = [name for name in names if not _importable(name)]
    if missing:
        raise UsageError(
            f"{what} needs the onnx extra ({', '.join(missing)} not installed); install it with {EXTRA}"
        )


def has_onnxruntime() -> bool:
    return _importable("onnxruntime")


def versions() -> dict[str, str | None]:
    """The exporter's and the runtime's package versions, for the record."""
    return {name: _version(name) for name in ("onnx", "onnxscript", "onnxruntime")}


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, opset: int | None) -> int:
    """Write ``model`` as ONNX to ``path`` with a dynamic batch dimension; returns the opset.

    ``example`` must have a batch of 2 or more: torch.export specialises a dimension of size 1.
    The exporter's progress lines go to stderr: stdout carries results only.
    """
    batch = torch.export.Dim("batch", min=1)
    try:
        with _quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                model,
                (example,),
                dynamo=True,
                dynamic_shapes=({0: batch},),
                input_names=[INPUT],
                output_names=[OUTPUT],
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # torch.export and the op translators raise many types
        raise ModelError(
            f"the ONNX exporter cannot export this model: {_cause(exc)} (forward is traced by "
            "torch.export: Python branches on tensor values, .item() and .numpy() cannot be exported; "
            "--debug shows where)"
        ) from exc
    program.save(str(path))
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"the exported graph fails onnx.checker: {_cause(exc)}") from exc
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch.export logs its guesses (``W... symbolic_shapes ...``) through ``logging`` while it
    traces, prints the partial graph to stderr when it fails, and the exporter prints progress:
    none of it is the user's business (stdout is for results; the one-line error names the cause,
    ``--debug`` the traceback), so all of it is dropped."""
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.disable(logging.NOTSET)


def _cause(exc: BaseException) -> str:
    """The first line of the innermost cause (torch.onnx wraps torch.export's error in a step
    report), without terminal colours, cut to a line's length."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = _ANSI.sub("", str(exc))
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first if len(first) <= 240 else first[:237] + "..."


def onnx_runner(path: Path, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function running the file's graph on onnxruntime's CPU provider (on ``threads`` threads
    when given, so its timings compare with torch's; else onnxruntime's default)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no provider chatter on stderr
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run([OUTPUT], {INPUT: x})[0]


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules (blocked)
        return False


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None
