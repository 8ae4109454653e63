"""SNAP-it mechanics on tiny hand-built models: units, gates, scores, schedule, surgery."""

import pytest
import torch
from torch import nn

from snipit_cli.criteria import UnitScoringContext, create_criterion
from snipit_cli.criteria.snap import SnapIt
from snipit_cli.data.calibration import SyntheticData
from snipit_cli.models.slim import apply_slim, record_slim
from snipit_cli.pruning.schedule import snipit_schedule
from snipit_cli.pruning.structured.engine import prune_units
from snipit_cli.pruning.structured.gates import gates_installed
from snipit_cli.pruning.structured.groups import find_unit_groups
from snipit_cli.pruning.structured.surgery import remove_units
from snipit_cli.sync import LOCAL


class Residual(nn.Module):
    """conv -> bn -> relu -> (conv -> bn) + skip -> pool -> linear: the skip couples channels."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.branch = nn.Sequential(
            nn.Conv2d(6, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(), nn.Conv2d(5, 6, 1), nn.BatchNorm2d(6)
        )
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.branch(x))
        return self.head(x.mean((2, 3)))


def _residual(seed=0):
    torch.manual_seed(seed)
    model = Residual().eval()
    with torch.no_grad():  # non-trivial norm statistics, so gating mistakes show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


def _graph(model):
    return find_unit_groups(model, example=torch.zeros(1, 3, 8, 8), protected=[model.head])


def _index_of(unit_graph, producer: str) -> int:
    """The group that prunes ``producer``'s output channels (it may consume other groups too)."""
    consumed = {g.root: {s.module for s in g.consumers} for g in unit_graph.groups}
    return next(
        i
        for i, g in enumerate(unit_graph.groups)
        if producer == g.root or (producer in g.members and producer not in consumed[g.root])
    )


def test_residual_add_couples_stem_and_branch_output_into_one_group():
    model = _residual()
    unit_graph = _graph(model)
    assert len(unit_graph.groups) == 2
    skip = unit_graph.groups[_index_of(unit_graph, "stem.0")]
    inner = unit_graph.groups[_index_of(unit_graph, "branch.0")]
    assert {"stem.0", "stem.1", "branch.3", "branch.4", "head"} <= set(skip.members)  # tied by the add
    assert skip.size == 6 and inner.size == 5
    assert all(g.root != "head" for g in unit_graph.groups)  # the classifier's outputs are never pruned


def test_slim_equals_gated_original_and_replays_from_json():
    model = _residual()
    unit_graph = _graph(model)
    gates = [None, None]
    gates[_index_of(unit_graph, "stem.0")] = torch.tensor([1.0, 0, 1, 1, 0, 1])
    gates[_index_of(unit_graph, "branch.0")] = torch.tensor([0.0, 1, 1, 0, 1])
    dense = _residual()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), gates_installed(dense, unit_graph.groups, gates):
        gated = dense(x)
    remove_units(model, unit_graph, [torch.nonzero(g == 0).flatten().tolist() for g in gates])
    assert model.stem[0].out_channels == 4 and model.branch[0].out_channels == 3
    assert model.head.in_features == 4
    with torch.no_grad():
        torch.testing.assert_close(model(x), gated, rtol=1e-5, atol=1e-6)

    record = record_slim(model, Residual())
    rebuilt = Residual().eval()
    apply_slim(rebuilt, record)
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_snap_score_matches_hand_computation():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    unit_graph = find_unit_groups(net, example=torch.zeros(1, 2), protected=[net[2]])
    (group,) = unit_graph.groups
    batches = [
        (torch.tensor([[1.0, -2.0], [0.5, 0.3]]), torch.tensor([0, 1])),
        (torch.tensor([[2.0, 1.0]]), torch.tensor([1])),
    ]
    grad_sum, loss_sum = torch.zeros(3), 0.0
    for x, y in batches:  # z = W2 (g * h) + b2, dL/dg_j = sum_n dL/dz_n . W2[:, j] * h_nj
        with torch.no_grad():
            h = torch.relu(net[0](x))
            z = net[2](h)
        dz = (torch.softmax(z, 1) - nn.functional.one_hot(y, 2)) / len(y)
        grad_sum += ((dz @ net[2].weight) * h).sum(0)
        loss_sum += float(nn.functional.cross_entropy(z, y))
    ctx = UnitScoringContext(net, unit_graph.groups, [torch.ones(3)], batches, torch.Generator())
    with gates_installed(net, unit_graph.groups, ctx.gates):  # as the engine scores
        (scores,) = create_criterion("snap", "units").score_units(ctx)
    torch.testing.assert_close(scores, grad_sum.abs() / loss_sum)


