"""GraSP scores against theta * Hg built from the full Hessian of a tiny Linear-ReLU-Linear net."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from snipit_cli.criteria import ScoringContext, create_criterion, get_criterion
from snipit_cli.errors import NumericsError
from snipit_cli.pruning.engine import prune
from snipit_cli.pruning.schedule import schedule_for

T = 200.0  # the authors' temperature, restated here so a change in the module is caught


def _net():
    """Linear(3,4) -> ReLU -> Linear(4,2) in float64 with fixed, mixed-sign weights."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        net[0].weight.copy_(
            torch.tensor([[1.0, -2.0, 0.5], [0.3, 1.5, -1.0], [-0.7, 0.2, 2.0], [1.2, 0.4, 0.9]])
        )
        net[2].weight.copy_(torch.tensor([[2.0, -1.0, 0.5, 1.5], [-1.5, 0.8, 1.0, -0.6]]))
    return net


def _batches():
    return [
        (torch.tensor([[1.0, 2.0, -1.0], [0.5, -0.3, 1.2]], dtype=torch.float64), torch.tensor([0, 1])),
        (torch.tensor([[-0.4, 1.1, 0.7]], dtype=torch.float64), torch.tensor([1])),
    ]


def _weights(net):
    return {"0": net[0].weight, "2": net[2].weight}


def _hand_theta_hg(net, batches):
    """theta * H g with g = sum_b dL_b/dtheta and H = sum_b Hessian of L_b, over the flat weights."""
    names = ["0.weight", "2.weight"]
    shapes = [net.get_parameter(n).shape for n in names]
    sizes = [s.numel() for s in shapes]
    theta = torch.cat([net.get_parameter(n).detach().flatten() for n in names])

    def loss(flat):
        params = {n: p.view(s) for n, p, s in zip(names, flat.split(sizes), shapes, strict=True)}
        return sum(F.cross_entropy(functional_call(net, params, (x,)) / T, y) for x, y in batches)

    g = torch.func.grad(loss)(theta)
    hessian = torch.autograd.functional.hessian(loss, theta)
    flat = theta * (hessian @ g)
    return {n[0]: p.view(s) for n, p, s in zip(names, flat.split(sizes), shapes, strict=True)}


def _score(net, batches):
    return create_criterion("grasp").score(ScoringContext(net, _weights(net), batches, torch.Generator()))


def test_scores_are_theta_times_hessian_gradient_product():
    net, batches = _net(), _batches()
    expected = _hand_theta_hg(net, batches)
    assert all(e.abs().max() > 1e-12 for e in expected.values()), "the reference must be nontrivial"
    scores = _score(net, batches)
    for name in expected:
        torch.testing.assert_close(scores[name], expected[name], rtol=1e-9, atol=1e-18)


def test_weights_the_paper_removes_first_are_pruned_first():
    net, batches = _net(), _batches()
    paper_score = _hand_theta_hg(net, batches)  # S = -theta Hg: the paper removes the highest S
    flat_s = -torch.cat([s.flatten() for s in paper_score.values()])
    n_remove = 5
    removed_by_paper = set(torch.topk(flat_s, n_remove).indices.tolist())
    criterion = create_criterion("grasp")
    weights = _weights(net)
    total = sum(w.numel() for w in weights.values())
    prune(
        net,
        weights=weights,
        criterion=criterion,
        batches_for_step=lambda step: batches,
        schedule=schedule_for(criterion, n_remove / total),
        n_batches=2,
    )
    flat_w = torch.cat([w.detach().flatten() for w in weights.values()])
    assert set(torch.nonzero(flat_w == 0).flatten().tolist()) == removed_by_paper


def test_reads_a_one_shot_iterator_once_and_restores_the_model():
    net, batches = _net(), _batches()
    net.train()
    net[0].bias.requires_grad_(False)
    from_list = _score(net, batches)
    from_iterator = _score(net, iter(batches))
    for name in from_list:
        torch.testing.assert_close(from_iterator[name], from_list[name])
    assert net.training
    assert [p.requires_grad for p in net.parameters()] == [True, False, True, True]
    assert all(p.grad is None for p in net.parameters())


def test_nan_loss_and_no_batches_are_numerics_errors():
    net = _net()
    bad = [(torch.tensor([[float("nan"), 0.0, 1.0]], dtype=torch.float64), torch.tensor([0]))]
    with pytest.raises(NumericsError, match="batch 1"):
        _score(net, bad)
    with pytest.raises(NumericsError, match="no calibration batch"):
        _score(net, [])


def test_registered_as_one_shot_and_data_hungry():
    cls = get_criterion("grasp")
    assert not cls.iterative and cls.needs_data
    assert schedule_for(cls(), 0.8) == [0.8]
