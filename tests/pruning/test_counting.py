"""The width count of params and MACs equals a real removal on a copy, or declines to count."""

import random

import pytest
import torch
from torch import nn

from snipit_cli.metrics.macs import count_macs
from snipit_cli.models.arch import build_model, parse_arch
from snipit_cli.pruning.structured.counting import width_counter
from snipit_cli.pruning.structured.groups import find_unit_groups
from snipit_cli.pruning.structured.heads import classifier_layers
from snipit_cli.pruning.structured.measure import _checked, removal_measure
from snipit_cli.pruning.structured.surgery import remove_units
from snipit_cli.pruning.structured.trials import graph_copy

SIZE = (3, 32, 32)
#: Plain chains, residual adds, depthwise + squeeze-excite, concatenations, grouped convs,
#: torchvision's own code.
ARCHS = [
    "timm:resnet18",
    "timm:mobilenetv3_small_100",
    "timm:densenet121",
    "timm:regnety_002",
    "torchvision:mobilenet_v2",
    "torchvision:resnext50_32x4d",
]


def _traced(model: nn.Module, size=SIZE):
    example = torch.zeros(1, *size)
    return find_unit_groups(model.eval(), example=example, protected=classifier_layers(model, example))


def _removed_on_a_copy(model, unit_graph, pruned, target, size=SIZE) -> int:
    trial, trial_graph = graph_copy(model, unit_graph)
    remove_units(trial, trial_graph, pruned)
    return count_macs(trial.eval(), size) if target == "macs" else sum(p.numel() for p in trial.parameters())


def _random_selection(groups, rng):
    return [sorted(rng.sample(range(g.size), int(g.size * rng.uniform(0, 0.7)))) for g in groups]


@pytest.mark.parametrize("spec", ARCHS)
def test_the_width_count_equals_the_count_of_the_slim_copy(spec):
    torch.manual_seed(0)
    model = build_model(parse_arch(spec, num_classes=10)).eval()
    unit_graph = _traced(model)
    rng = random.Random(spec)
    selections = [
        [[] for _ in unit_graph.groups],
        *(_random_selection(unit_graph.groups, rng) for _ in range(2)),
    ]
    for target in ("macs", "params"):
        counter = width_counter(model, unit_graph.groups, target=target, input_size=SIZE)
        assert counter is not None, target
        for pruned in selections:
            assert counter(pruned) == _removed_on_a_copy(model, unit_graph, pruned, target), (target, pruned)


class Attention(nn.Module):
    """A matmul in forward, outside any Conv/Linear: its MACs do not follow module widths."""

    def __init__(self):
        super().__init__()
        self.conv, self.mix, self.head = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1), nn.Linear(4, 2)

    def forward(self, x):
        pooled = self.mix(self.conv(x)).mean((2, 3))
        return self.head(pooled) + torch.mm(pooled, pooled.t().detach()).mean(1, keepdim=True)


class FreeScale(nn.Module):
    """A free parameter sliced with the channels (ConvNeXt's layer scale)."""

    def __init__(self):
        super().__init__()
        self.conv, self.scale, self.head = nn.Conv2d(3, 6, 3), nn.Parameter(torch.ones(6)), nn.Linear(6, 2)

    def forward(self, x):
        return self.head((self.conv(x) * self.scale.view(1, -1, 1, 1)).mean((2, 3)))


def test_a_matmul_outside_the_layers_or_a_free_parameter_is_not_counted_by_width():
    attention = Attention()
    graph = _traced(attention, (3, 4, 4))
    assert (
        graph.groups and width_counter(attention, graph.groups, target="macs", input_size=(3, 4, 4)) is None
    )
    free = FreeScale()
    graph = _traced(free, (3, 8, 8))
    assert graph.groups and width_counter(free, graph.groups, target="params", input_size=(3, 8, 8)) is None


def test_the_measure_counts_on_copies_where_widths_cannot_and_agrees_with_them():
    attention = Attention()
    size = (3, 4, 4)
    graph = _traced(attention, size)
    measure = removal_measure(attention, target="macs", example=torch.zeros(1, *size), unit_graph=graph)
    pruned = [[0, 1] if g.size > 2 else [] for g in graph.groups]
    dense = count_macs(attention, size)
    assert measure(pruned) == pytest.approx(
        1 - _removed_on_a_copy(attention, graph, pruned, "macs", size) / dense
    )
    assert measure(pruned) > 0


def test_a_shortcut_is_used_only_after_its_first_answer_matched():
    calls = []

    def reference(pruned):
        calls.append(pruned)
        return len(pruned)

    assert _checked(None, reference) is reference
    good = _checked(lambda p: len(p), reference)
    assert [good("ab"), good("abc"), good("abcd")] == [2, 3, 4] and calls == ["ab"]
    calls.clear()
    wrong = _checked(lambda p: 0, reference)
    assert [wrong("ab"), wrong("abc")] == [2, 3] and calls == ["ab", "abc"]
