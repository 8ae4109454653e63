"""``snipit prune`` as a library call: spec -> model + data -> scores -> masks -> checkpoint + report,
then, with ``--finetune-epochs``, training the pruned model and writing that instead."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from snipit_cli.data.build import calibration_data
from snipit_cli.data.calibration import CalibrationData
from snipit_cli.errors import UsageError
from snipit_cli.fileio import write_all_atomic
from snipit_cli.launch import Launch, launched
from snipit_cli.models.checkpoint import checkpoint_writer, read_metadata, storage_of
from snipit_cli.models.loading import LoadedModel
from snipit_cli.parallel import process_group, rank_device
from snipit_cli.pruning.engine import (
    Progress,
)
from snipit_cli.pruning.schedule import schedule_for
from snipit_cli.pruning.targets import check_exclude
from snipit_cli.sync import scored_together
from snipit_cli.training.loop import EpochProgress
from snipit_cli.workflows.documents import (
    connectivity_notes,
    measured_blocks,
    ordered,
    pruning_block,
    run_block,
)
from snipit_cli.workflows.prune.finetune import finetune
from snipit_cli.workflows.prune.modes import prune_units, prune_weights
from snipit_cli.workflows.prune.recalibration import check_recalibration, recalibrate, recalibrates
from snipit_cli.workflows.prune.record import checkpoint_document
from snipit_cli.workflows.prune.request import Pruned, PruneOutcome, PruneRequest, Setup
from snipit_cli.workflows.session import (
    checkpoint_output,
    claim_folder,
    claim_outputs,
    hub_folder,
    load,
    open_session,
    output_folder,
    pruning_criterion,
    resolve_device,
)
from snipit_cli.workflows.session.hub_folder import folder_writer


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
    request, rounding = _resolved(request, device)
    with process_group(device, launch) as sync:
        setup = scored_together(sync, _prepare, request, device, launch)
        if request.structured:
            pruned = prune_units(request, setup, progress, sync)
        else:
            pruned = prune_weights(request, setup, progress, sync)
        pruned.checkpoint_extra["recalibration"] = (
            scored_together(sync, recalibrate, request, setup.session.model, setup.data, sync)
            if recalibrates(request, setup.session.model)
            else None
        )
        model = setup.session.model.to("cpu")
        pruned.notes += [rounding] if rounding else []
        pruned.samples_per_rank = sync.gather_int(pruned.samples_read)
        pruned.backend = getattr(sync, "backend", None)

        document = {**checkpoint_document(setup, pruned, request), **pruned.checkpoint_extra}
        storage = request.storage
        written: dict[str, Any] = {}

        def write_checkpoint(tmp: Path) -> None:
            checkpoint_writer(model, document, storage)(tmp)
            written.update(size=tmp.stat().st_size, encoding=storage_of(read_metadata(tmp)))

        def report_document() -> dict[str, Any]:  # once the checkpoint is written
            if "report" not in written:
                file = (setup.output, written["size"], written["encoding"])
                written["report"] = prune_report(
                    request, setup, pruned, document, file=file, storage=storage, started=started
                )
            return written["report"]

        def write_report(tmp: Path) -> None:
            tmp.write_text(json.dumps(report_document(), indent=2) + "\n", encoding="utf-8")

        # Only rank 0 writes; the others wait to hear that it did (or why it could not), and
        # describe the model without its file.
        writers = {setup.output: write_checkpoint, setup.report_path: write_report}
        if setup.folder is not None:
            writers = _folder_writers(writers, setup, model, report_document, request.command)
        scored_together(sync, write_all_atomic if sync.rank == 0 else lambda _: None, writers)
        report = written.get("report") or prune_report(
            request,
            setup,
            pruned,
            document,
            file=_written_by_rank_0(setup.output),
            storage=storage,
            started=started,
        )
    if request.finetune is not None:
        report = finetune(request, report, document, model, device, finetune_progress)
        if setup.folder is not None:  # the card now holds the fine-tuned accuracy
            hub_folder.rewrite_card(setup.folder, report, setup.session.loaded.arch, request.command)
    return PruneOutcome(model, report)


def _resolved(request: PruneRequest, device: torch.device) -> tuple[PruneRequest, str | None]:
    """``request`` with ``--round-to auto`` made the device's multiple, and the note saying so."""
    if request.structured is None:
        return request, None
    structured, note = request.structured.resolved(device)
    return replace(request, structured=structured), note


