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

import sys
import traceback
import warnings
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from snipit_cli.errors import ModelError
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
    #: The i-th index is channel i: a gate there is a plain gather (most layers).
    in_order: bool = field(init=False)

    def __post_init__(self):
        self.in_order = bool(torch.equal(self.idxs, torch.arange(self.idxs.numel())))


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
    #: Every named module whose width the group changes, ``"out"`` or ``"in"``: what the
    #: analytic params/MACs count reads (:mod:`~snipit_cli.pruning.structured.counting`).
    widths: list[tuple[str, Site]] = field(default_factory=list)
    #: True when the group also slices a free ``nn.Parameter`` (ViT's pos_embed).
    slices_free_parameter: bool = False

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
    try:
        graph = _trace(model, example)
        with _bounded_search(GROUP_LIMIT_PER_MODULE * len(names)):
            protected = [m for m in protected if not _feeds_another_layer(graph, m)]
            all_groups = list(
                graph.get_all_groups(ignored_layers=list(protected), root_module_types=(nn.Conv2d, nn.Linear))
            )
    except _Unbounded as exc:
        raise ModelError(
            f"torch-pruning's dependency graph does not converge on this model: a channel group grew past "
            f"{exc.limit:,} entries at {exc.op}; prune it unstructured (without --structured)"
        ) from None
    except Exception as exc:  # noqa: BLE001 (torch-pruning's tracer fails in its own ways)
        raise ModelError(_trace_failure(exc)) from exc
    attention = {names[m.qkv]: m for m in model.modules() if _is_timm_attention(m)}
    groups, kept = [], []
    for group in all_groups:
        root = group[0].dep.target.module
        members = [names[item.dep.target.module] for item in group if item.dep.target.module in names]
        reason = _reason_to_keep(group, members, exclude, names)
        if reason:
            kept.append(f"{names[root]} ({reason})")
            continue
        unit_group = _unit_group(group, graph, names, attention.get(names[root]), members)
        reason = _misplaced_site(unit_group, model)
        if reason:
            kept.append(f"{names[root]} ({reason})")
            continue
        groups.append(unit_group)
    return UnitGraph(graph, groups, kept, attention)


def _misplaced_site(group: UnitGroup, model: nn.Module) -> str | None:
    """Why torch-pruning's channel map of ``group`` cannot be right: an index past the inputs of a
    consumer (res2net's ``torch.split`` and LeViT's reshaped heads map channels that way).
    A gate there would fail in every forward, so the group is kept dense before any trial."""
    modules = dict(model.named_modules())
    for site in group.consumers:
        module = modules[site.module]
        width = module.in_features if isinstance(module, nn.Linear) else module.in_channels
        if site.idxs.numel() and int(site.idxs.max()) >= width:
            return (
                f"torch-pruning maps its channels past the {width} inputs of {site.module}: an op its graph "
                "does not model, such as a channel split"
            )
    return None


#: A group of more than this many dependencies per module of the model is a search that does not
#: end: the largest real group of the coverage benchmark has 10 per module (DenseNet-121), while
#: rexnet's slice-add-concat shortcuts grow one group past 20,000 in 17 s without converging.
GROUP_LIMIT_PER_MODULE = 10
#: Channel indices one reshape may expand a group's indices to. A flatten before a classifier
#: needs C*H*W (25,088 for VGG at 224 px); MaxViT's window partitions multiply strides until
#: the list exhausts memory (24 GiB here).
INDEX_LIMIT = 2_000_000


class _Unbounded(Exception):
    def __init__(self, limit: int, op: str):
        super().__init__(limit, op)
        self.limit, self.op = limit, op


@contextmanager
def _bounded_search(limit: int) -> Iterator[None]:
    """Stop torch-pruning's group search when one group exceeds ``limit`` dependencies.

    Its search revisits a node whenever the channel indices differ, and around nested channel
    slices they differ every time; and a reshape expands index lists by its stride, which chained
    window partitions multiply past any memory. It has no bound of its own, nor a hook for one:
    the counts are taken in ``Group.add_dep`` and the flatten mapping, patched for this call only.
    """
    group_class = tp.dependency.group.Group
    flatten_class = tp.dependency.index_mapping._FlattenIndexMapping
    original, original_flatten = group_class.add_dep, flatten_class.__call__
    counts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def add_dep(self, dep, idxs):
        counts[self] = counts.get(self, 0) + 1
        if counts[self] > limit:
            raise _Unbounded(limit, _op_name(dep.target))
        return original(self, dep, idxs)

    def flatten(self, idxs):
        if not self.reverse and len(idxs) * self._stride > INDEX_LIMIT:
            raise _Unbounded(INDEX_LIMIT, "a reshape (view/reshape/flatten) that multiplies channel indices")
        return original_flatten(self, idxs)

    group_class.add_dep, flatten_class.__call__ = add_dep, flatten
    try:
        yield
    finally:
        group_class.add_dep, flatten_class.__call__ = original, original_flatten


