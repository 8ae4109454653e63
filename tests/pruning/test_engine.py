import pytest
import torch
from tiny_models import TinyCNN

from snipit_cli.criteria import ScoringContext
from snipit_cli.criteria.snip import SnipIt
from snipit_cli.data.calibration import SyntheticData
from snipit_cli.pruning.engine import prune
from snipit_cli.pruning.schedule import schedule_for
from snipit_cli.pruning.targets import prunable_weights


def _setup(seed=0, exclude=()):
    torch.manual_seed(seed)
    model = TinyCNN(num_classes=5)
    data = SyntheticData(
        spec="synthetic", batch_size=4, n_batches=2, seed=seed, size=(3, 8, 8), num_classes=5
    )
    return model, data, prunable_weights(model, exclude)


class RecordingSnipIt(SnipIt):
    """SNIP-it that records which weights are alive whenever it is asked to score."""

    def __init__(self):
        self.alive_at_scoring = []

    def score(self, ctx: ScoringContext):
        self.alive_at_scoring.append({n: (w != 0).clone() for n, w in ctx.weights.items()})
        return super().score(ctx)


@pytest.mark.parametrize("sparsity", [0.3, 0.5, 0.9, 0.98])
def test_achieved_sparsity_is_exact(sparsity):
    model, data, weights = _setup()
    criterion = SnipIt()
    result = prune(
        model,
        weights=weights,
        criterion=criterion,
        batches_for_step=data.batches,
        schedule=schedule_for(criterion, sparsity, 3),
        n_batches=data.n_batches,
    )
    total = sum(w.numel() for w in weights.values())
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    assert zeros == round(sparsity * total)
    assert result.achieved_sparsity == pytest.approx(zeros / total, abs=0)


def test_snipit_rescores_the_masked_network_and_masks_are_monotone():
    model, data, weights = _setup()
    criterion = RecordingSnipIt()
    schedule = schedule_for(criterion, 0.9, 3)
    result = prune(
        model,
        weights=weights,
        criterion=criterion,
        batches_for_step=data.batches,
        schedule=schedule,
        n_batches=data.n_batches,
    )
    seen = criterion.alive_at_scoring
    assert len(seen) == len(schedule) == 5
    total = sum(w.numel() for w in weights.values())
    for step in range(1, len(seen)):
        for name in seen[step]:
            assert not (seen[step][name] & ~seen[step - 1][name]).any(), "a pruned weight came back"
        alive = sum(int(m.sum()) for m in seen[step].values())
        assert alive == total - round(schedule[step - 1] * total)
    assert result.kept_per_step == [total - round(f * total) for f in schedule]


def test_excluded_layers_stay_dense():
    model, data, weights = _setup(exclude=["head"])
    assert "head" not in weights
    criterion = SnipIt()
    prune(
        model,
        weights=weights,
        criterion=criterion,
        batches_for_step=data.batches,
        schedule=schedule_for(criterion, 0.8, 2),
        n_batches=data.n_batches,
    )
    assert bool((model.head.weight != 0).all())


def test_same_seed_same_masks_other_seed_other_masks():
    def run(data_seed):
        torch.manual_seed(0)
        model = TinyCNN(num_classes=5)
        data = SyntheticData(
            spec="synthetic", batch_size=4, n_batches=2, seed=data_seed, size=(3, 8, 8), num_classes=5
        )
        weights = prunable_weights(model)
        crit = SnipIt()
        return prune(
            model,
            weights=weights,
            criterion=crit,
            batches_for_step=data.batches,
            schedule=schedule_for(crit, 0.7, 2),
            n_batches=data.n_batches,
        ).masks

    first, again, other = run(1), run(1), run(2)
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert any(not torch.equal(first[n], other[n]) for n in first)


def test_data_free_criteria_read_no_batches():
    from snipit_cli.criteria.magnitude import Magnitude

    model, _, weights = _setup()

    def no_batches(step):
        raise AssertionError("magnitude must not read calibration data")

    result = prune(
        model,
        weights=weights,
        criterion=Magnitude(),
        batches_for_step=no_batches,
        schedule=[0.5],
        n_batches=2,
    )
    assert result.achieved_sparsity == pytest.approx(0.5, abs=1 / 500)


def test_restores_requires_grad_and_training_mode():
    model, data, weights = _setup()
    model.features[1].weight.requires_grad_(False)
    model.train()
    crit = SnipIt()
    prune(
        model,
        weights=weights,
        criterion=crit,
        batches_for_step=data.batches,
        schedule=[0.5],
        n_batches=data.n_batches,
    )
    assert model.training
    assert not model.features[1].weight.requires_grad
    assert model.features[4].weight.requires_grad
