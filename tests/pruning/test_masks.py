import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from snipit_cli.errors import NumericsError
from snipit_cli.pruning.masks import (
    FloorError,
    Ranking,
    apply_masks,
    compute_masks,
    count_kept,
    full_masks,
    silent_layers,
    zero_dropped,
)


def _scores():
    return {"a": torch.tensor([[0.1, 0.9], [0.5, 0.3]]), "b": torch.tensor([0.7, 0.2, 0.8])}


def test_keeps_global_top_k():
    masks = compute_masks(_scores(), full_masks(_scores()), keep=3)
    assert masks["a"].tolist() == [[False, True], [False, False]]
    assert masks["b"].tolist() == [True, False, True]


def test_pruned_weights_stay_pruned_even_with_high_scores():
    current = {"a": torch.tensor([[True, False], [True, True]]), "b": torch.ones(3, dtype=torch.bool)}
    masks = compute_masks(_scores(), current, keep=3)
    assert not masks["a"][0, 1]  # score 0.9 but already pruned
    assert count_kept(masks) == 3
    assert all((masks[n] & ~current[n]).sum() == 0 for n in masks)


def test_ties_go_to_the_earlier_position():
    scores = {"a": torch.ones(4), "b": torch.ones(4)}
    masks = compute_masks(scores, full_masks(scores), keep=5)
    assert masks["a"].tolist() == [True] * 4
    assert masks["b"].tolist() == [True, False, False, False]


@pytest.mark.parametrize("keep", [0, 1, 7, 100, 1000])
def test_exact_count_kept(keep):
    g = torch.Generator().manual_seed(0)
    scores = {"x": torch.rand(10, 50, generator=g).round(decimals=1), "y": torch.rand(500, generator=g)}
    masks = compute_masks(scores, full_masks(scores), keep=keep)
    assert count_kept(masks) == keep


def test_keeping_more_than_alive_is_an_error():
    scores = _scores()
    current = {"a": torch.zeros(2, 2, dtype=torch.bool), "b": torch.ones(3, dtype=torch.bool)}
    with pytest.raises(ValueError, match="cannot keep 4"):
        compute_masks(scores, current, keep=4)


def test_nan_scores_name_the_layer():
    scores = {"conv": torch.tensor([1.0, float("nan")])}
    with pytest.raises(NumericsError, match="'conv'"):
        compute_masks(scores, full_masks(scores), keep=1)


def test_apply_masks_zeroes_in_place():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    ptr = w.data_ptr()
    apply_masks({"w": w}, {"w": torch.tensor([True, False, True])})
    assert w.tolist() == [1.0, 0.0, 3.0]
    assert w.data_ptr() == ptr


def test_floors_hold_a_layer_the_ranking_would_empty_and_say_so():
    scores = _scores()  # the top 3 are a[0,1]=0.9, b[2]=0.8, b[0]=0.7: "a" keeps one
    held: list[str] = []
    masks = compute_masks(scores, full_masks(scores), keep=3, floors={"a": 2, "b": 1}, held=held)
    assert masks["a"].tolist() == [[False, True], [True, False]]  # 0.9 and 0.5
    assert masks["b"].tolist() == [False, False, True]  # 0.8 only: the budget stays 3
    assert held == ["a"]
    with pytest.raises(FloorError):
        compute_masks(scores, full_masks(scores), keep=3, floors={"a": 3, "b": 1})


def test_silent_layers_are_those_whose_alive_weights_all_score_zero():
    scores = {"a": torch.tensor([0.0, 0.0]), "b": torch.tensor([0.0, 2.0]), "c": torch.tensor([0.0, 5.0])}
    current = {
        "a": torch.tensor([True, True]),
        "b": torch.tensor([True, True]),
        "c": torch.tensor([True, False]),  # its only nonzero score is on a pruned weight
    }
    assert silent_layers(scores, current) == ["a", "c"]
    current["a"] = torch.tensor([False, False])  # an emptied layer has no signal to miss
    assert silent_layers(scores, current) == ["c"]


def _sorted_top_k(scores, current, keep):
    """The definition, written the slow way: a stable sort of the alive scores, descending, ties to
    the earlier layer and lower index; the first ``keep`` are kept."""
    names = list(scores)
    flat = torch.cat([scores[n].reshape(-1) for n in names]).float()
    alive = torch.cat([current[n].reshape(-1) for n in names])
    order = torch.sort(-flat.masked_fill(~alive, float("-inf")), stable=True).indices
    keep_flat = torch.zeros_like(alive)
    keep_flat[order[:keep]] = True
    parts = keep_flat.split([scores[n].numel() for n in names])
    return {n: p.view(scores[n].shape) for n, p in zip(names, parts, strict=True)}


