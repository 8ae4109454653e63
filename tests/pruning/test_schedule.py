import pytest

from snipit_cli.criteria import get_criterion
from snipit_cli.errors import UsageError
from snipit_cli.pruning.schedule import (
    count_to_prune,
    exponential_schedule,
    one_shot_schedule,
    schedule_for,
    snipit_schedule,
)


def test_paper_schedule_for_high_sparsity():
    # k_i = 0.9 - 0.4 * 0.5**i for i = 0..5, then the limit (the paper's code).
    assert snipit_schedule(0.9, 5) == pytest.approx([0.5, 0.7, 0.8, 0.85, 0.875, 0.8875, 0.9], abs=1e-12)


def test_schedule_starts_at_0_2_for_limits_up_to_one_half():
    assert snipit_schedule(0.4, 2) == pytest.approx([0.2, 0.3, 0.35, 0.4], abs=1e-12)


def test_schedule_starts_lower_than_small_limits_and_only_grows():
    schedule = snipit_schedule(0.1, 3)
    assert schedule == pytest.approx([0.05, 0.075, 0.0875, 0.09375, 0.1], abs=1e-12)
    assert schedule == sorted(schedule)


def test_zero_steps_is_lower_then_limit():
    assert snipit_schedule(0.99, 0) == pytest.approx([0.5, 0.99])


def test_one_shot_is_the_limit():
    assert one_shot_schedule(0.95) == [0.95]


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_sparsity_outside_open_interval_is_a_usage_error(bad):
    with pytest.raises(UsageError, match="--sparsity"):
        snipit_schedule(bad)


def test_negative_steps_rejected():
    with pytest.raises(UsageError, match="--steps"):
        snipit_schedule(0.9, -1)


def test_count_to_prune_rounds_to_nearest_weight():
    assert count_to_prune(0.9, 11172032) == 10054829
    assert count_to_prune(0.5, 3) == 2
    assert count_to_prune(0.1, 5) == 0


@pytest.mark.parametrize(
    ("method", "level", "expected"),
    [
        ("snip", "weights", [0.9]),
        ("snip-it", "weights", snipit_schedule(0.9, 5)),
        ("synflow", "weights", exponential_schedule(0.9, 100)),
        ("snap", "units", [0.9]),
        ("snap-it", "units", snipit_schedule(0.9, 5)),
    ],
)
def test_schedule_for_computes_the_declared_family_with_its_default_rounds(method, level, expected):
    criterion = get_criterion(method, level)()
    assert schedule_for(criterion, 0.9) == expected
    assert criterion.iterative == (len(expected) > 1)  # derived from the family, never declared apart


def test_schedule_for_passes_steps_to_iterative_families_only():
    assert schedule_for(get_criterion("snip-it")(), 0.9, 2) == snipit_schedule(0.9, 2)
    assert len(schedule_for(get_criterion("synflow")(), 0.9, 7)) == 7
    assert schedule_for(get_criterion("magnitude")(), 0.9, 7) == [0.9]
