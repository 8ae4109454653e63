"""``snipit report`` and ``snipit compare``: describe checkpoints for people and pipelines."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from snipit_cli.cli import options as opt
from snipit_cli.cli.formats import FORMATS, compare_tables, report_tables
from snipit_cli.cli.output import Output
from snipit_cli.cli.parsing import data_options as parsed_data_options
from snipit_cli.cli.parsing import model_options
from snipit_cli.cli.plots import check_plot_path, plot_compare, plot_layers
from snipit_cli.data.specs import parse_data_spec
from snipit_cli.errors import UsageError

if TYPE_CHECKING:  # the workflow comes with torch, imported when the command runs (start-up)
    from snipit_cli.workflows.describe import DescribeRequest

Format = opt.choices("Format", FORMATS)
FormatOpt = Annotated[
    Format | None, typer.Option("--format", help="table (default), markdown, csv or json (= --json).")
]
Eval = Annotated[bool, typer.Option("--eval", help="Add top-1/top-5 accuracy and mean loss on --data.")]
EvalBatches = Annotated[
    int | None, typer.Option(help="Evaluate on at most this many batches \\[default: all].")
]
EvalSplit = Annotated[
    str, typer.Option("--split", help="Dataset split to evaluate on.", rich_help_panel="Data")
]
Latency = Annotated[bool, typer.Option("--latency", help="Measure forward latency (median of --repeats).")]
LatencyBatch = Annotated[
    list[int] | None,
    typer.Option("--latency-batch", help="Batch size to time; repeatable \\[default: 1 and 32]."),
]
LatencyRuntimeOpt = Annotated[
    opt.LatencyRuntime,
    typer.Option(
        "--latency-runtime",
        help="Where --latency times the forward: torch (eager, as loaded), channels-last (eager, "
        "NHWC layout) or onnxruntime (the ONNX export on the CPU provider; needs the onnx extra).",
    ),
]
Repeats = Annotated[int, typer.Option(help="Timed forward passes per batch size, after warm-up.")]
Warmup = Annotated[int, typer.Option(help="Untimed warm-up passes per batch size.")]
Plot = Annotated[Path | None, typer.Option(help="Write a PNG chart (needs the plot extra: matplotlib).")]
PlotForce = Annotated[bool, typer.Option("--force", help="Replace an existing --plot file.")]


def _request(
    spec: str,
    *,
    arch,
    arch_kwargs,
    num_classes,
    pretrained,
    trust_pickle,
    input_size,
    device,
    data,
    data_root,
    split,
    download,
    batch_size,
    mean,
    std,
    workers,
    eval_,
    eval_batches,
    latency,
    latency_batch,
    latency_runtime,
    repeats,
    warmup,
) -> DescribeRequest:
    """One model's DescribeRequest from the flags report and compare share."""
    from snipit_cli.workflows.describe import DescribeRequest, LatencyOptions

    if eval_batches is not None and eval_batches < 1:
        raise UsageError("--eval-batches must be at least 1")
    if repeats < 1 or warmup < 0:
        raise UsageError("--repeats must be at least 1 and --warmup 0 or more")
    if str(latency_runtime) != "torch" and not latency:
        raise UsageError(f"--latency-runtime {latency_runtime} says where to time: add --latency")
    data_options = None
    if eval_:
        default = 10 if parse_data_spec(data).kind == "synthetic" else 10**9  # all of a real split
        data_options = parsed_data_options(
            data=data,
            data_root=data_root,
            split=split,
            download=download,
            batch_size=batch_size,
            batches=eval_batches or default,
            seed=0,
            mean=mean,
            std=std,
            workers=workers,
        )
    return DescribeRequest(
        # --pretrained names library weights; in compare it applies to the library models only.
        model=model_options(
            spec=spec,
            arch=arch,
            arch_kwargs=arch_kwargs,
            num_classes=num_classes,
            pretrained=pretrained and _is_library(spec),
            trust_pickle=trust_pickle,
            input_size=input_size,
        ),
        data=data_options,
        latency=LatencyOptions(latency_batch or [1, 32], repeats, warmup, str(latency_runtime))
        if latency
        else None,
        device=device,
    )


def _is_library(spec: str) -> bool:
    from snipit_cli.models.arch import LIBRARY_PREFIXES

    return spec.partition(":")[0] in LIBRARY_PREFIXES


def _check_plot(plot: Path | None, force: bool, specs: list[str]) -> None:
    if plot is not None:
        check_plot_path(plot, force, tuple(Path(s) for s in specs if Path(s).is_file()))


