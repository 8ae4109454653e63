"""Params and MACs of a selection of units, counted from the widths it leaves: no copy, no forward.

A trial removal (model copy, torch-pruning's surgery, a forward under the flop counter) costs
about 100 ms on resnet18 at 224 px, and the ``--target params|macs`` search makes several per
step. Removing channels only changes widths: a Conv/Linear's MACs are its dense MACs times the
kept share of its outputs and of its inputs (of its outputs only for a depthwise conv, whose
groups shrink with it), its weight shrinks the same way, and a norm's affine parameters shrink
with its channels. One flop count per module of the dense model and the width sites torch-pruning's
groups name then give the count of any selection exactly.

Where the model holds MACs or parameters the widths do not determine (a matmul outside any
Conv/Linear such as attention, a free ``nn.Parameter``, a layer of unknown shape),
:func:`width_counter` returns ``None`` and the caller counts on trial copies.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

from torch import nn

from snipit_cli.metrics.macs import macs_by_module
from snipit_cli.pruning.structured.groups import UnitGroup

#: Remaining params or MACs of the model once these units (per group) are removed.
Counter = Callable[[Sequence[Sequence[int]]], int]
#: Per (module, side): how many of its channels each unit of one group carries.
_Table = dict[tuple[str, str], list[int]]


@dataclass
class _Layer:
    """How one module's count follows its widths: dense widths ``out0``/``in0``, the part that
    scales with kept_out/out0 * kept_in/in0 (a weight, a conv's MACs) and the part that scales
    with kept_out/out0 only (a bias). ``one_width``: in and out are one width (a depthwise
    conv, whose groups shrink with it; a norm), whichever side a group names.

    Counted in floats: every term is an integer count below 2**53 times a share, so the sum of
    a few hundred rounds to the exact integer (checked against a real removal by the caller).
    """

    out0: int
    in0: int
    both: int
    out_only: int
    one_width: bool = False

    def __post_init__(self):
        self._per_both = self.both / (self.out0 * self.in0)
        self._per_out = (self.out_only + (self.both if self.one_width else 0)) / self.out0

    def count(self, removed_out: int, removed_in: int) -> float:
        kept_out, kept_in = self.out0 - removed_out, self.in0 - removed_in
        if self.one_width:
            return self._per_out * min(kept_out, kept_in)
        return kept_out * (self._per_both * kept_in + self._per_out)


def width_counter(
    model: nn.Module, groups: Sequence[UnitGroup], *, target: str, input_size: tuple[int, ...]
) -> Counter | None:
    """Remaining ``target`` ("params" or "macs") of ``model`` without each group's removed units,
    from widths alone; ``None`` when some of the model's count does not follow its widths."""
    if any(g.slices_free_parameter for g in groups):
        return None
    modules = dict(model.named_modules())
    resized = {site.module for g in groups for _, site in g.widths}
    macs = macs_by_module(model, input_size, next(model.parameters()).device) if target == "macs" else None
    layers: dict[str, _Layer] = {}
    fixed = 0
    for name, module in modules.items():
        own = _own_params(module) if macs is None else _own_macs(module, name, macs)
        if own is None:
            return None
        if name not in resized or own == 0:
            fixed += own
            continue
        layer = _layer(module, own, count_bias=macs is None)
        if layer is None:
            return None
        layers[name] = layer
    tables = removal_tables(groups, layers)

    def count(pruned: Sequence[Sequence[int]]) -> int:
        removed = removed_widths(tables, pruned)
        total = fixed + sum(
            layer.count(removed.get((name, "out"), 0), removed.get((name, "in"), 0))
            for name, layer in layers.items()
        )
        return round(total)

    return count


def _own_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters(recurse=False))


def _own_macs(module: nn.Module, name: str, per_module: dict[str, int]) -> int | None:
    """MACs of the module's own code (its count less its children's); None when a module other
    than a Conv/Linear has some (a matmul in a forward: attention, an einsum)."""
    prefix = f"{name}." if name else ""
    children = sum(per_module.get(prefix + child, 0) for child, _ in module.named_children())
    own = per_module.get(name, 0) - children
    if own and not isinstance(module, nn.Conv2d | nn.Linear):
        return None
    return own


def _layer(module: nn.Module, own: int, *, count_bias: bool) -> _Layer | None:
    """The width model of a module a group resizes; None for a shape the widths do not fix."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        conv = isinstance(module, nn.Conv2d)
        out0 = module.out_channels if conv else module.out_features
        in0 = module.in_channels if conv else module.in_features
        bias = out0 if count_bias and module.bias is not None else 0
        if conv and module.groups > 1 and module.groups == in0 == out0:
            return _Layer(out0, in0, 0, own, one_width=True)
        return _Layer(out0, in0, own - bias, bias)
    params = list(module.parameters(recurse=False))
    widths = {p.numel() for p in params}
    if len(widths) != 1 or any(p.dim() != 1 for p in params):
        return None  # not a per-channel affine (a norm's weight and bias)
    width = widths.pop()
    return _Layer(width, width, 0, own, one_width=True)


def removal_tables(groups: Sequence[UnitGroup], modules: Container[str]) -> list[_Table]:
    """Per group: for each (module, side) of ``modules`` it resizes, how many channels each unit
    takes away (distinct channel indices, so a module the group reaches twice is not counted twice)."""
    tables = []
    for group in groups:
        channels: dict[tuple[str, str], dict[int, int]] = {}
        for side, site in group.widths:
            if site.module in modules:
                mapped = channels.setdefault((site.module, side), {})
                mapped.update(zip(site.idxs.tolist(), site.units.tolist(), strict=True))
        table: _Table = {}
        for key, mapped in channels.items():
            per_unit = [0] * group.size
            for unit in mapped.values():
                per_unit[unit] += 1
            table[key] = per_unit
        tables.append(table)
    return tables


def removed_widths(tables: Sequence[_Table], pruned: Sequence[Sequence[int]]) -> dict[tuple[str, str], int]:
    """Channels removed per (module, side) when these units (per group) are removed."""
    removed: dict[tuple[str, str], int] = {}
    for table, chosen in zip(tables, pruned, strict=True):
        for key, per_unit in table.items():
            removed[key] = removed.get(key, 0) + sum(per_unit[u] for u in chosen)
    return removed
