"""The metadata document a pruned checkpoint stores: how to rebuild the model and what was done."""

from __future__ import annotations

from typing import Any

import snipit_cli
from snipit_cli.data.build import DataOptions
from snipit_cli.data.calibration import CalibrationData
from snipit_cli.workflows.prune.request import Pruned, PruneRequest, Setup
from snipit_cli.workflows.session import (
    model_document,
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