def report(
    model: opt.Model,
    arch: opt.Arch = None,
    arch_kwargs: opt.ArchKwargs = None,
    num_classes: opt.NumClasses = None,
    pretrained: opt.Pretrained = False,
    trust_pickle: opt.TrustPickle = False,
    input_size: opt.InputSize = None,
    device: opt.Device = "auto",
    data: opt.Data = "synthetic",
    data_root: opt.DataRoot = None,
    split: EvalSplit = "test",
    download: opt.Download = False,
    batch_size: opt.BatchSize = 64,
    mean: opt.Mean = None,
    std: opt.Std = None,
    workers: opt.Workers = 0,
    eval_: Eval = False,
    eval_batches: EvalBatches = None,
    latency: Latency = False,
    latency_batch: LatencyBatch = None,
    latency_runtime: LatencyRuntimeOpt = "torch",
    repeats: Repeats = 20,
    warmup: Warmup = 3,
    fmt: FormatOpt = None,
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    plot: Plot = None,
    force: PlotForce = False,
    debug: opt.Debug = False,
) -> None:
    """Describe MODEL: per-layer shapes, params, sparsity and MACs, totals, file size;
    accuracy with --eval, measured latency with --latency."""
    out = Output(json_mode=json_, quiet=quiet, format=fmt)
    request = _request(
        model,
        arch=arch,
        arch_kwargs=arch_kwargs,
        num_classes=num_classes,
        pretrained=pretrained,
        trust_pickle=trust_pickle,
        input_size=input_size,
        device=device,
        data=data,
        data_root=data_root,
        split=split,
        download=download,
        batch_size=batch_size,
        mean=mean,
        std=std,
        workers=workers,
        eval_=eval_,
        eval_batches=eval_batches,
        latency=latency,
        latency_batch=latency_batch,
        latency_runtime=latency_runtime,
        repeats=repeats,
        warmup=warmup,
    )
    _check_plot(plot, force, [model])
    from snipit_cli.workflows.describe import describe

    doc = describe(request)
    if plot:
        plot_layers(doc, plot)
    out.notes(doc)
    out.tables(doc, report_tables(doc))


def compare_cmd(
    models: Annotated[list[str], typer.Argument(help="Two or more models; the first is the baseline.")],
    arch: opt.Arch = None,
    arch_kwargs: opt.ArchKwargs = None,
    num_classes: opt.NumClasses = None,
    pretrained: opt.Pretrained = False,
    trust_pickle: opt.TrustPickle = False,
    input_size: opt.InputSize = None,
    device: opt.Device = "auto",
    data: opt.Data = "synthetic",
    data_root: opt.DataRoot = None,
    split: EvalSplit = "test",
    download: opt.Download = False,
    batch_size: opt.BatchSize = 64,
    mean: opt.Mean = None,
    std: opt.Std = None,
    workers: opt.Workers = 0,
    eval_: Eval = False,
    eval_batches: EvalBatches = None,
    latency: Latency = False,
    latency_batch: LatencyBatch = None,
    latency_runtime: LatencyRuntimeOpt = "torch",
    repeats: Repeats = 20,
    warmup: Warmup = 3,
    fmt: FormatOpt = None,
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    plot: Plot = None,
    force: PlotForce = False,
    debug: opt.Debug = False,
) -> None:
    """Compare models side by side (the first is the baseline): params, MACs, file size,
    accuracy and latency, with ratios such as "3.9x fewer MACs, 2.7x faster"."""
    out = Output(json_mode=json_, quiet=quiet, format=fmt)
    if len(models) < 2:
        raise UsageError(
            "compare needs at least two models, e.g. snipit compare timm:resnet18 slim.safetensors"
        )
    request = partial(
        _request,
        arch=arch,
        arch_kwargs=arch_kwargs,
        num_classes=num_classes,
        pretrained=pretrained,
        trust_pickle=trust_pickle,
        input_size=input_size,
        device=device,
        data=data,
        data_root=data_root,
        split=split,
        download=download,
        batch_size=batch_size,
        mean=mean,
        std=std,
        workers=workers,
        eval_=eval_,
        eval_batches=eval_batches,
        latency=latency,
        latency_batch=latency_batch,
        latency_runtime=latency_runtime,
        repeats=repeats,
        warmup=warmup,
    )
    requests = [request(m) for m in models]
    _check_plot(plot, force, models)
    from snipit_cli.workflows.describe import compare

    doc = compare(requests)
    if plot:
        plot_compare(doc, plot)
    out.notes(doc)
    out.tables(doc, compare_tables(doc))
