"""A latency lookup table of layer widths, timed on the run's device: what guides ``--target latency``.

Latency-aware pruning (HALP: Shen et al., "Structural Pruning via Latency-Saliency Knapsack",
NeurIPS 2022) times each layer at a grid of its widths once and reads any selection's latency
off the table: no trial model, no forward. Here every Conv2d/Linear a group resizes is timed
alone (a fresh layer of the same kind, fed the input shape it sees in the model) at
:data:`GRID` shares of its output and input widths; a width between grid points is read
bilinearly, at the next multiple of the channels the device's kernels compute at a time (16 on
this project's AVX-512 CPU: 16k+1 channels cost about what 16k+16 do). What the table leaves
out (norms, activations, pooling, adds, the layers no group resizes) is the dense model's
measured latency less the table's dense sum, and it shrinks with the share of conv/linear
output activations kept: per-activation work scales with the channels.

The table serves two things: the marginal cost of each group's units (ms saved per unit), by
which the ranking weighs importance (least importance per millisecond goes first), and the
latency of the intermediate steps. It guides, it does not decide: the last step's width is
found on real trial models (:mod:`.measure`), and the report gives the latency measured again.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from snipit_cli.metrics.latency import sync_device, time_calls
from snipit_cli.pruning.structured.counting import removal_tables, removed_widths
from snipit_cli.pruning.structured.groups import UnitGroup

#: Shares of a layer's dense width it is timed at (with 0 width costing 0 below the first).
GRID = (0.25, 0.5, 0.75, 1.0)
#: Timed calls per grid point (after one warm-up): the median of 3 of a single layer is enough for
#: a guide (the last step is timed on whole trial models).
REPEATS = 3


@dataclass
class _Row:
    """One timed layer: its dense widths, the grid widths it was timed at and the milliseconds
    there (``ms[i][j]`` at ``outs[i]`` outputs and ``ins[j]`` inputs; one column when its in and
    out are one width, a depthwise conv), and its output elements per channel."""

    out0: int
    in0: int
    outs: list[int]
    ins: list[int]
    ms: list[list[float]]
    per_channel: int
    one_width: bool = False

    def at(self, kept_out: int, kept_in: int, multiple: int = 1) -> float:
        """Milliseconds at these widths, each read as the next multiple of ``multiple`` (the
        channels the device's kernels compute at a time: a width past a multiple costs about
        what the next multiple costs), never past the dense width."""
        kept_out = min(self.out0, -(-kept_out // multiple) * multiple)
        kept_in = min(self.in0, -(-kept_in // multiple) * multiple)
        if self.one_width:
            return _lerp(self.outs, [r[0] for r in self.ms], min(kept_out, kept_in))
        column = [_lerp(self.outs, [r[j] for r in self.ms], kept_out) for j in range(len(self.ins))]
        return _lerp(self.ins, column, kept_in)


class LatencyTable:
    """Predicted forward milliseconds of any selection of units, from the timed rows."""

    def __init__(
        self,
        rows: dict[str, _Row],
        fixed_acts: int,
        groups: Sequence[UnitGroup],
        dense_ms: float,
        multiple: int = 1,
    ):
        self.rows, self.fixed_acts, self.rest_ms, self.multiple = rows, fixed_acts, 0.0, multiple
        self.tables = removal_tables(groups, rows)
        self.sizes = [g.size for g in groups]
        self.dense_acts = fixed_acts + sum(r.out0 * r.per_channel for r in rows.values())
        none: list[list[int]] = [[] for _ in groups]
        #: What the rows leave out of the measured dense latency (never below 0).
        self.rest_ms = max(0.0, dense_ms - self.predict(none))
        self.dense_ms = self.predict(none)

    def predict(self, pruned: Sequence[Sequence[int]]) -> float:
        removed = removed_widths(self.tables, pruned)
        layers, acts = 0.0, self.fixed_acts
        for name, row in self.rows.items():
            kept_out = row.out0 - removed.get((name, "out"), 0)
            kept_in = row.in0 - removed.get((name, "in"), 0)
            layers += row.at(kept_out, kept_in, self.multiple)
            acts += (min(kept_out, kept_in) if row.one_width else kept_out) * row.per_channel
        return layers + self.rest_ms * acts / max(self.dense_acts, 1)

    def removed(self, pruned: Sequence[Sequence[int]]) -> float:
        """Predicted fraction of the dense latency these units remove."""
        return 1.0 - self.predict(pruned) / self.dense_ms

    def unit_costs(self, pruned: Sequence[Sequence[int]]) -> list[float]:
        """Per group, the predicted ms one more removed unit saves, from removing a tenth of its
        alive units (at least one) on top of ``pruned``; 0 for a group with none left."""
        now = self.predict(pruned)
        costs = []
        for g, size in enumerate(self.sizes):
            gone = set(pruned[g])
            alive = [u for u in range(size) if u not in gone]
            take = alive[: max(1, len(alive) // 10)] if alive else []
            if not take:
                costs.append(0.0)
                continue
            trial = [list(p) for p in pruned]
            trial[g] = trial[g] + take
            costs.append(max(0.0, now - self.predict(trial)) / len(take))
        return costs


def build_latency_table(
    model: nn.Module,
    groups: Sequence[UnitGroup],
    *,
    example: torch.Tensor,
    dense_ms: float,
    multiple: int = 1,
) -> LatencyTable | None:
    """Time every Conv2d/Linear the groups resize at :data:`GRID` widths, on ``example``'s device
    and batch; ``None`` where a resized layer cannot be timed alone (a grouped conv that is not
    depthwise, another layer kind, a layer called twice): the search then times trial models.
    ``multiple``: the device's kernel channel multiple (:func:`~.options.kernel_multiple`)."""
    modules = dict(model.named_modules())
    resized = {site.module for g in groups for _, site in g.widths}
    shapes = _input_and_output_shapes(model, example)
    rows: dict[str, _Row] = {}
    fixed_acts = 0
    for name, module in modules.items():
        if not isinstance(module, nn.Conv2d | nn.Linear) or name not in shapes:
            if isinstance(module, nn.Conv2d | nn.Linear) and name in resized:
                return None  # resized, never (or more than once) run: no shape to time it at
            continue
        in_shape, out_shape = shapes[name]
        per_channel = _per_channel(module, out_shape)
        if name not in resized:
            fixed_acts += _out_width(module) * per_channel
            continue
        row = _time_row(module, in_shape, per_channel, example.device)
        if row is None:
            return None
        rows[name] = row
    return LatencyTable(rows, fixed_acts, groups, dense_ms, multiple)