def _op_name(node) -> str:
    kind = getattr(node, "type", None)
    label = {
        tp.ops.OPTYPE.SLICE: "a channel slice (x[:, a:b])",
        tp.ops.OPTYPE.CONCAT: "a concatenation (torch.cat)",
        tp.ops.OPTYPE.SPLIT: "a channel split (torch.split/chunk)",
        tp.ops.OPTYPE.RESHAPE: "a reshape (view/reshape/flatten)",
        tp.ops.OPTYPE.ELEMENTWISE: "an elementwise op (a residual add)",
    }.get(kind)
    return label or f"{type(getattr(node, 'module', None)).__name__}"


def _trace(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    with torch.enable_grad(), warnings.catch_warnings():
        # Free nn.Parameters (ViT cls_token/pos_embed, ConvNeXt gamma) are pruned along their last
        # dim, which is right for the models we test; the equivalence check catches the rest.
        warnings.filterwarnings("ignore", message="Unwrapped parameters detected")
        return tp.DependencyGraph().build_dependency(
            model, example_inputs=example, customized_pruners=_mixing_modules()
        )


#: torch-pruning's index-mapping steps, by the op they model (named in a refusal).
_TRACED_OPS = {
    "concat": "a concatenation (torch.cat)",
    "split": "a channel split (torch.split/chunk)",
    "reshape": "a reshape (view/reshape/flatten)",
    "flatten": "a reshape (view/reshape/flatten)",
    "slice": "a channel slice (x[:, a:b])",
    "expand": "an expand",
    "unbind": "an unbind",
    "shape_infer": "the channel count of an op it cannot infer",
}


def _trace_failure(exc: Exception) -> str:
    """One line: which op torch-pruning's graph could not follow, and what to do."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "torch_pruning" in f.filename]
    where = next(
        (
            op
            for f in reversed(frames)
            for key, op in _TRACED_OPS.items()
            if key in f.name or key in f.filename
        ),
        "an op of the model",
    )
    first = (str(exc).strip().splitlines() or [""])[0][:120]
    return (
        f"torch-pruning's dependency graph cannot follow {where} in this model ({type(exc).__name__}: "
        f"{first}); prune it unstructured (without --structured)"
    )


class _ChannelMixer(tp.pruner.function.BasePruningFunc):
    """A module that mixes channels outside any Conv/Linear input (ECA's 1-d conv over the channel
    axis), traced as one node whose input and output channels are coupled. It holds no
    channel-shaped tensor, so removing a channel changes nothing in it; that removal is not
    equivalent to a gate (its neighbours' attention changes), so the trials keep such groups dense.

    Without this torch-pruning traces through the module's ``view(B, 1, C)`` and expands index
    lists channel by channel, 90 s on ecaresnet26t at 32 px instead of 0.1 s.
    """

    TARGET_MODULES = None

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        return layer

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: nn.Module) -> None:
        return None

    get_in_channels = get_out_channels


def _mixing_modules() -> dict[type, tp.pruner.function.BasePruningFunc]:
    """The channel-mixing module types of the model libraries that are loaded (timm's ECA)."""
    timm_layers = sys.modules.get("timm.layers")
    if timm_layers is None:
        return {}
    mixer = _ChannelMixer()
    return {cls: mixer for cls in (getattr(timm_layers, n, None) for n in ("EcaModule", "CecaModule")) if cls}


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
        if item.dep.target.type == tp.ops.OPTYPE.PARAMETER:
            result.slices_free_parameter = True
            continue
        if module not in names:
            continue
        site = Site(names[module], torch.as_tensor(list(item.idxs)), unit_of[torch.as_tensor(item.root_idxs)])
        direction = "out" if graph.is_out_channel_pruning_fn(item.dep.handler) else "in"
        result.widths.append((direction, site))
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
