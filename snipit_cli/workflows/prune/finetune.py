"""``prune --finetune-epochs``: train the model just pruned and write that instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snipit_cli.fileio import write_atomic
from snipit_cli.models.arch import ArchSpec
from snipit_cli.models.loading import LoadedModel
from snipit_cli.pruning.engine import (
    current_masks,
)
from snipit_cli.pruning.targets import prunable_weights
from snipit_cli.training.fit import fit, start
from snipit_cli.training.loop import EpochProgress
from snipit_cli.workflows.prune.request import PruneRequest
from snipit_cli.workflows.session import (
    open_session,
)
from snipit_cli.workflows.session.training_data import TrainingDataOptions, require_dataset, training_sets
from snipit_cli.workflows.session.training_output import (
    trained_document,
    training_block,
    training_outputs,
    write_trained,
)


def finetune(
    request: PruneRequest,
    report: dict[str, Any],
    metadata: dict[str, Any],
    model: nn.Module,
    device: torch.device,
    progress: EpochProgress | None,
) -> dict[str, Any]:
    """Train the model just pruned, in memory, on the calibration split (evaluated on the test
    split when that is other images, else unevaluated with a note), and replace its checkpoint
    with the fine-tuned one and its training state; the report (returned and on disk) gains the
    ``training`` block and describes the fine-tuned file."""
    assert request.finetune is not None
    torch.manual_seed(request.seed)
    arch = metadata["model"].get("arch")
    source = metadata["model"]["source"]
    loaded = LoadedModel(model, source, ArchSpec.from_json(arch) if arch else None, metadata)
    output, _, _ = training_outputs(Path(report["file"]["path"]), loaded, force=True)
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
    file = report["file"] | {"size": output.stat().st_size}
    file["bytes_per_param"] = file["size"] / report["params"]["total"] if report["params"]["total"] else None
    file["to_dense"] = file["size"] / file["dense_size"] if file["dense_size"] else None
    tuned = {**report, "file": file, "training": block, "notes": report["notes"] + sets.notes}
    text = json.dumps(tuned, indent=2) + "\n"
    write_atomic(Path(report["report_file"]), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return tuned
