"""SNIP scores against hand-computed |w * sum_b dL/dw| on a two-layer linear net."""

import pytest
import torch
from torch import nn

from snipit_cli.criteria import ScoringContext, create_criterion
from snipit_cli.errors import NumericsError


def _two_layer():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [0.5, 3.0]]))
        net[1].weight.copy_(torch.tensor([[2.0, 1.0], [-1.0, 0.5]]))
    return net


def _hand_grads(w1, w2, x, y):
    """Closed form for CE(W2 W1 x): dz = softmax(z) - onehot(y), averaged over the batch."""
    h = x @ w1.T
    z = h @ w2.T
    dz = (torch.softmax(z, dim=1) - torch.nn.functional.one_hot(y, 2)) / len(y)
    return (w2.T @ dz.T) @ x, dz.T @ h  # dL/dW1, dL/dW2


def test_snip_scores_match_hand_computation():
    net = _two_layer()
    batches = [
        (torch.tensor([[1.0, 2.0], [0.0, -1.0]]), torch.tensor([0, 1])),
        (torch.tensor([[0.5, 0.5]]), torch.tensor([1])),
    ]
    w1, w2 = net[0].weight.detach().clone(), net[1].weight.detach().clone()
    g1 = sum(_hand_grads(w1, w2, x, y)[0] for x, y in batches)
    g2 = sum(_hand_grads(w1, w2, x, y)[1] for x, y in batches)
    weights = {"0": net[0].weight, "1": net[1].weight}
    ctx = ScoringContext(net, weights, batches, torch.Generator())
    scores = create_criterion("snip").score(ctx)
    torch.testing.assert_close(scores["0"], (w1 * g1).abs())
    torch.testing.assert_close(scores["1"], (w2 * g2).abs())


def test_nan_loss_names_the_batch():
    net = _two_layer()
    weights = {"0": net[0].weight, "1": net[1].weight}
    batches = [
        (torch.tensor([[1.0, 2.0]]), torch.tensor([0])),
        (torch.tensor([[float("nan"), 0.0]]), torch.tensor([0])),
    ]
    with pytest.raises(NumericsError, match="batch 2"):
        create_criterion("snip").score(ScoringContext(net, weights, batches, torch.Generator()))


def test_magnitude_is_abs_weight_and_random_is_seeded():
    net = _two_layer()
    weights = {"0": net[0].weight, "1": net[1].weight}
    mag = create_criterion("magnitude").score(ScoringContext(net, weights, [], torch.Generator()))
    torch.testing.assert_close(mag["0"], net[0].weight.detach().abs())

    def rand(seed):
        ctx = ScoringContext(net, weights, [], torch.Generator().manual_seed(seed))
        return create_criterion("random").score(ctx)

    assert torch.equal(rand(3)["1"], rand(3)["1"])
    assert not torch.equal(rand(3)["1"], rand(4)["1"])
