"""``snipit prune`` as a library call: spec -> model + data -> scores -> masks -> checkpoint + report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import snipit_cli
from snipit_cli.criteria import Criterion, UnitCriterion, create_criterion
from snipit_cli.data.build import (
    DataOptions,
    applied_input_spec,
    calibration_data,
    dataset_input_spec,
    open_dataset,
)
from snipit_cli.data.calibration import CalibrationData
from snipit_cli.errors import ModelError, UsageError
from snipit_cli.fileio import check_writable, write_all_atomic
from snipit_cli.metrics.sparsity import layer_rows, param_totals
from snipit_cli.models.checkpoint import Storage, checkpoint_writer
from snipit_cli.models.input_spec import InputSpec, Size, library_input_spec, probe_num_classes
from snipit_cli.models.loading import LoadedModel, resolve_model
from snipit_cli.parallel import Launch, launched, process_group, rank_device
from snipit_cli.pruning.engine import (
    MIN_LAYER_DENSITY,
    Progress,
    PruneResult,
    current_masks,
    prune,
)
from snipit_cli.pruning.masks import count_kept
from snipit_cli.pruning.schedule import schedule_for
from snipit_cli.pruning.structured.figures import limit_notes, slim_report
from snipit_cli.pruning.structured.options import StructuredOptions
from snipit_cli.pruning.structured.slim import slim_model
from snipit_cli.pruning.targets import check_exclude, prunable_weights
from snipit_cli.sync import scored_together

#: Report keys that describe the run rather than the checkpoint; the metadata omits them.
RUN_ONLY_KEYS = ("params", "layers", "output", "report", "device", "notes", "seconds", "storage")


@dataclass
class ModelOptions:
    """How to find the model: the MODEL argument and the options that qualify it."""

    spec: str
    arch: str | None = None
    arch_kwargs: dict[str, Any] | None = None
    num_classes: int | None = None
    pretrained: bool = False
    trust_pickle: bool = False
    input_size: Size | None = None


@dataclass
class PruneRequest:
    """Everything ``snipit prune`` needs, already parsed and typed."""

    model: ModelOptions
    data: DataOptions
    method: str | None = None  # default: snip-it, or snap-it with structured
    sparsity: float = 0.9
    steps: int | None = None  # default: the criterion's own (5 for snip-it)
    exclude: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    output: Path | None = None
    report: Path | None = None
    force: bool = False
    structured: StructuredOptions | None = None
    allow_collapse: bool = False  # unstructured: let the ranking empty whole layers
    storage: Storage | None = None  # default: see resolve_storage


DEFAULT_METHOD = {"weights": "snip-it", "units": "snap-it"}


@dataclass
class PruneOutcome:
    """The pruned model (on the CPU, as saved) and the report document."""

    model: nn.Module
    report: dict[str, Any]


@dataclass
class Pruned:
    """What either pruning mode hands to the checkpoint and the report."""

    schedule: list[float]
    achieved: float
    checkpoint_extra: dict[str, Any] = field(default_factory=dict)
    report_extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    dense: nn.Module | None = None  # the dense original, when the model's shapes changed
    samples_read: int = 0  # calibration samples this process read
    samples_per_rank: list[int] = field(default_factory=list)  # the same, of every rank
    backend: str | None = None  # torch.distributed backend under torchrun


def run_prune(request: PruneRequest, progress: Progress | None = None) -> PruneOutcome:
    """Prune, write the checkpoint and the report; return the model and the report.

    Under ``torchrun`` every rank runs this: each scores its shard of the calibration batches,
    the ranks sum their gradients at every step and apply the same masks, and rank 0 alone
    writes the files (every rank returns the same report). The ranks agree after each phase, so
    a failure on one rank (a file missing on one node, a corrupt image in one shard) stops all.
    """
    started = time.perf_counter()
    launch = launched()
    device = rank_device(resolve_device(request.device), launch)
    with process_group(device, launch) as sync:
        setup = scored_together(sync, _prepare, request, device, launch)
        if request.structured:
            pruned = _prune_units(request, setup, progress, sync)
        else:
            pruned = _prune_weights(request, setup, progress, sync)
        model = setup.model.to("cpu")
        pruned.samples_per_rank = sync.gather_int(pruned.samples_read)
        pruned.backend = getattr(sync, "backend", None)

        document = checkpoint_document(setup, pruned, request)
        rows = layer_rows(model, request.exclude, dense=pruned.dense)
        storage = resolve_storage(request.storage, model, structured=request.structured is not None)
        report = {
            **document,
            **pruned.report_extra,
            "params": param_totals(model, rows, dense=pruned.dense),
            "layers": rows,
            "output": str(setup.output),
            "report": str(setup.report_path),
            "device": str(device),
            "storage": storage,
            "notes": setup.data.notes + pruned.notes,
            "seconds": round(time.perf_counter() - started, 3),
        }
        text = json.dumps(report, indent=2) + "\n"
        writers = {
            setup.output: checkpoint_writer(model, {**document, **pruned.checkpoint_extra}, storage),
            setup.report_path: lambda tmp: tmp.write_text(text, encoding="utf-8"),
        }
        # Only rank 0 writes; the others wait to hear that it did (or why it could not).
        scored_together(sync, write_all_atomic if sync.rank == 0 else lambda _: None, writers)
    return PruneOutcome(model, report)


@dataclass
class Setup:
    """The model, data and criterion a run prunes with, checked before any scoring."""

    criterion: Criterion | UnitCriterion
    schedule: list[float]
    loaded: LoadedModel
    model: nn.Module
    model_input: InputSpec
    num_classes: int
    data: CalibrationData
    output: Path
    report_path: Path


def _prepare(request: PruneRequest, device: torch.device, launch: Launch) -> Setup:
    """Resolve method, model, outputs and data; every check that needs no scoring happens here."""
    level = "units" if request.structured else "weights"
    criterion = create_criterion(request.method or DEFAULT_METHOD[level], level)
    schedule = schedule_for(criterion, request.sparsity, request.steps)
    torch.manual_seed(request.seed)  # model initialisation is part of what --seed fixes
    loaded = load(request.model)
    check_exclude(loaded.model, request.exclude)
    output, report_path = output_paths(request, loaded)
    # Data-free criteria never open the dataset (it need not even exist).
    dataset = open_dataset(request.data) if criterion.needs_data else None
    model_input = resolve_input_spec(request.model.input_size, loaded, dataset_input_spec(dataset))
    model = loaded.model.to(device)
    num_classes = probe_num_classes(model, model_input.size, device)
    if dataset is not None:  # record the normalisation the data really gets (--mean/--std included)
        model_input = applied_input_spec(request.data, dataset, model_input)
    data = calibration_data(
        request.data, dataset, model_input, num_classes, device, launch.rank, launch.world_size
    )
    _check_enough_batches(data, criterion, launch.world_size)
    return Setup(criterion, schedule, loaded, model, model_input, num_classes, data, output, report_path)


def _check_enough_batches(data: CalibrationData, criterion, world_size: int) -> None:
    """Every rank needs at least one batch of each step, or it would sit idle in every all-reduce."""
    if criterion.needs_data and data.n_batches < world_size:
        raise UsageError(
            f"{data.n_batches} calibration batches cannot be shared by {world_size} processes; "
            f"pass --batches {world_size} or more (or launch fewer processes)"
        )


def _prune_weights(request: PruneRequest, setup: Setup, progress, sync) -> Pruned:
    """SNIP-it and friends: zero weights in place."""
    loaded, model, criterion, data = setup.loaded, setup.model, setup.criterion, setup.data
    schedule, size = setup.schedule, setup.model_input.size
    weights = prunable_weights(model, request.exclude)
    _check_not_sparser_already(weights, request.sparsity, loaded.source)
    density = None if request.allow_collapse else MIN_LAYER_DENSITY
    result = prune(
        model,
        weights=weights,
        criterion=criterion,
        batches_for_step=data.batches,
        schedule=schedule,
        n_batches=data.local_batches,
        seed=request.seed,
        progress=progress,
        input_size=size,
        min_layer_density=density,
        sync=sync,
    )
    slim = (loaded.metadata or {}).get("slim")  # a slim checkpoint keeps its shapes
    collapse = {"guard": not request.allow_collapse, "min_layer_density": density, "held": result.held_layers}
    return Pruned(
        result.schedule,
        result.achieved_sparsity,
        checkpoint_extra={"collapse": collapse, **({"slim": slim} if slim else {})},
        report_extra={"collapse": collapse},
        notes=_zero_score_notes(result) + collapse_notes(result.held_layers),
        samples_read=result.samples_read,
    )


def _prune_units(request: PruneRequest, setup: Setup, progress, sync) -> Pruned:
    """SNAP-it and friends: remove channels, neurons and heads, then prove the slim model right."""
    loaded, model, criterion, data = setup.loaded, setup.model, setup.criterion, setup.data
    schedule, size = setup.schedule, setup.model_input.size
    options = request.structured
    outcome = slim_model(
        model,
        arch=loaded.arch,
        criterion=criterion,
        data=data,
        schedule=schedule,
        size=size,
        options=options,
        exclude=request.exclude,
        seed=request.seed,
        progress=progress,
        sync=sync,
    )
    figures = slim_report(outcome, model, size)
    achieved = figures["removed"][options.target]
    short = achieved < request.sparsity - 0.01
    return Pruned(
        outcome.result.schedule,
        achieved,
        checkpoint_extra={"slim": outcome.record, "nodes": figures["nodes"]},
        report_extra={k: figures[k] for k in ("nodes", "macs", "equivalence", "limits")},
        notes=[f"reached {achieved:.4f} of {options.target}, short of {request.sparsity}: see limits"] * short
        + limit_notes(figures["limits"]),
        dense=outcome.dense,
        samples_read=outcome.result.samples_read,
    )


def checkpoint_document(setup: Setup, pruned: Pruned, request: PruneRequest) -> dict[str, Any]:
    """The JSON stored in the checkpoint's metadata: how to rebuild the model and what was done."""
    loaded, model_input, num_classes = setup.loaded, setup.model_input, setup.num_classes
    criterion, data = setup.criterion, setup.data
    return {
        "snipit_version": snipit_cli.__version__,
        "model": model_document(loaded, model_input, num_classes, request.model.pretrained),
        "method": criterion.name,
        "structured": request.structured is not None,
        "schedule": pruned.schedule,
        "sparsity": {
            "target": request.sparsity,
            "achieved": pruned.achieved,
            "of": request.structured.target if request.structured else "weights",
        },
        **(
            {"min_keep": request.structured.min_keep, "round_to": request.structured.round_to}
            if request.structured
            else {}
        ),
        "exclude": list(request.exclude),
        "seed": request.seed,
        "calibration": {
            **_calibration_doc(data, request.data, criterion.needs_data, len(pruned.schedule)),
            "world_size": data.world_size,
            "backend": pruned.backend,
            "samples_per_rank": pruned.samples_per_rank,
        },
    }


