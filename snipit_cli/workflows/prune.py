"""``snipit prune`` as a library call: spec -> model + data -> scores -> masks -> checkpoint + report,
then, with ``--finetune-epochs``, training the pruned model and writing that instead.

Longer than 300 lines until its document builders (``checkpoint_document``, ``prune_report``,
``_calibration_doc``, the notes: about 110 lines) move to ``workflows/documents.py``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import snipit_cli
from snipit_cli.criteria import Criterion, UnitCriterion
from snipit_cli.data.build import DataOptions, calibration_data
from snipit_cli.data.calibration import CalibrationData
from snipit_cli.errors import UsageError
from snipit_cli.fileio import write_all_atomic
from snipit_cli.metrics.sparsity import layer_rows, param_totals
from snipit_cli.models.arch import ArchSpec
from snipit_cli.models.checkpoint import Storage, checkpoint_writer
from snipit_cli.models.loading import LoadedModel
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
from snipit_cli.training.fit import fit, start
from snipit_cli.training.loop import EpochProgress
from snipit_cli.training.optim import OptimizerOptions
from snipit_cli.workflows.session import (
    RUN_ONLY_KEYS,
    ModelOptions,
    Session,
    checkpoint_output,
    claim_outputs,
    load,
    model_document,
    open_session,
    pruning_criterion,
    resolve_device,
    resolve_storage,
)
from snipit_cli.workflows.session.training_data import TrainingDataOptions, require_dataset, training_sets
from snipit_cli.workflows.session.training_output import (
    trained_document,
    training_block,
    training_outputs,
    write_trained,
)

__all__ = ["RUN_ONLY_KEYS", "Finetune", "ModelOptions", "PruneOutcome", "PruneRequest", "run_prune"]


@dataclass(frozen=True)
class Finetune:
    """``--finetune-epochs``: then train the pruned model on the calibration split, masks held."""

    epochs: int
    lr: float | None = None  # default: SGD's (see OptimizerOptions)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--finetune-epochs must be at least 1 to fine-tune, got {self.epochs}")
        self.optimizer  # noqa: B018  (refuses a bad --finetune-lr before any pruning)

    @property
    def optimizer(self) -> OptimizerOptions:
        return OptimizerOptions(lr=self.lr)


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
    finetune: Finetune | None = None


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


def run_prune(
    request: PruneRequest,
    progress: Progress | None = None,
    finetune_progress: EpochProgress | None = None,
) -> PruneOutcome:
    """Prune, write the checkpoint and the report; return the model and the report.

    Under ``torchrun`` every rank runs this: each scores its shard of the calibration batches,
    the ranks sum their gradients at every step and apply the same masks, and rank 0 alone
    writes the files (every rank returns the same report). The ranks agree after each phase, so
    a failure on one rank (a file missing on one node, a corrupt image in one shard) stops all.
    With ``request.finetune`` (one process only) the pruned model is then trained and replaces
    the checkpoint; if training fails, the pruned checkpoint and report stay.
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
        model = setup.session.model.to("cpu")
        pruned.samples_per_rank = sync.gather_int(pruned.samples_read)
        pruned.backend = getattr(sync, "backend", None)

        document = checkpoint_document(setup, pruned, request)
        storage = resolve_storage(request.storage, model, structured=request.structured is not None)
        report = prune_report(
            request, setup, pruned, document, device=device, storage=storage, started=started
        )
        text = json.dumps(report, indent=2) + "\n"
        writers = {
            setup.output: checkpoint_writer(model, {**document, **pruned.checkpoint_extra}, storage),
            setup.report_path: lambda tmp: tmp.write_text(text, encoding="utf-8"),
        }
        # Only rank 0 writes; the others wait to hear that it did (or why it could not).
        scored_together(sync, write_all_atomic if sync.rank == 0 else lambda _: None, writers)
    if request.finetune is not None:
        report = _finetune(request, report, model, device, finetune_progress)
    return PruneOutcome(model, report)


