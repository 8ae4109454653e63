"""The proof a structured run gives: the slim model reproduces the gated original.

After surgery the slim model must reproduce the original with the removed units' gates at zero
(relative max difference <= :data:`~snipit_cli.pruning.structured.trials.TOLERANCE` on a
calibration batch, eval mode, in float64 where the model runs in it); otherwise nothing is written
and the error names the group that breaks it. A few samples prove it as well as a whole batch
(a coupling error changes every output), and float64 convolutions are slow: the check takes the
first :data:`CHECK_SAMPLES` of the batch. The trials before (``slim.py``) make this a
confirmation: a group that would fail it is kept dense before the surgery.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from snipit_cli.errors import ModelError, SnipitError
from snipit_cli.pruning.structured.gates import gates_installed
from snipit_cli.pruning.structured.groups import UnitGraph
from snipit_cli.pruning.structured.surgery import remove_units
from snipit_cli.pruning.structured.trials import exact_arithmetic, relative_difference, removal_failure

#: Samples of the calibration batch the check runs on.
CHECK_SAMPLES = 2


@dataclass(frozen=True)
class Equivalence:
    """What the check measured: the difference, the tolerance it met, the arithmetic used."""

    max_rel_diff: float
    tolerance: float
    precision: str  # "float64", or the model's own dtype when its code does not run in float64
    samples: int

    def as_json(self) -> dict:
        return {
            "max_rel_diff": self.max_rel_diff,
            "tolerance": self.tolerance,
            "precision": self.precision,
            "samples": self.samples,
        }


def remove_and_check(
    model: nn.Module,
    dense: nn.Module,
    *,
    unit_graph: UnitGraph,
    gates: list[torch.Tensor],
    batch: torch.Tensor,
    protected: Sequence[str] = (),
) -> Equivalence:
    """Surgery on ``model`` (the units whose gate is 0), then :func:`check_equivalence` against
    ``dense``, its copy from before; whatever the user's model raises names the group."""
    batch = batch[:CHECK_SAMPLES]
    pruned = [torch.nonzero(g == 0).flatten().tolist() for g in gates]
    try:
        remove_units(model, unit_graph, pruned)
        return check_equivalence(
            model, dense, unit_graph=unit_graph, gates=gates, batch=batch, protected=protected
        )
    except SnipitError:
        raise
    except Exception as exc:  # noqa: BLE001 (the user's forward code can raise anything)
        first_line = (str(exc).strip().splitlines() or [""])[0][:160]
        culprit = _first_broken_group(dense, unit_graph, gates, batch, protected)
        raise ModelError(
            f"the slimmed model does not run ({type(exc).__name__}: {first_line}){culprit}; "
            "nothing was written"
        ) from exc


def check_equivalence(
    slim: nn.Module,
    dense: nn.Module,
    *,
    unit_graph: UnitGraph,
    gates: list[torch.Tensor],
    batch: torch.Tensor,
    protected: Sequence[str] = (),
) -> Equivalence:
    """Relative max difference of slim vs gated dense outputs; an error above the tolerance."""
    slim.eval(), dense.eval()
    with exact_arithmetic([slim, dense], batch) as (precise, tolerance):
        with torch.no_grad():
            out = slim(precise)
            with gates_installed(dense, unit_graph.groups, gates):
                reference = dense(precise)
        diff = relative_difference(out, reference)
        if not diff <= tolerance:
            culprit = _first_broken_group(dense, unit_graph, gates, precise, protected, tolerance)
            raise ModelError(
                f"the slimmed model does not match the gated original (relative difference {diff:.2e} > "
                f"{tolerance:g}){culprit}; nothing was written"
            )
    return Equivalence(diff, tolerance, str(precise.dtype).removeprefix("torch."), len(precise))


def _first_broken_group(dense, unit_graph, gates, batch, protected, tolerance=None) -> str:
    """Remove each group alone from a copy to find one whose coupling torch-pruning missed."""
    for i, group in enumerate(unit_graph.groups):
        if bool(gates[i].all()):
            continue
        extra = {} if tolerance is None else {"tolerance": tolerance}
        failure = removal_failure(
            dense, unit_graph=unit_graph, gates={i: gates[i]}, batch=batch, protected=protected, **extra
        )
        if failure is not None:
            return (
                f": removing units of {group.root} alone breaks it ({failure}; a width fixed in the model's "
                f"code, or an op torch-pruning does not model); keep it with --exclude '{group.root}'"
            )
    return ""