@given(
    sizes=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    levels=st.integers(1, 6),  # few distinct values: many ties, also at the threshold
    dead=st.floats(0.0, 0.95),
    share=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=300, deadline=None)
def test_the_global_top_k_is_the_stable_sorts_first_k(sizes, levels, dead, share, seed):
    """The threshold search (kthvalue over the alive entries only, a shortcut when nothing ties)
    picks exactly what a stable descending sort would, pruned weights never."""
    g = torch.Generator().manual_seed(seed)
    scores = {
        f"l{i}": torch.randint(0, levels, (n, 1), generator=g).float() / levels for i, n in enumerate(sizes)
    }
    current = {k: torch.rand(v.shape, generator=g) >= dead for k, v in scores.items()}
    keep = round(share * sum(int(c.sum()) for c in current.values()))
    got = compute_masks(scores, current, keep=keep)
    expected = _sorted_top_k(scores, current, keep)
    assert all(torch.equal(got[k], expected[k]) for k in scores)
    assert sum(int(m.sum()) for m in got.values()) == keep
    # the loop's other question of the step, against its definition layer by layer
    expected = [n for n, v in scores.items() if current[n].any() and not (v[current[n]] != 0).any()]
    assert Ranking(scores, current).silent_layers() == silent_layers(scores, current) == expected


@pytest.mark.parametrize(
    "case", ["distinct", "ties", "layered", "sample misses"], ids=lambda c: c.replace(" ", "-")
)
def test_the_sampled_threshold_of_a_large_ranking_is_the_stable_sorts(case):
    """Above 4 x SAMPLE entries the k-th largest is bracketed by a strided sample; the masks stay
    exactly the stable sort's, also where the sample cannot represent the scores."""
    from snipit_cli.pruning.masks import SAMPLE

    n = 4 * SAMPLE + 12_345
    g = torch.Generator().manual_seed(7)
    flat = {
        "distinct": lambda: torch.rand(n, generator=g),
        "ties": lambda: torch.randint(0, 50, (n,), generator=g).float(),  # the threshold sits in a tie
        "layered": lambda: torch.cat(
            [torch.rand(n // 2, generator=g) * 1e-6, torch.rand(n - n // 2, generator=g)]
        ),
        "sample misses": lambda: torch.zeros(n),
    }[case]()
    if case == "sample misses":  # every sampled entry is the largest value: the bracket fails
        flat[:: n // SAMPLE] = 1.0
    split = 7 * (n // 21)  # a 2-d layer and a flat one
    scores = {"a": flat[:split].view(-1, 7), "b": flat[split:]}
    current = {k: torch.rand(v.shape, generator=g) >= 0.3 for k, v in scores.items()}
    alive = sum(int(c.sum()) for c in current.values())
    for keep in (1, alive // 10, alive // 2, alive - 1):
        got = compute_masks(scores, current, keep=keep)
        expected = _sorted_top_k(scores, current, keep)
        assert all(torch.equal(got[k], expected[k]) for k in scores), (case, keep)


@pytest.mark.parametrize("layout", ["contiguous", "channels-last"])
def test_zero_dropped_removes_what_the_masks_remove(layout):
    """The loop zeroes a step's dropped indices instead of applying full masks: same weights,
    also for a channels-last conv weight (indices are of the logical order)."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 3, 3, 3, generator=g)
    w[0, 0] = 0.0  # pruned before: not alive, so not ranked
    if layout == "channels-last":
        w = w.to(memory_format=torch.channels_last)
    scores = {"conv": torch.rand(w.shape, generator=g)}
    current = {"conv": w != 0}
    ranking = Ranking(scores, current)
    ranking.select(40)
    kept, dropped = ranking.kept["conv"], ranking.dropped["conv"]
    alive = torch.nonzero(current["conv"].reshape(-1)).flatten()
    assert torch.equal(torch.sort(torch.cat([kept, dropped])).values, alive)
    masks = ranking.masks()
    assert torch.equal(masks["conv"], compute_masks(scores, current, keep=40)["conv"])
    by_masks, by_index = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    apply_masks({"conv": by_masks}, masks)
    zero_dropped({"conv": by_index}, ranking.dropped)
    assert torch.equal(by_index, by_masks) and int(by_index.count_nonzero()) == 40
    assert by_index.is_contiguous(memory_format=torch.channels_last) == (layout == "channels-last")


def test_nth_true_finds_the_position_across_chunks():
    from snipit_cli.pruning.masks import _nth_true

    mask = torch.zeros(1000, dtype=torch.bool)
    where = [3, 64, 65, 500, 999]
    mask[where] = True
    assert [_nth_true(mask, n, chunk=64) for n in range(1, 6)] == where
    with pytest.raises(ValueError):
        _nth_true(mask, 6, chunk=64)
