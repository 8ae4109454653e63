"""``snipit train`` as a library call: train or fine-tune a dense, masked or slim model, and
optionally prune it while it trains, then write a checkpoint.

Pruned weights stay exactly zero (masks are re-applied after every optimizer step); slim models
keep their shapes; SNAP-it during training shrinks the model between epochs and the optimizer
state follows the surgery. Training state (optimizer moments, step, history) goes to a
safetensors side file so ``--resume`` continues where a run stopped: the checkpoint's ``training``
block records the data, optimizer and pruning options, which a resumed run reuses.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from snipit_cli.models.checkpoint import read_metadata, storage_of
from snipit_cli.pruning.engine import current_masks
from snipit_cli.pruning.targets import check_exclude, prunable_weights
from snipit_cli.training.fit import TrainState, fit, start
from snipit_cli.training.loop import EpochProgress
from snipit_cli.workflows.documents import (
    connectivity_notes,
    dense_reference,
    measured_blocks,
    ordered,
    run_block,
)
from snipit_cli.workflows.session import (
    RUN_ONLY_KEYS,
    Session,
    load,
    open_session,
    resolve_device,
)
from snipit_cli.workflows.session.training_data import TrainingSets, require_dataset, training_sets
from snipit_cli.workflows.session.training_output import (
    FolderOutput,
    trained_document,
    training_block,
    training_outputs,
    write_trained,
)
from snipit_cli.workflows.train.pruning import Pruner
from snipit_cli.workflows.train.request import TrainOutcome, TrainRequest
from snipit_cli.workflows.train.resume import read_resume, resumed_request, resumed_state


def run_train(request: TrainRequest, progress: EpochProgress | None = None) -> TrainOutcome:
    """Train, writing the checkpoint every ``checkpoint_every`` epochs and at the end."""
    started = time.perf_counter()
    torch.manual_seed(request.seed)
    loaded = load(request.model)
    output, state_file, folder = training_outputs(
        request.output, loaded, force=request.force, format=request.format
    )
    resumed = read_resume(request, loaded)
    if resumed:
        request = resumed_request(request, resumed, loaded.source)
    check_exclude(loaded.model, request.exclude)
    device = resolve_device(request.device)
    rounding = None
    if request.prune is not None and request.prune.structured is not None:  # --round-to auto
        structured, rounding = request.prune.structured.resolved(device)
        request = replace(request, prune=replace(request.prune, structured=structured))
    require_dataset(request.data)
    session = open_session(loaded, device=device, data=request.data, input_size=request.model.input_size)
    sets = training_sets(request.reads, session)

    weights = prunable_weights(session.model, request.exclude)
    state = start(session.model, weights=weights, masks=current_masks(weights), options=request.optimizer)
    metadata = {k: v for k, v in (loaded.metadata or {}).items() if k not in RUN_ONLY_KEYS}
    if resumed:
        assert loaded.path is not None  # read_resume refuses a model that is not a file
        state = resumed_state(state, resumed, loaded.path)
    pruner = _pruner(request, session, sets, state, resumed, metadata)

    def document(state: TrainState) -> dict[str, Any]:
        pruning = pruner.record() if pruner else (resumed or {}).get("pruning")
        slim = pruner.slim if pruner else metadata.get("slim")
        return _document(request, session, metadata, sets, state, pruning, slim)

    def folder_output(state: TrainState, doc: dict[str, Any]) -> FolderOutput | None:
        if folder is None:
            return None

        def card_report() -> dict[str, Any]:  # the model as written, its file not yet in place
            return train_report(session, doc, state=state, exclude=request.exclude, output=None, storage="")

        card = {"arch": loaded.arch, "folder": folder, "command": request.command}
        return FolderOutput(folder, card_report, card)

    def checkpoint(state: TrainState) -> None:
        every = request.checkpoint_every
        if state.epochs_done == request.epochs or (every and state.epochs_done % every == 0):
            doc = document(state)
            write_trained(output, state, doc, request.storage, folder_output(state, doc))

    state = fit(
        state,
        train=sets.train,
        test=sets.test,
        options=request.optimizer,
        epochs=request.epochs,
        progress=progress,
        before_epoch=pruner.maybe_prune if pruner else None,
        after_epoch=checkpoint,
    )
    state.model.to("cpu").eval()
    report = train_report(
        session, document(state), state=state, exclude=request.exclude, output=output, storage=request.storage
    )
    report.update(
        folder=str(folder) if folder is not None else None,
        state_file=str(state_file),
        run=run_block(str(device), time.perf_counter() - started),
        notes=sets.notes
        + ([rounding] if rounding else [])
        + connectivity_notes(report["connectivity"], report["pruning"]),
    )
    return TrainOutcome(state.model, report)


def train_report(
    session: Session,
    metadata: dict[str, Any],
    *,
    state: TrainState,
    exclude: list[str],
    output: Path | None,
    storage: str,
) -> dict[str, Any]:
    """train's document: the written checkpoint's metadata and the trained model, measured
    (without its file when ``output`` is None: a model card's, while the folder is written)."""
    loaded = session.loaded
    dense = dense_reference(loaded.arch, metadata, confirmed=loaded.arch_confirmed)
    file = (output, output.stat().st_size, storage_of(read_metadata(output))) if output else None
    blocks = measured_blocks(
        state.model,
        metadata=metadata,
        input_size=session.input_spec.size,
        exclude=exclude,
        dense=dense,
        file=file,
        storage=storage,
    )
    return ordered("train", {**blocks, "model": metadata["model"], "training": metadata["training"]})


def _pruner(
    request: TrainRequest,
    session: Session,
    sets: TrainingSets,
    state: TrainState,
    resumed: dict[str, Any] | None,
    metadata: dict[str, Any],
) -> Pruner | None:
    """The pruner of train --method, carrying on from the record of a resumed run."""
    if request.prune is None:
        return None
    return Pruner(
        request.prune,
        state=state,
        epochs=request.epochs,
        train_data=sets.train,
        data=request.data,
        device=session.device,
        arch=session.loaded.arch,
        size=session.input_spec.size,
        exclude=request.exclude,
        seed=request.seed,
        optimizer=request.optimizer,
        recorded=(resumed or {}).get("pruning"),
        slim=metadata.get("slim"),
    )


def _document(request, session, metadata, sets, state, pruning, slim) -> dict[str, Any]:
    """The checkpoint's metadata after ``state``: the input's, plus this run's pruning and training."""
    block = training_block(
        state,
        epochs=request.epochs,
        optimizer=request.optimizer,
        data=sets.record,
        seed=request.seed,
        exclude=request.exclude,
        pruning=pruning,
    )
    pretrained = request.model.pretrained
    return trained_document(metadata, session, pretrained=pretrained, state=state, slim=slim, training=block)
