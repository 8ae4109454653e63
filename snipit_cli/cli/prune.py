"""``snipit prune``: turn flags into a :class:`PruneRequest`, run it, print the result."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from snipit_cli.cli import options as opt
from snipit_cli.cli.output import Output
from snipit_cli.cli.parsing import data_options, model_options, structured_options
from snipit_cli.errors import UsageError
from snipit_cli.launch import launched

EXAMPLES = """
Examples:

  snipit prune timm:resnet18 --input-size 3,32,32 --sparsity 0.9

  snipit prune model.pt --arch mynet.py:Net --data cifar10 --data-root ~/data --sparsity 0.95

  snipit prune torchvision:mobilenet_v3_small --method snip --json | jq .sparsity
"""


def prune(
    model: opt.Model,
    sparsity: Annotated[float, typer.Option(help="Fraction of prunable weights to remove, in (0, 1).")] = 0.9,
    method: Annotated[
        str | None,
        typer.Option(
            help="Scoring criterion; see `snipit methods` \\[default: snip-it, snap-it with --structured]."
        ),
    ] = None,
    structured: Annotated[
        bool,
        typer.Option(
            help="Remove whole channels/neurons/heads (SNAP-it) so the saved model is smaller and faster."
        ),
    ] = False,
    allow_collapse: Annotated[
        bool,
        typer.Option(
            help="Let the global ranking empty whole layers; by default each keeps 0.1% (at least 1 weight)."
        ),
    ] = False,
    target: Annotated[
        opt.Target | None,
        typer.Option(
            help="With --structured: --sparsity counts nodes, params or MACs removed, or the measured "
            "forward latency cut \\[default: nodes]."
        ),
    ] = None,
    min_keep: Annotated[
        float | None,
        typer.Option(
            help="With --structured: share of each group's units always kept, at least 1 \\[default: 0.05]."
        ),
    ] = None,
    round_to: Annotated[
        str | None,
        typer.Option(
            metavar="<N|auto>",
            help="With --structured: every channel group keeps a multiple of N channels (faster slim "
            "models, slightly fewer removed); auto: the multiple the device's kernels compute in (16 on "
            "AVX-512 CPUs, 8 on AVX2 and CUDA) \\[default: 1].",
        ),
    ] = None,
    latency_batch: Annotated[
        int | None,
        typer.Option(
            help="With --target latency: the batch size the slim model's latency is measured at, on "
            "the run's device and threads \\[default: 1]."
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(
            help="Schedule length: SNIP-it's S (the run scores S+2 times) \\[default: 5]; "
            "SynFlow's iterations \\[default: 100]."
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="Keep layers dense whose module name matches (fnmatch); repeatable."),
    ] = None,
    recalibrate_bn: Annotated[
        bool | None,
        typer.Option(
            "--recalibrate-bn/--no-recalibrate-bn",
            help="After the last step, re-estimate BatchNorm running statistics on calibration batches "
            "(pruning shifts them) \\[default: on with real --data, off with synthetic].",
        ),
    ] = None,
    recalibrate_batches: Annotated[
        int | None,
        typer.Option(
            help="Batches of --batch-size the BatchNorm recalibration reads \\[default: --batches]."
        ),
    ] = None,
    finetune_epochs: Annotated[
        int,
        typer.Option(
            help="Then train the pruned model this many epochs on --data (masks kept; evaluated on the "
            "test split when calibrating on train) and write that instead; 0: no fine-tuning."
        ),
    ] = 0,
    finetune_lr: Annotated[
        float | None, typer.Option(help="Fine-tuning learning rate (SGD, cosine) \\[default: 0.05].")
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Checkpoint to write, or a folder (DIR/) to write a hub-style folder into "
            "\\[default: <model>-pruned.safetensors].",
        ),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Report JSON to write \\[default: <output stem>.report.json; DIR/report.json]."),
    ] = None,
    format: opt.Format = None,
    storage: opt.Storage = opt.DEFAULT_STORAGE,
    arch: opt.Arch = None,
    arch_kwargs: opt.ArchKwargs = None,
    num_classes: opt.NumClasses = None,
    pretrained: opt.Pretrained = False,
    trust_pickle: opt.TrustPickle = False,
    input_size: opt.InputSize = None,
    device: opt.Device = "auto",
    data: opt.Data = "synthetic",
    data_root: opt.DataRoot = None,
    split: Annotated[
        opt.Split, typer.Option(help="Dataset split to calibrate on.", rich_help_panel="Data")
    ] = opt.Split.train,
    download: opt.Download = False,
    batch_size: opt.BatchSize = 64,
    batches: opt.Batches = 5,
    mean: opt.Mean = None,
    std: opt.Std = None,
    workers: opt.Workers = 0,
    seed: opt.Seed = 0,
    force: opt.Force = False,
    json_: opt.Json = False,
    quiet: opt.Quiet = False,
    config: opt.Config = None,
    debug: opt.Debug = False,
) -> None:
    """Prune MODEL with SNIP-it (or another --method) and write a safetensors checkpoint + report."""
    from snipit_cli.workflows.prune import Finetune, PruneRequest, run_prune

    out = Output(json_mode=json_, quiet=quiet, silent=launched().rank != 0)
    output_path, output_format = opt.output_target(output, format.value if format else None)
    request = PruneRequest(
        model=model_options(
            spec=model,
            arch=arch,
            arch_kwargs=arch_kwargs,
            num_classes=num_classes,
            pretrained=pretrained,
            trust_pickle=trust_pickle,
            input_size=input_size,
        ),
        data=data_options(
            data=data,
            data_root=data_root,
            split=str(split),
            download=download,
            batch_size=batch_size,
            batches=batches,
            seed=seed,
            mean=mean,
            std=std,
            workers=workers,
        ),
        method=method,
        sparsity=sparsity,
        steps=steps,
        exclude=list(exclude or []),
        seed=seed,
        device=device,
        output=output_path,
        format=output_format,
        command=opt.command_line(),
        report=report,
        force=force,
        structured=structured_options(structured, target, min_keep, round_to, latency_batch),
        allow_collapse=allow_collapse,
        recalibrate_bn=recalibrate_bn,
        recalibrate_batches=recalibrate_batches,
        storage=storage.value,
    )
    if finetune_epochs < 0:
        raise UsageError(f"--finetune-epochs must be 0 or more, got {finetune_epochs}")
    if finetune_epochs and launched().distributed:
        raise UsageError(
            "--finetune-epochs runs in one process; under torchrun prune only, then run "
            "`snipit train` without torchrun"
        )
    if finetune_epochs:
        # fine-tuning on the calibration split; evaluated on the test split when that is other
        # images (else unevaluated, with a note: a folder without split sub-folders, a missing split)
        request = replace(request, finetune=Finetune(epochs=finetune_epochs, lr=finetune_lr))
    with out.pruning_progress() as progress, out.training_progress() as epochs:
        result = run_prune(request, progress, epochs).report
    out.notes(result)
    out.table(summary_table(result))
    sparsity = result["sparsity"]
    removed = f"{sparsity['achieved']:.4f} of {sparsity['of']} removed"
    recalibrated = result["pruning"].get("recalibration")
    if recalibrated:
        removed += f"; BatchNorm statistics re-estimated on {recalibrated['samples']:,} samples"
    if result["folder"]:
        inside = Path(result["report_file"]).parent == Path(result["folder"])
        files = "config.json, model.safetensors, README.md" + (", report.json" if inside else "")
        report_file = "" if inside else f" and {result['report_file']}"
        out.result(result, f"wrote {result['folder']}/ ({files}; {removed}){report_file}")
        return
    out.result(result, f"wrote {result['file']['path']} ({removed}) and {result['report_file']}")


def summary_table(report: dict[str, Any]) -> Table:
    """Per-layer sparsity (or dense -> slim shapes) and totals for the terminal."""
    title = f"{report['pruning']['method']} on {report['model']['source']}"
    table = Table(title=title, title_justify="left")
    for column in ("layer", "type", "shape", "params", "nonzero", "sparsity"):
        table.add_column(column, justify="right" if column in {"params", "nonzero", "sparsity"} else "left")
    for row in report["layers"]:
        sparsity = f"{row['sparsity']:.4f}" if row["prunable"] else "excluded"
        shape = "x".join(map(str, row["shape"]))
        if "dense_shape" in row and row["dense_shape"] != row["shape"]:
            shape = f"{'x'.join(map(str, row['dense_shape']))} -> {shape}"
        table.add_row(row["name"], row["type"], shape, f"{row['params']:,}", f"{row['nonzero']:,}", sparsity)
    params, sparsity = report["params"], report["sparsity"]
    table.add_section()
    kept = f"{params['prunable_nonzero']:,}"
    removed = f"{sparsity['achieved']:.4f} of {sparsity['of']}"
    table.add_row("prunable total", "", "", f"{params['prunable']:,}", kept, removed)
    table.add_row("all parameters", "", "", f"{params['total']:,}", f"{params['nonzero']:,}", "")
    nodes, macs = report["nodes"], report["macs"]
    if nodes:
        node_sparsity = f"{sparsity['nodes']:.4f}"
        table.add_row("nodes", "", "", f"{nodes['dense']:,}", f"{nodes['remaining']:,}", node_sparsity)
    table.add_row("MACs", "", "", f"{macs['dense']:,}", f"{macs['remaining']:,}", f"{macs['removed']:.4f}")
    return table
