"""Physical removal of pruned units with torch-pruning's own pruning functions."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from snipit_cli.errors import ModelError
from snipit_cli.pruning.structured.groups import UnitGraph


def remove_units(model: nn.Module, unit_graph: UnitGraph, pruned: Sequence[Sequence[int]]) -> None:
    """Remove ``pruned[i]`` (unit indices of group i) from ``model``, which was traced into ``unit_graph``.

    Each pruning group is built right before it is applied: torch-pruning maps indices through
    concatenations using the *current* shapes, so a plan built before an earlier group shrank a
    concatenation would cut the wrong channels (DenseNet). Root indices stay valid because
    groups are disjoint.
    """
    modules = dict(model.named_modules())
    for group, units in zip(unit_graph.groups, pruned, strict=True):
        if not units:
            continue
        rows = sorted(r for u in units for r in group.units[u])
        plan = unit_graph.graph.get_pruning_group(modules[group.root], group.root_fn, rows)
        if not unit_graph.graph.check_pruning_group(plan):
            raise ModelError(
                f"torch-pruning refuses to remove {len(units)} units of {group.root} (it would empty a "
                f"layer); keep it with --exclude '{group.root}'"
            )
        plan.prune()
    for qkv_name, attention in unit_graph.attention.items():  # timm keeps head counts as attributes
        qkv = modules[qkv_name]
        attention.num_heads = qkv.out_features // (3 * attention.head_dim)
        if hasattr(attention, "attn_dim"):
            attention.attn_dim = attention.num_heads * attention.head_dim