def prune_report(
    request: PruneRequest,
    setup: Setup,
    pruned: Pruned,
    document: dict[str, Any],
    *,
    device: torch.device,
    storage: Storage,
    started: float,
) -> dict[str, Any]:
    """The report: the checkpoint's document plus what describes the run (see RUN_ONLY_KEYS)."""
    model = setup.session.model
    rows = layer_rows(model, request.exclude, dense=pruned.dense)
    return {
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


@dataclass
class Setup:
    """The session, data and criterion a run prunes with, checked before any scoring."""

    criterion: Criterion | UnitCriterion
    schedule: list[float]
    session: Session
    data: CalibrationData
    output: Path
    report_path: Path


def _prepare(request: PruneRequest, device: torch.device, launch: Launch) -> Setup:
    """Resolve method, model, outputs and data; every check that needs no scoring happens here."""
    criterion = pruning_criterion(request.method, request.structured is not None)
    schedule = schedule_for(criterion, request.sparsity, request.steps)
    torch.manual_seed(request.seed)  # model initialisation is part of what --seed fixes
    loaded = load(request.model)
    check_exclude(loaded.model, request.exclude)
    output, report_path = output_paths(request, loaded)
    # Data-free criteria never open the dataset (it need not even exist).
    data = request.data if criterion.needs_data else None
    session = open_session(loaded, device=device, data=data, input_size=request.model.input_size)
    calibration = calibration_data(
        options=request.data,
        dataset=session.dataset,
        model_input=session.input_spec,
        num_classes=session.num_classes,
        device=device,
        rank=launch.rank,
        world_size=launch.world_size,
    )
    _check_enough_batches(calibration, criterion, launch.world_size)
    return Setup(criterion, schedule, session, calibration, output, report_path)


def output_paths(request: PruneRequest, loaded: LoadedModel) -> tuple[Path, Path]:
    """Checkpoint and report paths, checked before any work is done."""
    output = checkpoint_output(request.output, loaded, "pruned")
    report = request.report or output.with_name(f"{output.stem}.report.json")
    if report.resolve() == output.resolve():
        raise UsageError("--report and -o/--output must be different files")
    claim_outputs((output, report), force=request.force, inputs=(loaded.path,))
    return output, report


def _check_enough_batches(data: CalibrationData, criterion, world_size: int) -> None:
    """Every rank needs at least one batch of each step, or it would sit idle in every all-reduce."""
    if criterion.needs_data and data.n_batches < world_size:
        raise UsageError(
            f"{data.n_batches} calibration batches cannot be shared by {world_size} processes; "
            f"pass --batches {world_size} or more (or launch fewer processes)"
        )


def _prune_weights(request: PruneRequest, setup: Setup, progress, sync) -> Pruned:
    """SNIP-it and friends: zero weights in place."""
    loaded, model, data = setup.session.loaded, setup.session.model, setup.data
    weights = prunable_weights(model, request.exclude)
    _check_not_sparser_already(weights, request.sparsity, loaded.source)
    density = None if request.allow_collapse else MIN_LAYER_DENSITY
    result = prune(
        model=model,
        weights=weights,
        criterion=setup.criterion,
        batches_for_step=data.batches,
        schedule=setup.schedule,
        n_batches=data.local_batches,
        seed=request.seed,
        progress=progress,
        input_size=setup.session.input_spec.size,
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
    model, size, options = setup.session.model, setup.session.input_spec.size, request.structured
    outcome = slim_model(
        model=model,
        arch=setup.session.loaded.arch,
        criterion=setup.criterion,
        data=setup.data,
        schedule=setup.schedule,
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
    session, criterion, data = setup.session, setup.criterion, setup.data
    return {
        "snipit_version": snipit_cli.__version__,
        "model": model_document(
            session.loaded, session.input_spec, session.num_classes, request.model.pretrained
        ),
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


def _finetune(
    request: PruneRequest,
    report: dict[str, Any],
    model: nn.Module,
    device: torch.device,
    progress: EpochProgress | None,
) -> dict[str, Any]:
    """Train the model just pruned, in memory, on the calibration split (evaluated on the test
    split when that is other images, else unevaluated with a note), and replace its checkpoint
    with the fine-tuned one and its training state; the report gains the ``finetune`` block."""
    assert request.finetune is not None
    torch.manual_seed(request.seed)
    metadata = {k: v for k, v in report.items() if k not in RUN_ONLY_KEYS}
    arch = report["model"].get("arch")
    loaded = LoadedModel(
        model, report["model"]["source"], ArchSpec.from_json(arch) if arch else None, metadata
    )
    output, _ = training_outputs(Path(report["output"]), loaded, force=True)
    require_dataset(request.data)
    session = open_session(loaded, device=device, data=request.data, input_size=request.model.input_size)
    test_split = "test" if request.data.split == "train" else None
    sets = training_sets(TrainingDataOptions(request.data, test_split, lenient_test=True), session)
    optimizer, epochs = request.finetune.optimizer, request.finetune.epochs
    weights = prunable_weights(session.model, request.exclude)
    state = start(session.model, weights=weights, masks=current_masks(weights), options=optimizer)
    state = fit(state, train=sets.train, test=sets.test, options=optimizer, epochs=epochs, progress=progress)
    block = training_block(
        state,
        epochs=epochs,
        optimizer=optimizer,
        data=sets.record,
        seed=request.seed,
        exclude=request.exclude,
        pruning=None,
    )
    slim = metadata.get("slim")
    pretrained = request.model.pretrained
    document = trained_document(
        metadata, session, pretrained=pretrained, state=state, slim=slim, training=block
    )
    write_trained(output, state, document, request.storage)
    model.to("cpu").eval()
    finetuned = block | {"params": param_totals(model, layer_rows(model, request.exclude))}
    return {**report, "notes": report["notes"] + sets.notes, "finetune": finetuned}