def test_l1_scores_are_filter_norms():
    model = _residual()
    unit_graph = _graph(model)
    ctx = UnitScoringContext(
        model, unit_graph.groups, [torch.ones(g.size) for g in unit_graph.groups], [], torch.Generator()
    )
    scores = create_criterion("l1", "units").score_units(ctx)
    branch = scores[_index_of(unit_graph, "branch.0")]
    torch.testing.assert_close(branch, model.branch[0].weight.detach().abs().sum((1, 2, 3)))


class RecordingSnapIt(SnapIt):
    def __init__(self):
        self.alive = []

    def score_units(self, ctx):
        self.alive.append([g.clone() for g in ctx.gates])
        return super().score_units(ctx)


def test_snap_it_follows_the_schedule_monotonically_and_keeps_a_unit_per_group():
    model = _residual()
    unit_graph = _graph(model)
    data = SyntheticData(spec="synthetic", batch_size=4, n_batches=1, seed=0, size=(3, 8, 8), num_classes=4)
    criterion = RecordingSnapIt()
    schedule = snipit_schedule(0.8, 2)
    result = prune_units(
        model,
        groups=unit_graph.groups,
        criterion=criterion,
        batches_for_step=data.batches,
        schedule=schedule,
        n_batches=1,
        min_keep=0.0,
    )
    total = 11
    assert len(criterion.alive) == len(schedule)
    for before, after in zip(criterion.alive, criterion.alive[1:], strict=False):
        assert all(bool((a <= b).all()) for a, b in zip(after, before, strict=True))
    expected = [round(k * total) / total for k in schedule]
    assert result.achieved_per_step == pytest.approx(expected)
    assert all(int(g.sum()) >= 1 for g in result.gates)


def test_min_keep_floor_bounds_and_is_reported():
    model = _residual()
    unit_graph = _graph(model)
    data = SyntheticData(spec="synthetic", batch_size=2, n_batches=1, seed=0, size=(3, 8, 8), num_classes=4)
    result = prune_units(
        model,
        groups=unit_graph.groups,
        criterion=SnapIt(),
        batches_for_step=data.batches,
        schedule=[0.9],
        n_batches=1,
        min_keep=0.5,
    )
    assert [int(g.sum()) for g in result.gates] == [3, 3]  # ceil(0.5 * 6), ceil(0.5 * 5)
    assert result.node_sparsity == pytest.approx(5 / 11)
    assert sorted(result.at_floor) == sorted(g.root for g in unit_graph.groups)


def test_only_the_classifier_is_protected_even_when_hidden_widths_equal_the_class_count():
    from tiny_models import TinyCNN

    from snipit_cli.pruning.structured.heads import classifier_layers

    model = TinyCNN(num_classes=8, width=4)  # features.3 has 8 channels too
    protected = classifier_layers(model, torch.zeros(1, 3, 8, 8))
    assert protected == [model.head]
    roots = {
        g.root for g in find_unit_groups(model, example=torch.zeros(1, 3, 8, 8), protected=protected).groups
    }
    assert roots == {"features.0", "features.3"}


def test_round_to_keeps_multiples_of_n_channels_and_stays_exact():
    from snipit_cli.models.zoo import SmallCNN
    from snipit_cli.pruning.structured.options import StructuredOptions
    from snipit_cli.pruning.structured.slim import slim_model

    torch.manual_seed(0)
    model = SmallCNN(width=8)  # conv groups of 8, 16, 32, 32 channels and 256 fc1 neurons
    data = SyntheticData("synthetic", 4, 1, 0, size=(1, 28, 28), num_classes=10)
    criterion = create_criterion("snap", "units")
    outcome = slim_model(
        model,
        arch=None,
        criterion=criterion,
        data=data,
        schedule=[0.6],
        size=(1, 28, 28),
        options=StructuredOptions(round_to=8),
        exclude=[],
        seed=0,
    )
    kept = [int(g.sum()) for g in outcome.result.gates]
    sizes = [g.size for g in outcome.unit_graph.groups]
    assert all(k % 8 == 0 or k == s for k, s in zip(kept, sizes, strict=True)), kept
    assert sum(kept) < sum(sizes)  # it still pruned
    assert outcome.max_rel_diff <= 1e-4  # rounding brought back whole channels: slim == gated
    widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths), widths