def model_document(loaded: LoadedModel, model_input: InputSpec, num_classes: int, pretrained: bool) -> dict:
    """How to rebuild the model and feed it: the ``model`` block of every checkpoint's metadata."""
    return {
        "source": loaded.source,
        "arch": loaded.arch.to_json() if loaded.arch else None,
        "input_size": list(model_input.size),
        "input_size_from": model_input.source,
        "mean": list(model_input.mean) if model_input.mean else None,
        "std": list(model_input.std) if model_input.std else None,
        "num_classes": num_classes,
        "pretrained": pretrained,
    }


def load(options: ModelOptions) -> LoadedModel:
    """Resolve the model options into a loaded model."""
    return resolve_model(
        options.spec,
        arch=options.arch,
        arch_kwargs=options.arch_kwargs,
        num_classes=options.num_classes,
        pretrained=options.pretrained,
        trust_pickle=options.trust_pickle,
    )


def output_paths(request: PruneRequest, loaded: LoadedModel) -> tuple[Path, Path]:
    """Checkpoint and report paths, checked before any work is done."""
    output = request.output or Path(f"{loaded.name}-pruned.safetensors")
    if output.suffix != ".safetensors":
        raise UsageError(f"-o/--output must end in .safetensors, got {output}")
    report = request.report or output.with_name(f"{output.stem}.report.json")
    inputs = (loaded.path,) if loaded.path else ()
    if report.resolve() == output.resolve():
        raise UsageError("--report and -o/--output must be different files")
    for path in (output, report):
        check_writable(path, request.force, inputs)
    return output, report


