"""``prune --recalibrate-bn``: after the last step, re-estimate the BatchNorm running statistics
of the pruned model on calibration batches (on by default for real data, off for synthetic)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from torch import nn

from snipit_cli.data.calibration import CalibrationData
from snipit_cli.errors import UsageError
from snipit_cli.pruning.batchnorm import recalibrate_batchnorm, tracked_batchnorms
from snipit_cli.sync import Sync
from snipit_cli.workflows.prune.request import PruneRequest

#: The seeded stream the recalibration batches come from: not one a scoring round reads.
RECALIBRATION_STEP = 1_000_000


def recalibrates(request: PruneRequest, model: nn.Module) -> bool:
    """Whether the run re-estimates BatchNorm statistics: as asked, else when the data is real;
    never for a model without tracked BatchNorm layers."""
    if not tracked_batchnorms(model):
        return False
    if request.recalibrate_bn is not None:
        return request.recalibrate_bn
    return request.data.spec.kind != "synthetic"


def check_recalibration(request: PruneRequest) -> None:
    if request.recalibrate_batches is not None and request.recalibrate_batches < 1:
        raise UsageError(f"--recalibrate-batches must be 1 or more, got {request.recalibrate_batches}")
    if request.recalibrate_batches is not None and request.recalibrate_bn is False:
        raise UsageError("--recalibrate-batches needs BatchNorm recalibration; drop --no-recalibrate-bn")


def recalibrate(request: PruneRequest, model: nn.Module, data: CalibrationData, sync: Sync) -> dict[str, Any]:
    """Recalibrate ``model`` in place on ``--recalibrate-batches`` batches (default: --batches) of
    the calibration data, a seeded draw of their own; the record the checkpoint keeps."""
    n_batches = request.recalibrate_batches or request.data.batches
    batches = replace(data, n_batches=n_batches, notes=[])
    read = recalibrate_batchnorm(model, batches.batches(RECALIBRATION_STEP), sync)
    return {
        "data": batches.spec,
        "batches": batches.n_batches,
        "batch_size": batches.batch_size,
        "samples": batches.samples_per_step,
        "layers": len(tracked_batchnorms(model)),
        "batches_read": sync.gather_int(read),
    }