def _folder_writers(
    writers: dict[Path, Any], setup: Setup, model: torch.nn.Module, report: Any, command: str | None
) -> dict[Path, Any]:
    """The checkpoint (and the report, unless --report put it elsewhere) go into the folder,
    which is written as one output, with its config.json and model card."""
    folder = setup.folder
    assert folder is not None
    inside = {p.name: w for p, w in writers.items() if p.parent == folder}
    outside = {p: w for p, w in writers.items() if p.parent != folder}
    arch = setup.session.loaded.arch
    return {
        folder: folder_writer(inside, model=model, arch=arch, report=report, folder=folder, command=command),
        **outside,
    }


def _written_by_rank_0(path: Path) -> tuple[Path, int | None, str | None]:
    """The checkpoint as the other ranks see it: rank 0's file, when it is on a file system they
    share; its path alone (size and encoding unknown) on another node."""
    if not path.is_file():
        return path, None, None
    return path, path.stat().st_size, storage_of(read_metadata(path))


def prune_report(
    request: PruneRequest,
    setup: Setup,
    pruned: Pruned,
    document: dict[str, Any],
    *,
    file: tuple[Path, int | None, str | None] | None = None,
    storage: str | None = None,
    started: float,
) -> dict[str, Any]:
    """prune's document: the checkpoint's metadata ``document`` and the model measured, plus the
    run's own facts (the structured equivalence check and limits, files, device, notes)."""
    session = setup.session
    blocks = measured_blocks(
        session.model,
        metadata=document,
        input_size=session.input_spec.size,
        exclude=request.exclude,
        dense=pruned.dense,
        dense_macs=pruned.dense_macs,
        file=file,
        storage=storage,
    )
    blocks["pruning"] = pruning_block(document, **pruned.report_extra)
    return ordered(
        "prune",
        {
            **blocks,
            "model": document["model"],
            "folder": str(setup.folder) if setup.folder is not None else None,
            "report_file": str(setup.report_path),
            "run": run_block(str(session.device), time.perf_counter() - started),
            "notes": setup.data.notes
            + pruned.notes
            + connectivity_notes(blocks["connectivity"], blocks["pruning"]),
        },
    )


def _prepare(request: PruneRequest, device: torch.device, launch: Launch) -> Setup:
    """Resolve method, model, outputs and data; every check that needs no scoring happens here."""
    criterion = pruning_criterion(request.method, request.structured is not None)
    check_recalibration(request)
    schedule = schedule_for(criterion, request.sparsity, request.steps)
    torch.manual_seed(request.seed)  # model initialisation is part of what --seed fixes
    loaded = load(request.model)
    check_exclude(loaded.model, request.exclude)
    output, report_path, folder = output_paths(request, loaded)
    # Data-free criteria open the dataset only to recalibrate BatchNorm (else it need not exist).
    data = request.data if criterion.needs_data or recalibrates(request, loaded.model) else None
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
    return Setup(criterion, schedule, session, calibration, output, report_path, folder)


def output_paths(request: PruneRequest, loaded: LoadedModel) -> tuple[Path, Path, Path | None]:
    """Checkpoint and report paths, and the hub-style folder holding them if any, checked before
    any work is done."""
    folder = output_folder(request.output, loaded, "pruned", request.format)
    if folder is not None:
        output = folder / hub_folder.CHECKPOINT
        report = request.report or folder / hub_folder.REPORT
        claim_folder(folder, force=request.force, inputs=(loaded.path,))
        if request.report:
            claim_outputs((report,), force=request.force, inputs=(loaded.path,))
        return output, report, folder
    output = checkpoint_output(request.output, loaded, "pruned")
    report = request.report or output.with_name(f"{output.stem}.report.json")
    if report.resolve() == output.resolve():
        raise UsageError("--report and -o/--output must be different files")
    claim_outputs((output, report), force=request.force, inputs=(loaded.path,))
    return output, report, None


def _check_enough_batches(data: CalibrationData, criterion, world_size: int) -> None:
    """Every rank needs at least one batch of each step, or it would sit idle in every all-reduce."""
    if criterion.needs_data and data.n_batches < world_size:
        raise UsageError(
            f"{data.n_batches} calibration batches cannot be shared by {world_size} processes; "
            f"pass --batches {world_size} or more (or launch fewer processes)"
        )