def resolve_input_spec(explicit: Size | None, loaded: LoadedModel, from_data: InputSpec | None) -> InputSpec:
    """Input size by precedence: --input-size, checkpoint metadata, model library, dataset (whose
    size is ``()`` when its images disagree); mean/std the model's, else the dataset's — what the
    data transform applies unless --mean/--std say otherwise, so the record shows them."""
    recorded = (loaded.metadata or {}).get("model") or {}
    known = library_input_spec(loaded.model, loaded.arch)
    if recorded.get("input_size"):
        mean, std = recorded.get("mean"), recorded.get("std")
        known = InputSpec(
            tuple(recorded["input_size"]),
            tuple(mean) if mean else None,
            tuple(std) if std else None,
            "checkpoint metadata",
        )
    stats = next((s for s in (known, from_data) if s is not None and s.mean and s.std), None)
    mean, std = (stats.mean, stats.std) if stats else (None, None)
    if explicit is not None:
        return InputSpec(explicit, mean, std, "--input-size")
    if known is not None:
        return InputSpec(known.size, mean, std, known.source)
    if from_data is not None and from_data.size:
        return from_data
    why = f" ({from_data.source})" if from_data is not None else ""
    raise ModelError(
        f"cannot tell what input size this model takes{why}; pass --input-size C,H,W (e.g. 3,32,32)"
    )