class FixedWidths(nn.Module):
    """Five groups; the forward hard-codes the widths of ``c`` (a view) and ``e`` (slices at 4)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 5, 3, padding=1)
        self.c = nn.Conv2d(5, 6, 3, padding=1)
        self.d = nn.Linear(6 * 16, 7)
        self.e = nn.Linear(7, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        x = torch.relu(self.c(torch.relu(self.b(torch.relu(self.a(x))))))
        x = torch.relu(self.d(nn.functional.adaptive_avg_pool2d(x, 4).view(-1, 96)))
        x = torch.relu(self.e(x))
        return self.head(torch.cat([x[:, 4:], x[:, :4]], 1))  # a rotation by a fixed 4 channels


def test_trial_removals_find_exactly_the_groups_the_forward_cannot_lose_units_of():
    from snipit_cli.pruning.structured.trials import unremovable_groups

    torch.manual_seed(0)
    model = FixedWidths().eval()
    unit_graph = find_unit_groups(model, example=torch.zeros(1, 3, 8, 8), protected=[model.head])
    probe = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    found = unremovable_groups(model, unit_graph=unit_graph, probe=probe, protected=["head"])
    roots = {unit_graph.groups[i].root: reason for i, reason in found.items()}
    assert sorted(roots) == ["c", "e"]
    assert roots["c"].startswith("the forward fails: RuntimeError: shape '[-1, 96]' is invalid")
    assert roots["e"].startswith("the forward fails: RuntimeError: mat1 and mat2 shapes cannot be multiplied")
    residual = _residual()
    assert unremovable_groups(residual, unit_graph=_graph(residual), probe=probe, protected=["head"]) == {}


class FixesItsDtype(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 4)

    def forward(self, x):
        return self.a(x.float())


def test_comparisons_run_in_float64_unless_the_model_fixes_its_dtype():
    from snipit_cli.pruning.structured.trials import NATIVE_TOLERANCE, TOLERANCE, exact_arithmetic

    plain, fixed, batch = nn.Linear(4, 4), FixesItsDtype(), torch.zeros(2, 4)
    with exact_arithmetic([plain], batch) as (precise, tolerance):
        assert precise.dtype == plain.weight.dtype == torch.float64 and tolerance == TOLERANCE == 1e-6
    assert plain.weight.dtype == torch.float32  # converted back
    with exact_arithmetic([fixed], batch) as (precise, tolerance):
        assert precise.dtype == torch.float32 and tolerance == NATIVE_TOLERANCE == 1e-4
    assert fixed.a.weight.dtype == torch.float32


def test_later_steps_score_the_slim_copy_with_the_gated_originals_scores():
    from snipit_cli.pruning.structured.engine import _scores
    from snipit_cli.pruning.structured.trials import slim_view

    model = _residual()
    unit_graph = _graph(model)
    gates = [torch.ones(g.size) for g in unit_graph.groups]
    gates[_index_of(unit_graph, "stem.0")][[1, 4]] = 0.0
    gates[_index_of(unit_graph, "branch.0")][[0, 3]] = 0.0
    view = slim_view(model, unit_graph, example=torch.zeros(1, 3, 8, 8), protected=["head"], exclude=())(
        gates
    )
    assert (
        view is not None and view.model.stem[0].out_channels == 4 and view.model.branch[0].out_channels == 3
    )
    assert model.stem[0].out_channels == 6  # the original is untouched
    data = SyntheticData("synthetic", 4, 2, 0, size=(3, 8, 8), num_classes=4)
    criterion = create_criterion("snap-it", "units")

    def scores(on_view):
        return _scores(criterion, model, unit_graph.groups, gates, on_view, data.batches(0),
                       torch.Generator(), LOCAL)  # fmt: skip

    gated, slim = scores(None), scores(view)
    for g, s, gate in zip(gated, slim, gates, strict=True):
        alive = gate.bool()
        torch.testing.assert_close(s[alive], g[alive], rtol=1e-5, atol=0)  # the same network, re-cut
        assert (s[~alive] == 0).all()


def test_a_copy_the_models_code_cannot_run_at_its_width_gives_no_slim_view():
    from snipit_cli.pruning.structured.trials import slim_view

    class FixedWidth(Residual):
        def forward(self, x):
            x = self.stem(x)
            assert x.shape[1] == 6, "this code needs 6 channels"
            return self.head(torch.relu(x + self.branch(x)).mean((2, 3)))

    torch.manual_seed(0)
    model = FixedWidth().eval()
    unit_graph = _graph(model)
    gates = [torch.ones(g.size) for g in unit_graph.groups]
    gates[_index_of(unit_graph, "stem.0")][0] = 0.0
    assert (
        slim_view(model, unit_graph, example=torch.zeros(1, 3, 8, 8), protected=["head"], exclude=())(gates)
        is None
    )
