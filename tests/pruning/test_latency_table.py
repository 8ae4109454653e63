"""The latency table behind --target latency, and how the search uses a guide."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from snipit_cli.criteria.snap import SnapIt
from snipit_cli.data.calibration import SyntheticData
from snipit_cli.pruning.structured import latency_table
from snipit_cli.pruning.structured.engine import GuidedMeasure, prune_units, smallest_reaching
from snipit_cli.pruning.structured.groups import find_unit_groups
from snipit_cli.pruning.structured.latency_table import _lerp, build_latency_table


class Net(nn.Module):
    """A plain conv, a depthwise conv, a pointwise conv and a head: two groups, one depthwise."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 12, 1)
        self.head = nn.Linear(12, 4)

    def forward(self, x):
        x = torch.relu(self.pw(torch.relu(self.dw(torch.relu(self.stem(x))))))
        return self.head(x.mean((2, 3)))


def _table(monkeypatch, model, example, dense_ms=100.0):
    """A table whose 'timings' are each layer's MACs / 1e3: deterministic, and what a kernel that
    runs at one speed whatever the width would take."""

    def fake_time(layer, in_shape, in_w, device):
        shape = list(in_shape)
        shape[1] = in_w
        out = layer(torch.zeros(shape))
        per_out = layer.weight[0].numel()
        return out.numel() * per_out / 1e3

    monkeypatch.setattr(latency_table, "_time", fake_time)
    graph = find_unit_groups(model, example=example, protected=[model.head])
    return graph, build_latency_table(model, graph.groups, example=example, dense_ms=dense_ms)


def test_the_table_reads_the_dense_model_as_measured_and_shrinks_with_its_widths(monkeypatch):
    torch.manual_seed(0)
    model, example = Net().eval(), torch.zeros(1, 3, 8, 8)
    graph, table = _table(monkeypatch, model, example)
    assert set(table.rows) == {"stem", "dw", "pw", "head"}  # the head's inputs are resized
    stem, dw, pw = table.rows["stem"], table.rows["dw"], table.rows["pw"]
    assert stem.outs == [2, 4, 6, 8] and stem.ins == [1, 2, 3] and dw.one_width and dw.ins == [8]
    # the dense sum plus what the rows leave out is the measured dense latency
    assert table.dense_ms == pytest.approx(100.0)
    layers = sum(r.ms[-1][-1] for r in table.rows.values())
    assert table.rest_ms == pytest.approx(100.0 - layers)
    none = [[] for _ in graph.groups]
    assert table.removed(none) == pytest.approx(0.0)
    # at grid widths the table is the timing itself: half of stem's outputs (and dw's, pw's inputs)
    g = next(
        i for i, grp in enumerate(graph.groups) if ("out", "stem") in {(w, x.module) for w, x in grp.widths}
    )
    half = [list(range(4)) if i == g else [] for i in range(len(graph.groups))]
    head = table.rows["head"]
    expected_layers = stem.ms[1][-1] + dw.ms[1][0] + pw.ms[-1][pw.ins.index(4)] + head.ms[-1][-1]
    acts = table.fixed_acts + 4 * (stem.per_channel + dw.per_channel + head.per_channel) + 12 * pw.per_channel
    assert table.predict(half) == pytest.approx(expected_layers + table.rest_ms * acts / table.dense_acts)
    costs = table.unit_costs(none)
    assert all(c > 0 for c in costs)
    assert table.removed(half) > 0


def test_lerp_is_exact_at_the_points_linear_between_and_through_zero():
    xs, ys = [2, 4, 8], [1.0, 3.0, 5.0]
    assert [_lerp(xs, ys, x) for x in xs] == ys
    assert _lerp(xs, ys, 3) == 2.0 and _lerp(xs, ys, 6) == 4.0
    assert _lerp(xs, ys, 1) == 0.5  # (0, 0) to the first point
    assert _lerp(xs, ys, 10) == 6.0  # the last segment extended


