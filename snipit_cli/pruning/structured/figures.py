"""The figures a structured run reports: units, parameters and MACs removed, the equivalence
proof, and what bounded the run, as plain data for the report and the notes."""

from __future__ import annotations

from typing import Any

from torch import nn

from snipit_cli.metrics.latency import measure_latency
from snipit_cli.metrics.macs import count_macs
from snipit_cli.metrics.sparsity import count_params
from snipit_cli.models.input_spec import Size
from snipit_cli.pruning.structured.slim import SlimOutcome


def slim_report(
    outcome: SlimOutcome, model: nn.Module, size: Size, latency_batch: int | None = None
) -> dict[str, Any]:
    """Node and MAC figures of a slim model against its dense original, and what bounded it;
    with ``latency_batch``, the forward latency of both measured as ``compare --latency`` does."""
    result = outcome.result
    macs_dense, macs_slim = count_macs(outcome.dense, size), count_macs(model, size)
    removed = {
        "nodes": result.node_sparsity,
        "params": 1 - count_params(model) / count_params(outcome.dense),
        "macs": 1 - macs_slim / macs_dense,
    }
    latency = _latency(outcome.dense, model, size, latency_batch) if latency_batch else None
    if latency:
        removed["latency"] = latency["removed"]
    return {
        "removed": removed,
        "latency": latency,
        "nodes": {
            "dense": result.total_units,
            "remaining": result.total_units - sum(len(p) for p in result.pruned),
            "sparsity": result.node_sparsity,
        },
        "macs": {"dense": macs_dense, "pruned": macs_slim, "removed": removed["macs"]},
        "equivalence": outcome.equivalence.as_json(),
        "limits": {"kept_groups": outcome.unit_graph.kept, "at_min_keep": result.at_floor},
    }


def _latency(dense: nn.Module, slim: nn.Module, size: Size, batch: int) -> dict[str, Any]:
    device = next(slim.parameters()).device
    timed = [measure_latency(m, size, batch_sizes=(batch,), device=device) for m in (dense, slim)]
    dense_ms, slim_ms = (t["batch_sizes"][str(batch)]["median_ms"] for t in timed)
    return {
        "batch": batch,
        "dense_ms": dense_ms,
        "slim_ms": slim_ms,
        "removed": 1 - slim_ms / dense_ms,
        "repeats": timed[1]["repeats"],
        "threads": timed[1]["threads"],
        "device": timed[1]["device"],
    }


def limit_notes(limits: dict[str, list[str]]) -> list[str]:
    """One-line remarks on what kept the run from pruning more."""
    notes = []
    if limits["kept_groups"]:
        notes.append(f"kept whole: {'; '.join(limits['kept_groups'][:5])}")
    if limits["at_min_keep"]:
        notes.append(f"groups held at their --min-keep floor: {', '.join(limits['at_min_keep'][:5])}")
    return notes
