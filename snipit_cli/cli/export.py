"""``snipit export``: a model (dense, pruned or slim) as an ONNX file, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from snipit_cli.cli import options as opt
from snipit_cli.cli.output import Output
from snipit_cli.cli.parsing import model_options

EXAMPLES = """
Examples:

  snipit export slim.safetensors -o slim.onnx

  snipit export timm:resnet18 --num-classes 10 --input-size 3,32,32 -o resnet18.onnx --json
"""

CheckBatch = Annotated[
    list[int] | None,
    typer.Option(
        "--check-batch",
        help="Batch size of a parity check and timing; repeatable; two sizes run the dynamic batch "
        "\\[default: 1 and 3].",
    ),
]
Opset = Annotated[int | None, typer.Option(help="ONNX opset (18-23) \\[default: the exporter's].")]
Repeats = Annotated[int, typer.Option(help="Timed forward passes per batch size and runtime, after warm-up.")]
Warmup = Annotated[int, typer.Option(help="Untimed warm-up passes per batch size and runtime.")]


def export(
    model: opt.Model,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="ONNX file to write \\[default: <model>.onnx]."),
    ] = None,
    opset: Opset = None,
    check_batch: CheckBatch = None,
    repeats: Repeats = 20,
    warmup: Warmup = 3,
    arch: opt.Arch = None,
    arch_kwargs: opt.ArchKwargs = None,
    num_classes: opt.NumClasses = None,
    pretrained: opt.Pretrained = False,
    trust_pickle: opt.TrustPickle = False,
    input_size: opt.InputSize = None,
    force: opt.Force = False,
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    debug: opt.Debug = False,
) -> None:
    """Export MODEL to ONNX (dynamic batch) with torch's dynamo exporter, run it on onnxruntime
    against PyTorch (max |diff| on probe batches), and time both. Needs the onnx extra:
    pip install 'snipit-cli[onnx]'."""
    from snipit_cli.workflows.export import ExportRequest, run_export

    out = Output(json_mode=json_, quiet=quiet)
    request = ExportRequest(
        model=model_options(
            spec=model,
            arch=arch,
            arch_kwargs=arch_kwargs,
            num_classes=num_classes,
            pretrained=pretrained,
            trust_pickle=trust_pickle,
            input_size=input_size,
        ),
        output=output,
        opset=opset,
        check_batches=list(check_batch or [1, 3]),
        repeats=repeats,
        warmup=warmup,
        force=force,
    )
    result = run_export(request)
    out.notes(result)
    out.result(result, result_line(result))


def result_line(result: dict[str, Any]) -> str:
    """``wrote m.onnx (N bytes, opset K, dynamic batch): max |onnx - torch| D on batches ...; ...``"""
    file, onnx = result["file"], result["onnx"]
    line = f"wrote {file['path']} ({file['size']:,} bytes, opset {onnx['opset']}, dynamic batch)"
    parity = result["parity"]
    if parity is None:
        return line + ": not checked (onnxruntime is not installed)"
    batches = " and ".join(parity["by_batch"])
    line += f": max |onnx - torch| = {parity['max_abs_diff']:.2g} on batches {batches}"
    timings = []
    for batch, times in (result["latency"] or {}).get("batch_sizes", {}).items():
        onnx_ms, torch_ms = times["onnxruntime"]["median_ms"], times["torch"]["median_ms"]
        timings.append(f"batch {batch}: onnxruntime {onnx_ms:.3g} ms vs torch {torch_ms:.3g} ms")
    if timings:
        line += f"; {', '.join(timings)} (median of {result['latency']['repeats']})"
    return line