def test_a_grouped_conv_that_is_not_depthwise_gives_no_table():
    class Grouped(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 3, padding=1)
            self.b = nn.Conv2d(8, 8, 3, padding=1, groups=2)
            self.head = nn.Linear(8, 2)

        def forward(self, x):
            return self.head(self.b(torch.relu(self.a(x))).mean((2, 3)))

    model, example = Grouped().eval(), torch.zeros(1, 3, 8, 8)
    graph = find_unit_groups(model, example=example, protected=[model.head])
    assert build_latency_table(model, graph.groups, example=example, dense_ms=1.0) is None


class _Guide:
    """Removed fraction = units out / all units (what a table of one cost per unit predicts),
    with group 1's units costing twice group 0's."""

    def __init__(self, sizes):
        self.sizes = sizes

    def removed(self, pruned):
        return sum(len(p) for p in pruned) / sum(self.sizes)

    def unit_costs(self, pruned):
        return [1.0, 2.0][: len(self.sizes)] + [1.0] * (len(self.sizes) - 2)


def test_with_unit_costs_the_least_score_per_cost_goes_first():
    from snipit_cli.pruning.structured.engine import _removal_order

    scores = [torch.tensor([1.0, 2.0]), torch.tensor([1.5, 3.0])]
    gates = [torch.ones(2), torch.ones(2)]
    plain = _removal_order(scores, gates, [0, 0], [None, None])
    assert plain == [(0, 0), (1, 0), (0, 1), (1, 1)]
    # group 1's units save twice as much: per unit of cost they score 0.75 and 1.5
    assert _removal_order(scores, gates, [0, 0], [None, None], [1.0, 2.0]) == [(1, 0), (0, 0), (1, 1), (0, 1)]
    # a group whose units save nothing goes last
    assert _removal_order(scores, gates, [0, 0], [None, None], [0.0, 2.0])[-2:] == [(0, 0), (0, 1)]


def test_the_guided_search_times_trials_only_at_the_last_step():
    torch.manual_seed(0)
    model = Net().eval()
    unit_graph = find_unit_groups(model, example=torch.zeros(1, 3, 8, 8), protected=[model.head])
    sizes = [g.size for g in unit_graph.groups]
    data = SyntheticData(spec="synthetic", batch_size=4, n_batches=1, seed=0, size=(3, 8, 8), num_classes=4)
    exact_calls = []

    def exact(pruned):  # the trial models' figure: the guide's, a little lower
        exact_calls.append([list(p) for p in pruned])
        return 0.9 * sum(len(p) for p in pruned) / sum(sizes)

    schedule = [0.3, 0.5, 0.6]
    result = prune_units(
        model, groups=unit_graph.groups, criterion=SnapIt(), batches_for_step=data.batches,
        schedule=schedule, n_batches=1, min_keep=0.0, measure=GuidedMeasure(exact, _Guide(sizes)),
    )  # fmt: skip
    out = sum(len(p) for p in result.pruned)
    # steps before the last: the guide's figures (units out / all) reach their fractions exactly
    assert result.achieved_per_step[:2] == [pytest.approx(k, abs=1 / sum(sizes)) for k in schedule[:2]]
    # the last step: the fewest units whose exact figure reaches 0.6, in a handful of trials
    assert result.achieved_per_step[-1] >= 0.6 > 0.9 * (out - 1) / sum(sizes)
    assert 1 <= len(exact_calls) <= 5


def test_a_first_guess_keeps_the_answer_and_saves_calls():
    calls = []

    def amount(n: int) -> float:
        calls.append(n)
        return n / 1000

    assert smallest_reaching(amount, 1000, 0.4275, start=0.0, first=428) == 428
    assert calls == [428, 427]  # the guess, and the one below it
    calls.clear()
    assert smallest_reaching(amount, 1000, 0.4275, first=300) == 428  # a poor guess still finds it


def test_within_stops_at_a_close_bracket_and_returns_an_end_that_reaches():
    values = [(n // 50) * 50 / 1000 for n in range(1001)]  # steps, as latency has at kernel widths
    calls = []

    def amount(n: int) -> float:
        calls.append(n)
        return values[n]

    exact = smallest_reaching(amount, 1000, 0.6123)
    exact_calls = len(calls)
    calls.clear()
    near = smallest_reaching(amount, 1000, 0.6123, within=10)
    assert exact == 650 and exact <= near <= exact + 10 and values[near] >= 0.6123
    assert len(calls) < exact_calls
