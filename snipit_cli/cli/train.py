"""``snipit train``: turn flags into a :class:`TrainRequest`, run it, print the result."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from snipit_cli.cli import options as opt
from snipit_cli.cli.output import Output
from snipit_cli.cli.parsing import data_options, model_options, structured_options
from snipit_cli.data.specs import parse_data_spec
from snipit_cli.errors import UsageError
from snipit_cli.launch import launched
from snipit_cli.training.options import OptimizerOptions

if TYPE_CHECKING:  # the workflow comes with torch, imported when the command runs (start-up)
    from snipit_cli.workflows.train import PruneWhileTraining

_T = {"rich_help_panel": "Training"}
_P = {"rich_help_panel": "Pruning while training"}
_D = {"rich_help_panel": "Data"}

EXAMPLES = """
Examples:

  snipit train pruned.safetensors --data cifar10 --epochs 30 -o finetuned.safetensors

  snipit train snipit:lenet5-caffe --data mnist --data-root ../shared/data/mnist --split test --holdout 0.2 \\
      --epochs 20 --method snip-it --sparsity 0.98 --prune-delay 2 --prune-freq 2

  snipit train snipit:small-cnn --arch-kwargs '{"in_chans": 3}' --input-size 3,32,32 \\
      --data imagefolder:../shared/data/cifar10-train-jpg/train \\
      --test-data imagefolder:../shared/data/cifar10-test-jpg/test --epochs 5 -o cifar-cnn.safetensors

  snipit train finetuned.safetensors --resume --epochs 40 -o finetuned-40.safetensors
