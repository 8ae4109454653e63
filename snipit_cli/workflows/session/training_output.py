"""What a run that trains writes and reads back: the checkpoint with its ``training`` block, and
the training state (optimizer moments, step) in a safetensors side file, so ``--resume``
continues where a run stopped. Shared by ``snipit train`` and ``prune --finetune-epochs``."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

import snipit_cli
from snipit_cli.errors import ModelError
from snipit_cli.fileio import write_all_atomic
from snipit_cli.models.checkpoint import Storage, checkpoint_writer
from snipit_cli.models.dtypes import SUPPORTED_TEXT, unsupported
from snipit_cli.models.encodings import OutputFormat
from snipit_cli.models.loading import LoadedModel
from snipit_cli.training.fit import TrainState
from snipit_cli.training.optim import OptimizerOptions, state_by_name
from snipit_cli.workflows.session import (
    Session,
    checkpoint_output,
    claim_folder,
    claim_outputs,
    model_document,
    output_folder,
)
from snipit_cli.workflows.session.hub_folder import CHECKPOINT, folder_writer

STATE_KEY = "snipit_train_state"


@dataclass
class FolderOutput:
    """A hub-style folder to write the checkpoint in: its path, the report its card holds
    (rendered while the folder is written, the model on the CPU) and the card's other facts."""

    path: Path
    report: Callable[[], dict[str, Any]]
    card: dict[str, Any]  # folder_writer's arch, folder and command


def state_path(checkpoint: Path) -> Path:
    """Where the training state of ``checkpoint`` lives: ``<stem>.train-state.safetensors``."""
    return checkpoint.with_name(f"{checkpoint.stem}.train-state.safetensors")


def training_outputs(
    given: Path | None, loaded: LoadedModel, *, force: bool, format: OutputFormat | None = None
) -> tuple[Path, Path, Path | None]:
    """The checkpoint to write and its state side file, checked against the input and its own,
    and the hub-style folder that holds both, if one is asked for."""
    inputs = (loaded.path, loaded.path and state_path(loaded.path))
    folder = output_folder(given, loaded, "trained", format)
    if folder is not None:
        claim_folder(folder, force=force, inputs=inputs)
        output = folder / CHECKPOINT
        return output, state_path(output), folder
    output = checkpoint_output(given, loaded, "trained")
    claim_outputs((output, state_path(output)), force=force, inputs=inputs)
    return output, state_path(output), None


def training_block(
    state: TrainState,
    *,
    epochs: int,
    optimizer: OptimizerOptions,
    data: dict[str, Any],
    seed: int,
    exclude: list[str],
    pruning: dict[str, Any] | None,
) -> dict[str, Any]:
    """The checkpoint's ``training`` block: the options --resume reuses, and what the run did."""
    return {
        "epochs": epochs,
        "epochs_done": state.epochs_done,
        "step": state.step,
        "optimizer": asdict(optimizer) | {"lr": optimizer.base_lr},
        "data": data,
        "seed": seed,
        "exclude": list(exclude),
        "pruning": pruning,
        "history": list(state.history),
    }


def trained_document(
    metadata: dict[str, Any],
    session: Session,
    *,
    pretrained: bool,
    state: TrainState,
    slim: dict[str, Any] | None,
    training: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint's metadata: what the input said, plus the pruning and training done here."""
    doc = dict(metadata)
    doc["snipit_version"] = snipit_cli.__version__
    model_input = session.input_spec
    doc.setdefault("model", model_document(session.loaded, model_input, session.num_classes, pretrained))
    # the normalisation this run applied (an input checkpoint may have recorded none)
    doc["model"] = {**doc["model"], "mean": list(model_input.mean), "std": list(model_input.std)}
    if slim:
        doc["slim"] = slim
    pruning = training["pruning"]
    if pruning:
        events = pruning["events"]
        doc.update(
            method=pruning["method"],
            structured=pruning["structured"],
            schedule=pruning["schedule"],
            sparsity={
                "target": pruning["sparsity"],
                "achieved": events[-1]["achieved"] if events else 0.0,
                "of": pruning["of"],
            },
        )
    elif "sparsity" in doc and doc["sparsity"].get("of") == "weights":
        doc["sparsity"] = {**doc["sparsity"], "achieved": state.weight_sparsity}
    doc["training"] = training
    return doc


def write_trained(
    output: Path,
    state: TrainState,
    document: dict[str, Any],
    storage: Storage,
    folder: FolderOutput | None = None,
) -> None:
    """Write the checkpoint and its state side file together (both or neither), in ``folder``
    with its config and card when it is a folder output; the model goes back to its device
    afterwards."""
    tensors = {
        f"{name}/{key}": value.detach().cpu().contiguous()
        for name, entries in state_by_name(state.model, state.optimizer).items()
        for key, value in entries.items()
    }
    meta = {STATE_KEY: json.dumps({"epochs_done": state.epochs_done, "step": state.step})}
    model = state.model
    model_device = next(model.parameters()).device
    model.to("cpu")
    writers = {
        output: checkpoint_writer(model, document, storage),
        state_path(output): lambda tmp: save_file(tensors, str(tmp), metadata=meta),
    }
    try:
        if folder is not None:
            files = {path.name: write for path, write in writers.items()}
            writers = {folder.path: folder_writer(files, model=model, report=folder.report, **folder.card)}
        write_all_atomic(writers)
    finally:
        model.to(model_device)


def read_state(checkpoint: Path, model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """The optimizer state saved next to ``checkpoint``, by parameter name, checked against
    ``model``: an unsupported dtype is refused here, by name, rather than by the optimizer's
    first step mid-training."""
    side = state_path(checkpoint)
    if not side.is_file():
        raise ModelError(
            f"cannot resume: the training state {side} is missing (it is written next to the checkpoint)"
        )
    try:
        with safe_open(str(side), framework="pt") as f:
            state: dict[str, dict[str, torch.Tensor]] = {}
            for key in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
                name, _, entry = key.rpartition("/")
                state.setdefault(name, {})[entry] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read the training state {side}: {exc}") from exc
    params = dict(model.named_parameters())
    for name, entries in state.items():
        for key, value in entries.items():
            problem = unsupported(value, params.get(name) if value.dim() else None)
            if problem:
                raise ModelError(
                    f"cannot resume: {name}/{key} in the training state {side} {problem}; "
                    f"optimizer state is {SUPPORTED_TEXT}"
                )
    return state
