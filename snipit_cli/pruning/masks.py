"""Global top-k masks: ``compute_masks(scores, current, keep) -> masks``, monotone by design.

Scores are passed apart from the weights (as ``importance_scores=`` in torch.nn.utils.prune), so
the same function serves every criterion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from snipit_cli.errors import NumericsError

Masks = dict[str, torch.Tensor]


def full_masks(weights: Mapping[str, torch.Tensor]) -> Masks:
    """All-True masks: nothing pruned yet."""
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}


def compute_masks(
    scores: Mapping[str, torch.Tensor],
    current: Mapping[str, torch.Tensor],
    keep: int,
    floors: Mapping[str, int] | None = None,
) -> Masks:
    """Keep the ``keep`` highest-scoring weights over all layers; already pruned ones stay pruned.

    Ties are broken by position (earlier layer in ``scores`` order, then lower flat index wins),
    so the result depends only on the scores, never on the sort implementation. ``floors[name]``
    weights of a layer (its best alive ones) are kept whatever their global rank, inside the
    same total ``keep``: the guard against layer collapse.
    """
    names = list(scores)
    _check_finite(scores)
    flat = torch.cat([_guarded(scores[n], current[n], (floors or {}).get(n, 0)) for n in names])
    alive = torch.cat([current[n].flatten() for n in names])
    n_alive = int(alive.sum())
    if not 0 <= keep <= n_alive:
        raise ValueError(f"cannot keep {keep} weights when {n_alive} are alive")
    keep_flat = _top_k_stable(flat.masked_fill(~alive, float("-inf")), keep) & alive
    return _unflatten(keep_flat, names, scores)


def _guarded(score: torch.Tensor, alive: torch.Tensor, floor: int) -> torch.Tensor:
    """Flat float scores with the layer's ``floor`` best alive weights raised to +inf."""
    flat = score.detach().flatten().float()
    if floor <= 0:
        return flat
    alive = alive.flatten()
    best = _top_k_stable(flat.masked_fill(~alive, float("-inf")), min(floor, int(alive.sum()))) & alive
    return flat.masked_fill(best, float("inf"))


def layer_floors(masks: Mapping[str, torch.Tensor], density: float) -> dict[str, int]:
    """The fewest weights each layer keeps under the collapse guard: ``density`` of it, at least 1."""
    return {name: max(1, math.ceil(density * m.numel())) for name, m in masks.items()}


def below_floor(masks: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor], floors) -> list[str]:
    """Layers that ``masks`` would leave under their floor while they had weights to spare."""
    return [name for name, m in masks.items() if int(m.sum()) < min(floors[name], int(current[name].sum()))]


def _top_k_stable(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k largest entries of ``flat``; ties go to the lower index."""
    keep = torch.zeros_like(flat, dtype=torch.bool)
    if k == 0:
        return keep
    threshold = torch.kthvalue(flat, flat.numel() - k + 1).values
    keep = flat > threshold
    missing = k - int(keep.sum())
    tied = torch.nonzero(flat == threshold).flatten()[:missing]
    keep[tied] = True
    return keep


def _unflatten(flat: torch.Tensor, names: list[str], like: Mapping[str, torch.Tensor]) -> Masks:
    out: Masks = {}
    offset = 0
    for name in names:
        n = like[name].numel()
        out[name] = flat[offset : offset + n].view_as(like[name]).clone()
        offset += n
    return out


def _check_finite(scores: Mapping[str, torch.Tensor]) -> None:
    for name, s in scores.items():
        if not torch.isfinite(s).all():
            raise NumericsError(
                f"scores of layer {name!r} contain NaN or Inf; check the model's weights and the "
                "calibration data (normalisation, labels)"
            )


@torch.no_grad()
def apply_masks(weights: Mapping[str, nn.Parameter], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero pruned weights in place (no copy of the model)."""
    for name, w in weights.items():
        w.mul_(masks[name].to(device=w.device, dtype=w.dtype))


def count_kept(masks: Mapping[str, torch.Tensor]) -> int:
    """Number of weights the masks keep."""
    return sum(int(m.sum()) for m in masks.values())