#: Exact zeros, as a share of the Conv/Linear weights, from which a model counts as pruned. Random
#: init leaves a few (float32 draws that come out 0.0: 12 of the 103M weights of timm vgg11_bn's
#: pre_logits conv); a pruning run leaves its whole sparsity.
PRUNED_ZEROS = 0.01


def resolve_storage(requested: Storage | None, model: nn.Module, structured: bool | None = None) -> Storage:
    """``--storage``, else what the run did: sparse after unstructured pruning, dense after
    ``--structured`` (a slim model's weights are dense). With the mode unknown (``snipit train``
    of any checkpoint), sparse when the model has pruned weights: PRUNED_ZEROS of them are zero."""
    if requested is not None:
        return requested
    if structured is not None:
        return "dense" if structured else "sparse"
    weights = prunable_weights(model).values()
    zeros = sum(int((w == 0).sum()) for w in weights)
    return "sparse" if zeros >= PRUNED_ZEROS * sum(w.numel() for w in weights) else "dense"


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; anything but ``cpu``, ``cuda`` or an existing ``cuda:N``
    is a usage error (torch would accept ``meta``, ``mps``, ``xla``... and fail later, mid-run).

    On CUDA, cuDNN is put in deterministic mode so the same seed gives the same masks.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index not in (None, 0)):
        raise UsageError(f"--device {name} is not supported; snipit runs on auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(
                f"--device {name} asked for, but this machine has {count} CUDA GPU(s): cuda:0 to "
                f"cuda:{count - 1}"
            )
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return device


def _check_not_sparser_already(weights: dict[str, nn.Parameter], target: float, source: str) -> None:
    masks = current_masks(weights)
    total = sum(m.numel() for m in masks.values())
    already = (total - count_kept(masks)) / total
    if already > target:
        raise UsageError(
            f"{source} is already {already:.4f} sparse (zero weights count as pruned); "
            f"ask for a --sparsity above that"
        )


def collapse_notes(held: list[str]) -> list[str]:
    """The collapse guard's remark: which layers it kept from being emptied."""
    if not held:
        return []
    more = f" and {len(held) - 5} more" if len(held) > 5 else ""
    return [
        f"layers {', '.join(held[:5])}{more} would have been emptied (layer collapse); each keeps "
        f"{MIN_LAYER_DENSITY:.1%} of its weights (at least 1) — --allow-collapse lets the ranking empty them"
    ]


def _zero_score_notes(result: PruneResult) -> list[str]:
    if not result.zero_score_layers:
        return []
    names = ", ".join(result.zero_score_layers[:5])
    more = f" and {len(result.zero_score_layers) - 5} more" if len(result.zero_score_layers) > 5 else ""
    return [
        f"layers {names}{more} scored exactly zero (no gradient reaches them: unused in eval mode, or "
        "behind a zero weight/norm) and were ranked last"
    ]


def _calibration_doc(
    data: CalibrationData, options: DataOptions, needs_data: bool, n_steps: int
) -> dict[str, Any]:
    described = data.describe()
    steps_read = n_steps if needs_data else 0
    return {
        **described,
        "data": described["data"] if needs_data else None,
        "split": options.split if needs_data and options.spec.kind != "synthetic" else None,
        "seed": options.seed,
        "scoring_rounds": steps_read,
        "passes": steps_read * described["batches"],
        "samples_read": steps_read * described["samples"],
    }
