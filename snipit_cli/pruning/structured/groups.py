"""Coupled units, found with torch-pruning's DependencyGraph.

torch-pruning traces the model once and knows which tensors share a channel: residual adds,
concatenations, depthwise and grouped convs, squeeze-excite, norms, attention projections. We use
its graph for the coupling and its pruning functions for the surgery instead of a hand-written
walk per architecture (the paper's own code supports only plain chains).

A *group* is one torch-pruning pruning group: a root Conv/Linear's output channels plus every
tensor slice tied to them. A *unit* is what one gate switches off: one root channel; one offset
shared by all conv groups of a grouped conv; one attention head.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from snipit_cli.layers import is_excluded

#: Norms whose statistics mix channels: removal is only equivalent to a zero gate when the
#: statistics are taken over the gated channels (handled for LayerNorm, not for GroupNorm).
MIXING_NORMS = (nn.LayerNorm,)
UNSUPPORTED_NORMS = (nn.GroupNorm,)


@dataclass
class Site:
    """Where a group's gate acts on one module: these channel ``idxs`` carry these ``units``."""

    module: str
    idxs: torch.Tensor
    units: torch.Tensor


@dataclass
class UnitGroup:
    """One coupled group: its units (as root channel indices) and where gates act."""

    root: str
    root_fn: Any
    units: list[list[int]]
    kind: str
    consumers: list[Site] = field(default_factory=list)
    layer_norms: list[Site] = field(default_factory=list)
    members: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.units)


@dataclass
class UnitGraph:
    """The dependency graph plus the prunable groups and the reasons others were left out."""

    graph: tp.DependencyGraph
    groups: list[UnitGroup]
    kept: list[str]
    attention: dict[str, nn.Module]


def find_unit_groups(
    model: nn.Module, *, example: torch.Tensor, protected: Sequence[nn.Module], exclude: Sequence[str] = ()
) -> UnitGraph:
    """Trace ``model`` and list its prunable unit groups.

    ``protected`` modules (the classifier) keep their outputs; groups touching an excluded module
    or a GroupNorm are kept whole and listed in ``kept`` with the reason.
    """
    names = {m: n for n, m in model.named_modules()}
    with torch.enable_grad(), warnings.catch_warnings():
        # Free nn.Parameters (ViT cls_token/pos_embed, ConvNeXt gamma) are pruned along their last
        # dim, which is right for the models we test; the equivalence check catches the rest.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    attention = {names[m.qkv]: m for m in model.modules() if _is_timm_attention(m)}
    protected = [m for m in protected if not _feeds_another_layer(graph, m)]
    groups, kept = [], []
    for group in graph.get_all_groups(
        ignored_layers=list(protected), root_module_types=(nn.Conv2d, nn.Linear)
    ):
        root = group[0].dep.target.module
        members = [names[item.dep.target.module] for item in group if item.dep.target.module in names]
        reason = _reason_to_keep(group, members, exclude, names)
        if reason:
            kept.append(f"{names[root]} ({reason})")
            continue
        groups.append(_unit_group(group, graph, names, attention.get(names[root]), members))
    return UnitGraph(graph, groups, kept, attention)


def _feeds_another_layer(graph: tp.DependencyGraph, module: nn.Module) -> bool:
    """True when ``module``'s outputs are inputs of another Conv/Linear: then it is a hidden layer
    that happens to have the output's shape (width == classes), not a classifier head."""
    pruner = graph.get_pruner_of_module(module)
    if pruner is None:
        return False
    group = graph.get_pruning_group(module, pruner.prune_out_channels, [0])
    return any(
        graph.is_in_channel_pruning_fn(item.dep.handler)
        and isinstance(item.dep.target.module, nn.Conv2d | nn.Linear)
        and item.dep.target.module is not module
        for item in group
    )


def _is_timm_attention(m: nn.Module) -> bool:
    return (
        isinstance(getattr(m, "qkv", None), nn.Linear) and hasattr(m, "num_heads") and hasattr(m, "head_dim")
    )


def _reason_to_keep(group: Any, members: list[str], exclude: Sequence[str], names: dict) -> str | None:
    excluded = [m for m in members if is_excluded(m, exclude)]
    if excluded:
        return f"--exclude matches {excluded[0]}"
    for item in group:
        if isinstance(item.dep.target.module, UNSUPPORTED_NORMS):
            return f"GroupNorm {names.get(item.dep.target.module, '?')} mixes channel statistics"
    return None


def _unit_group(
    group: Any, graph: tp.DependencyGraph, names: dict, attention: nn.Module | None, members
) -> UnitGroup:
    root_item = group[0]
    n_root = len(root_item.idxs)
    units, kind = _units(group, n_root, attention)
    unit_of = torch.empty(n_root, dtype=torch.long)
    for u, rows in enumerate(units):
        unit_of[rows] = u
    result = UnitGroup(
        names[root_item.dep.target.module], root_item.dep.handler, units, kind, members=members
    )
    for item in group:
        module = item.dep.target.module
        if module not in names or item.dep.target.type == tp.ops.OPTYPE.PARAMETER:
            continue
        site = Site(names[module], torch.as_tensor(list(item.idxs)), unit_of[torch.as_tensor(item.root_idxs)])
        if graph.is_in_channel_pruning_fn(item.dep.handler) and isinstance(module, nn.Conv2d | nn.Linear):
            result.consumers.append(site)
        elif isinstance(module, MIXING_NORMS) and graph.is_out_channel_pruning_fn(item.dep.handler):
            result.layer_norms.append(site)
    return result


def _units(group: Any, n_root: int, attention: nn.Module | None) -> tuple[list[list[int]], str]:
    """Root channel indices of each unit: heads, grouped-conv offsets, or single channels."""
    if attention is not None:  # qkv rows are laid out (3, heads, head_dim): a unit is a whole head
        heads, dim = attention.num_heads, attention.head_dim
        return [
            [s * heads * dim + h * dim + d for s in range(3) for d in range(dim)] for h in range(heads)
        ], "head"
    conv_groups = max(
        (
            m.groups
            for m in (item.dep.target.module for item in group)
            if isinstance(m, nn.Conv2d) and m.groups > 1 and not m.groups == m.in_channels == m.out_channels
        ),
        default=1,
    )
    if conv_groups > 1:  # torch-pruning slims grouped convs uniformly: one offset in every group
        size = n_root // conv_groups
        return [[j + k * size for k in range(conv_groups)] for j in range(size)], "grouped-offset"
    return [[i] for i in range(n_root)], "channel"
