"""The two pruning modes of ``snipit prune``: weights zeroed in place (SNIP-it and friends) or
units removed and the slim model proven equal to the gated original (SNAP-it and friends)."""

from __future__ import annotations

from torch import nn

from snipit_cli.errors import UsageError
from snipit_cli.pruning.engine import (
    MIN_LAYER_DENSITY,
    PruneResult,
    current_masks,
    prune,
)
from snipit_cli.pruning.masks import count_kept
from snipit_cli.pruning.structured.figures import limit_notes, slim_report
from snipit_cli.pruning.structured.slim import slim_model
from snipit_cli.pruning.targets import prunable_weights
from snipit_cli.workflows.prune.request import Pruned, PruneRequest, Setup


def prune_weights(request: PruneRequest, setup: Setup, progress, sync) -> Pruned:
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
        notes=_zero_score_notes(result) + collapse_notes(result.held_layers),
        samples_read=result.samples_read,
    )


def prune_units(request: PruneRequest, setup: Setup, progress, sync) -> Pruned:
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
    figures = slim_report(
        outcome, model, size, options.latency_batch if options.target == "latency" else None
    )
    achieved = figures["removed"][options.target]
    short = achieved < request.sparsity - 0.01
    return Pruned(
        outcome.result.schedule,
        achieved,
        checkpoint_extra={"slim": outcome.record, "nodes": figures["nodes"]},
        report_extra={k: figures[k] for k in ("equivalence", "limits", "latency") if figures[k] is not None},
        notes=[f"reached {achieved:.4f} of {options.target}, short of {request.sparsity}: see limits"] * short
        + limit_notes(figures["limits"]),
        dense=outcome.dense,
        dense_macs=figures["macs"]["dense"],
        samples_read=outcome.result.samples_read,
    )


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
