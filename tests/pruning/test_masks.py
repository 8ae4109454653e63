import pytest
import torch

from snipit_cli.errors import NumericsError
from snipit_cli.pruning.masks import (
    FloorError,
    apply_masks,
    compute_masks,
    count_kept,
    full_masks,
    silent_layers,
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