"""

#: Parameters --resume takes from the checkpoint when they are not given (see TrainRequest.given).
RESUMABLE = (
    "data", "split", "data_root", "batch_size", "holdout", "test_split", "test_data", "seed", "optimizer",
    "lr", "momentum", "weight_decay", "lr_schedule", "exclude",
)  # fmt: skip
PRUNE_PARAMS = (
    "method", "sparsity", "prune_delay", "prune_freq", "steps", "structured", "target", "min_keep",
    "round_to", "batches", "allow_collapse",
)  # fmt: skip


def train(
    ctx: typer.Context,
    model: opt.Model,
    epochs: Annotated[int, typer.Option(help="Epochs to train (the total, with --resume).", **_T)] = 10,
    optimizer: Annotated[opt.Optimizer, typer.Option(help="Optimizer.", **_T)] = opt.Optimizer.sgd,
    lr: Annotated[
        float | None,
        typer.Option(help="Peak learning rate \\[default: 0.05 sgd, 0.001 adamw].", **_T),
    ] = None,
    momentum: Annotated[float, typer.Option(help="SGD momentum.", **_T)] = 0.9,
    weight_decay: Annotated[
        float,
        typer.Option(help="Weight decay (weights only, not norms or biases).", **_T),
    ] = 5e-4,
    lr_schedule: Annotated[
        opt.LrSchedule, typer.Option(help="Learning-rate schedule over all steps.", **_T)
    ] = opt.LrSchedule.cosine,
    batch_size: Annotated[int, typer.Option(help="Training batch size.", **_T)] = 128,
    test_split: Annotated[
        opt.TestSplit,
        typer.Option(
            help="Split evaluated after every epoch, of --test-data if given, else of --data (none: no "
            "evaluation); never the images trained on.",
            **_T,
        ),
    ] = opt.TestSplit.test,
    test_data: Annotated[
        str | None,
        typer.Option(
            help="Evaluate on this dataset or folder (same forms as --data) instead of --data.",
            show_default=False,
            **_T,
        ),
    ] = None,
    holdout: Annotated[
        float | None,
        typer.Option(
            help="Evaluate on this seeded fraction of --split instead of --test-split, trained on the rest.",
            **_T,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue MODEL, a snipit train checkpoint, from its last epoch.", **_T),
    ] = False,
    checkpoint_every: Annotated[
        int,
        typer.Option(
            help="Also write the checkpoint every N epochs, for --resume (0: only at the end).",
            **_T,
        ),
    ] = 0,
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            "--prune-method",
            help="Prune while training with this method (see `snipit methods`).",
            **_P,
        ),
    ] = None,
    sparsity: Annotated[float, typer.Option(help="With --method: the final sparsity.", **_P)] = 0.9,
    prune_delay: Annotated[int, typer.Option(help="Epochs trained before the first pruning step.", **_P)] = 0,
    prune_freq: Annotated[
        int,
        typer.Option(
            help="Epochs between pruning steps (0: all steps at --prune-delay; 0 and 0 = prune at init).",
            **_P,
        ),
    ] = 1,
    steps: Annotated[
        int | None,
        typer.Option(help="Schedule length S (the method's default if unset).", **_P),
    ] = None,
    structured: Annotated[
        bool,
        typer.Option(help="Prune whole channels/neurons (SNAP-it), shrinking the model.", **_P),
    ] = False,
    target: Annotated[
        opt.Target | None,
        typer.Option(help="With --structured: what --sparsity counts.", **_P),
    ] = None,
    min_keep: Annotated[
        float | None,
        typer.Option(help="With --structured: share of each group kept.", **_P),
    ] = None,
    round_to: Annotated[
        str | None,
        typer.Option(
            metavar="<N|auto>",
            help="With --structured: every channel group keeps a multiple of N channels (auto: the "
            "device's).",
            **_P,
        ),
    ] = None,
    allow_collapse: Annotated[
        bool, typer.Option(help="Let the ranking empty whole layers (unstructured).", **_P)
    ] = False,
    batches: Annotated[
        int,
        typer.Option(
            "--batches", "--prune-batches", help="Training batches scored at each pruning step.", **_P
        ),
    ] = 5,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="Layers never pruned (fnmatch); repeatable.", **_P),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Checkpoint to write, or a folder (DIR/) to write a hub-style folder into "
            "\\[default: <model>-trained.safetensors].",
        ),
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
    data: Annotated[
        str | None,
        typer.Option(
            help="Dataset to train on: cifar10, cifar100, mnist, fashionmnist, imagefolder:PATH or a "
            "folder (required; --resume reuses the recorded one).",
            show_default=False,
            rich_help_panel="Data",
        ),
    ] = None,
    data_root: opt.DataRoot = None,
    split: Annotated[
        opt.Split, typer.Option(help="Split to train on (an image folder's train/ sub-folder, if any).", **_D)
    ] = opt.Split.train,
    download: opt.Download = False,
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
    """Train or fine-tune MODEL (dense, pruned or slim; pruned weights stay zero), optionally pruning it
    while it trains, and write a safetensors checkpoint."""
    from snipit_cli.workflows.train import TrainRequest, run_train

    out = Output(json_mode=json_, quiet=quiet)
    if launched().distributed:
        raise UsageError(
            "snipit train runs in one process (data-parallel training is not supported); launch it "
            "without torchrun — only `snipit prune` scores data-parallel"
        )
    if data is None and not resume:
        raise UsageError(
            "snipit train needs a dataset: pass --data cifar10|cifar100|mnist|fashionmnist|imagefolder:PATH"
        )
    output_path, output_format = opt.output_target(output, format.value if format else None)
    request = TrainRequest(
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
            data=data or "synthetic",  # with --resume, replaced by the recorded data
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
        epochs=epochs,
        optimizer=OptimizerOptions(str(optimizer), lr, momentum, weight_decay, str(lr_schedule)),
        test_split=None if test_split == "none" else str(test_split),
        holdout=holdout,
        test_data=parse_data_spec(test_data) if test_data else None,
        prune=_prune_options(
            method=method,
            sparsity=sparsity,
            delay=prune_delay,
            freq=prune_freq,
            steps=steps,
            structured=structured,
            target=target,
            min_keep=min_keep,
            round_to=round_to,
            batches=batches,
            allow_collapse=allow_collapse,
        ),
        exclude=list(exclude or []),
        seed=seed,
        device=device,
        output=output_path,
        format=output_format,
        command=opt.command_line(),
        force=force,
        resume=resume,
        checkpoint_every=checkpoint_every,
        storage=storage.value,
        given=_given(ctx),
    )
    with out.training_progress() as progress:
        result = run_train(request, progress).report
    out.notes(result)
    last = result["training"]["history"][-1]
    test = f", test top-1 {last['test_top1']:.4f}" if last["test_top1"] is not None else ""
    written = f"{result['folder']}/" if result["folder"] else result["file"]["path"]
    out.result(result, f"wrote {written} after {last['epoch']} epochs{test}")


def _given(ctx: typer.Context) -> frozenset[str]:
    """The resumable options set on the command line or in --config (not left at their default)."""

    def set_(name: str) -> bool:
        source = ctx.get_parameter_source(name)  # by name: Typer vendors its own click
        return source is not None and source.name != "DEFAULT"

    given = {name for name in RESUMABLE if set_(name)}
    return frozenset(given | ({"prune"} if any(set_(p) for p in PRUNE_PARAMS) else set()))


def _prune_options(
    *, method, structured, target, min_keep, round_to, **schedule
) -> PruneWhileTraining | None:
    """Pruning while training: --method with its schedule and --structured options, or None; those
    options without --method are refused."""
    if method is None:
        if structured or target is not None or min_keep is not None or round_to is not None:
            raise UsageError(
                "--structured, --target, --min-keep and --round-to prune while training: add --method"
            )
        return None
    if target is not None and str(target) == "latency":
        raise UsageError(
            "--target latency is for snipit prune (it times trial models, which training between "
            "epochs would not leave alone); prune while training with --target macs"
        )
    from snipit_cli.workflows.train import PruneWhileTraining

    return PruneWhileTraining(
        method=method, structured=structured_options(structured, target, min_keep, round_to), **schedule
    )