def _input_and_output_shapes(model: nn.Module, example: torch.Tensor) -> dict[str, tuple]:
    """Input and output shape of each Conv2d/Linear run exactly once by a forward of ``example``."""
    seen: dict[str, list[tuple]] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, args, out, name=name: seen.setdefault(name, []).append((args[0].shape, out.shape))
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    ]
    try:
        with torch.inference_mode():
            model.eval()(example)
    finally:
        for h in handles:
            h.remove()
    return {name: calls[0] for name, calls in seen.items() if len(calls) == 1}


def _out_width(module: nn.Module) -> int:
    return module.out_channels if isinstance(module, nn.Conv2d) else module.out_features


def _per_channel(module: nn.Module, out_shape: torch.Size) -> int:
    """Output elements per output channel (batch included)."""
    return out_shape.numel() // max(_out_width(module), 1)


def _time_row(module: nn.Module, in_shape: torch.Size, per_channel: int, device) -> _Row | None:
    if isinstance(module, nn.Linear):
        out0, in0, depthwise = module.out_features, module.in_features, False
    else:
        out0, in0 = module.out_channels, module.in_channels
        depthwise = module.groups > 1 and module.groups == in0 == out0
        if module.groups > 1 and not depthwise:
            return None
    outs = _grid(out0)
    ins = [in0] if depthwise else _grid(in0)
    ms = []
    for out_w in outs:
        if depthwise:
            ms.append([_time(_layer_like(module, out_w, out_w), in_shape, out_w, device)])
        else:
            ms.append([_time(_layer_like(module, out_w, in_w), in_shape, in_w, device) for in_w in ins])
    return _Row(out0, in0, outs, ins, ms, per_channel, one_width=depthwise)


def _grid(width: int) -> list[int]:
    return sorted({max(1, round(share * width)) for share in GRID})


def _layer_like(module: nn.Module, out_w: int, in_w: int) -> nn.Module:
    """A fresh layer of ``module``'s kind and settings with these widths."""
    if isinstance(module, nn.Linear):
        return nn.Linear(in_w, out_w, bias=module.bias is not None)
    return nn.Conv2d(
        in_w, out_w, module.kernel_size, stride=module.stride, padding=module.padding,
        dilation=module.dilation, groups=in_w if module.groups > 1 else 1, bias=module.bias is not None,
        padding_mode=module.padding_mode,
    )  # fmt: skip


def _time(layer: nn.Module, in_shape: torch.Size, in_w: int, device) -> float:
    """Median ms of one forward of ``layer`` on a random input of ``in_shape`` with ``in_w`` channels."""
    shape = list(in_shape)
    shape[-1 if isinstance(layer, nn.Linear) else 1] = in_w
    layer = layer.to(device).eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(device)
    with torch.inference_mode():
        return statistics.median(
            time_calls(lambda: layer(x), repeats=REPEATS, warmup=1, sync=lambda: sync_device(device))
        )


def _lerp(xs: list[int], ys: list[float], x: float) -> float:
    """Piecewise-linear through (0, 0) and the points; the last segment extends past the end."""
    points = [(0, 0.0), *zip(xs, ys, strict=True)]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):  # noqa: B905 (one shorter by design)
        if x <= x1 or (x1, y1) == points[-1]:
            return y0 + (y1 - y0) * (x - x0) / max(x1 - x0, 1e-12)
    return points[-1][1]
