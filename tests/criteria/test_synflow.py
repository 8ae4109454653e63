"""SynFlow scores against the closed form of R = 1^T |W2| |W1| 1, its schedule, and its side effects."""

import pytest
import torch
from tiny_models import TinyCNN, TinyMLP
from torch import nn

from snipit_cli.criteria import ScoringContext, create_criterion, get_criterion
from snipit_cli.errors import NumericsError, UsageError
from snipit_cli.pruning.engine import prune
from snipit_cli.pruning.schedule import schedule_for
from snipit_cli.pruning.targets import prunable_weights


def _score(model, weights, input_size):
    ctx = ScoringContext(model, weights, [], torch.Generator(), input_size)
    return create_criterion("synflow").score(ctx)


def _chain(w1, w2):
    net = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(w1)
        net[2].weight.copy_(w2)
    return net


def test_scores_match_the_closed_form_of_the_linear_chain():
    w1 = torch.tensor([[1.0, -2.0], [0.0, 3.0], [-0.5, 4.0]])  # one pruned (zero) weight
    w2 = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 0.25, 1.0]])
    net = _chain(w1, w2)
    scores = _score(net, {"0": net[0].weight, "2": net[2].weight}, (2,))
    # R = 1^T |W2| |W1| 1, so dR/d|W1|[i, j] = (1^T |W2|)_i and dR/d|W2|[k, i] = (|W1| 1)_i.
    assert torch.equal(scores["0"], w1.abs() * w2.abs().sum(0)[:, None])
    assert torch.equal(scores["2"], w2.abs() * w1.abs().sum(1)[None, :])
    assert scores["0"][1, 0] == 0 and scores["0"].dtype == torch.float32


def test_batchnorm_runs_in_eval_mode_with_absolute_statistics():
    """Linear -> BN1d -> ReLU: BN1d on one sample fails in train mode, and |running_mean| matters."""
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2, eps=0.0), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        net[1].running_mean.copy_(torch.tensor([-10.0, 1.0]))
        net[1].running_var.copy_(torch.tensor([4.0, 1.0]))
        net[1].weight.copy_(torch.tensor([-1.0, 2.0]))
        net[1].bias.copy_(torch.tensor([-0.5, 1.0]))
    net.train()
    scores = _score(net, {"0": net[0].weight}, (2,))
    # Channel 0: 3 - |-10| < 0 is cut by the ReLU. Channel 1: dR/dW[1, j] = |gamma| / sqrt(var) = 2.
    expected = torch.tensor([[0.0, 0.0], [6.0, 1.0]])
    assert torch.equal(scores["0"], expected)
    assert net.training


def test_callers_model_is_left_as_it_was():
    torch.manual_seed(0)
    model = TinyCNN(num_classes=5)
    model.train()
    model.head.bias.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    weights = prunable_weights(model)
    scores = _score(model, weights, (3, 8, 8))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # BN buffers too
    assert all(p.dtype == torch.float32 and p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert model.training
    for name, w in weights.items():
        assert scores[name].shape == w.shape and scores[name].dtype == torch.float32
        assert torch.isfinite(scores[name]).all() and scores[name].any()


def test_schedule_is_exponential_in_density():
    criterion = create_criterion("synflow")
    fractions = schedule_for(criterion, 0.9)
    assert len(fractions) == 100 and fractions[-1] == 0.9
    assert all(a < b for a, b in zip(fractions, fractions[1:], strict=False))
    for k in (1, 37, 99):
        assert 1 - fractions[k - 1] == pytest.approx(0.1 ** (k / 100), rel=1e-9)
    assert len(schedule_for(criterion, 0.5, 10)) == 10


@pytest.mark.parametrize("sparsity", [0.5, 0.95])
def test_prune_reaches_the_exact_sparsity(sparsity):
    torch.manual_seed(0)
    model = TinyMLP()
    weights = prunable_weights(model)
    criterion = create_criterion("synflow")
    schedule = schedule_for(criterion, sparsity)
    result = prune(
        model,
        weights=weights,
        criterion=criterion,
        batches_for_step=lambda step: (),
        schedule=schedule,
        n_batches=0,
        input_size=(1, 4, 4),
    )
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(sparsity * total)
    assert len(result.kept_per_step) == 100


def test_missing_input_size_is_a_usage_error():
    net = _chain(torch.ones(3, 2), torch.ones(2, 3))
    with pytest.raises(UsageError, match="--input-size C,H,W"):
        _score(net, {"0": net[0].weight}, None)


def test_float32_overflow_is_rescaled_but_float64_overflow_is_an_error():
    big = _chain(torch.tensor([[1e30, 2e30], [3e30, 1e30], [1e30, 1e30]]), torch.full((2, 3), 1e30))
    scores = _score(big, {"0": big[0].weight, "2": big[2].weight}, (2,))
    assert all(torch.isfinite(s).all() for s in scores.values())
    assert scores["0"].argmax() == 2  # |W1|[1, 0] = 3e30 carries the most flow, as unscaled
    deep = nn.Sequential(*(nn.Linear(1, 1, bias=False) for _ in range(9)))  # (3e38)^9 > 1e308
    for layer in deep:
        nn.init.constant_(layer.weight, 3e38)
    with pytest.raises(NumericsError, match="even in float64"):
        _score(deep, {"0": deep[0].weight}, (1,))


def test_registered_as_data_free_and_iterative():
    cls = get_criterion("synflow")
    assert cls.iterative and not cls.needs_data
