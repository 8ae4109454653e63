"""Global top-k masks: ``compute_masks(scores, current, keep) -> masks``, monotone by design.

Scores are passed apart from the weights (as ``importance_scores=`` in torch.nn.utils.prune), so
the same function serves every criterion, and the pruning loop (``pruning.engine``) takes each
step through its :class:`Ranking`, the scores flattened once; which layers are silent
(:func:`silent_layers`) is the one question the loop asks of a step's scores besides the masks.
:func:`apply_masks` writes masks into the weights, after a pruning step and after every optimizer
step of training alike.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import torch
from torch import nn

from snipit_cli.errors import NumericsError
from snipit_cli.pruning import flat_ops

Masks = dict[str, torch.Tensor]


def full_masks(weights: Mapping[str, torch.Tensor]) -> Masks:
    """All-True masks: nothing pruned yet."""
    return {name: torch.ones_like(w, dtype=torch.bool) for name, w in weights.items()}


def compute_masks(
    scores: Mapping[str, torch.Tensor],
    current: Mapping[str, torch.Tensor],
    *,
    keep: int,
    floors: Mapping[str, int] | None = None,
    held: list[str] | None = None,
) -> Masks:
    """Keep the ``keep`` highest-scoring weights over all layers; already pruned ones stay pruned.

    Ties are broken by position (earlier layer in ``scores`` order, then lower flat index wins),
    so the result depends only on the scores, never on the sort implementation. ``floors[name]``
    weights of a layer (its best alive ones) are kept whatever their global rank, inside the
    same total ``keep``: the guard against layer collapse. The layers the floors held (the plain
    ranking would have left them under) are appended to ``held``; a :class:`FloorError` says the
    floors add up to more than ``keep``.
    """
    return Ranking(scores, current).top(keep, floors, held)


def silent_layers(scores: Mapping[str, torch.Tensor], current: Mapping[str, torch.Tensor]) -> list[str]:
    """Layers with alive weights that all score exactly zero (no gradient reached them), with a
    single device sync. Zero as ranked: in float32, like :func:`compute_masks` (and, like it, a
    NaN or Inf score is refused)."""
    return Ranking(scores, current).silent_layers()


class Ranking:
    """One step's scores of the alive weights, gathered once into a single tensor.

    Only alive weights are ranked, so only they are read: at 90% sparsity the late SNIP-it steps
    of an 11.7M-weight ResNet-18 touch a tenth of the scores, and the global top-k, the layers
    under their floor and the silent layers are all answered from the one gathered tensor
    (layer order, then flat index: the order ties are broken in) without per-layer copies or a
    device sync per layer. ``alive`` (flat indices of the alive weights per layer, ascending) is
    what the previous step's :attr:`kept` handed on; without it it is read off ``current``.
    The pruning loop builds one per step and asks it both questions.
    """

    def __init__(
        self,
        scores: Mapping[str, torch.Tensor],
        current: Mapping[str, torch.Tensor],
        alive: Mapping[str, torch.Tensor] | None = None,
    ):
        self.names = list(scores)
        self.shapes = [scores[n].shape for n in self.names]
        if alive is None:
            alive = {n: flat_ops.positions(current[n].reshape(-1)) for n in self.names}
        self.alive = [alive[n].to(scores[n].device) for n in self.names]
        self.alive_per_layer = [int(i.numel()) for i in self.alive]
        device = self.alive[0].device if self.alive else None
        self.flat = torch.empty(sum(self.alive_per_layer), device=device)
        parts = self.flat.split(self.alive_per_layer)
        for name, idx, part in zip(self.names, self.alive, parts, strict=True):
            score = scores[name].detach().reshape(-1)
            if score.dtype == part.dtype:  # gathered straight into place: no concatenation copy
                flat_ops.take(score, idx, out=part)
            else:
                part.copy_(flat_ops.take(score, idx))
        # NaN and Inf survive a sum, so one reduction screens for them; a sum that overflows is
        # checked entry by entry, which finds nothing to refuse if every score is finite
        if not bool(self.flat.sum().isfinite()):
            check_finite({n: self.flat[p] for n, p in zip(self.names, self._parts(), strict=True)})
        #: After :meth:`select`: flat indices of the weights it kept, per layer (the next ``alive``),
        #: and of the alive ones it dropped.
        self.kept: dict[str, torch.Tensor] = {}
        self.dropped: dict[str, torch.Tensor] = {}

    def _parts(self) -> list[slice]:
        ends = list(itertools.accumulate(self.alive_per_layer))
        return [slice(e - n, e) for e, n in zip(ends, self.alive_per_layer, strict=True)]

    @property
    def n_alive(self) -> int:
        return sum(self.alive_per_layer)

    def silent_layers(self) -> list[str]:
        """As :func:`silent_layers`: layers with alive weights whose scores are all zero."""
        signal = flat_ops.counts(self.flat.split(self.alive_per_layer))  # nonzero scores per layer
        return [n for n, a, s in zip(self.names, self.alive_per_layer, signal, strict=True) if a and not s]

    def top(self, keep: int, floors: Mapping[str, int] | None = None, held: list[str] | None = None) -> Masks:
        """The ``keep`` best alive weights; with ``floors``, layers the plain ranking would leave
        under their floor are held there (their names appended to ``held``)."""
        self.select(keep, floors, held)
        return self.masks()

    def select(
        self, keep: int, floors: Mapping[str, int] | None = None, held: list[str] | None = None
    ) -> None:
        """As :meth:`top`, leaving the choice as indices only (:attr:`kept`, :attr:`dropped`):
        the pruning loop zeroes what a step drops and builds full masks once, after the last
        step, so a step touches only the weights still alive."""
        if not 0 <= keep <= self.n_alive:
            raise ValueError(f"cannot keep {keep} weights when {self.n_alive} are alive")
        chosen = _top_k_stable(self.flat, keep, pruned=False)
        if floors:
            wanted = [min(floors.get(n, 0), a) for n, a in zip(self.names, self.alive_per_layer, strict=True)]
            counts = _per_layer_counts(chosen, self.alive_per_layer)
            short = [n for n, c, w in zip(self.names, counts, wanted, strict=True) if c < w]
            if short:
                chosen = self._with_floors(keep, wanted)
                if held is not None:
                    held.extend(n for n in short if n not in held)
        for name, idx, part in zip(self.names, self.alive, chosen.split(self.alive_per_layer), strict=True):
            self.kept[name] = flat_ops.take(idx, flat_ops.positions(part))
            self.dropped[name] = flat_ops.take(idx, flat_ops.positions(part.logical_not_()))

    def _with_floors(self, keep: int, wanted: list[int]) -> torch.Tensor:
        if sum(wanted) > keep:
            raise FloorError(sum(wanted))
        boosted = self.flat.clone()
        for view, want in zip(boosted.split(self.alive_per_layer), wanted, strict=True):
            if want:
                view.masked_fill_(_top_k_stable(view, want, pruned=False), float("inf"))
        return _top_k_stable(boosted, keep, pruned=False)

    def masks(self) -> Masks:
        """Per-layer masks of what :meth:`select` kept."""
        masks = {}
        for name, shape in zip(self.names, self.shapes, strict=True):
            kept = self.kept[name]
            mask = torch.zeros(shape.numel(), dtype=torch.bool, device=kept.device)
            masks[name] = mask.index_fill_(0, kept, True).view(shape)
        return masks


class FloorError(ValueError):
    """The collapse guard's floors add up to more than the weights a step keeps."""

    def __init__(self, needed: int):
        super().__init__(needed)
        self.needed = needed


def _per_layer_counts(flags: torch.Tensor, sizes: list[int]) -> list[int]:
    """True entries per layer of a flat bool tensor, with a single device sync."""
    return flat_ops.counts(flags.split(sizes))


def layer_floors(masks: Mapping[str, torch.Tensor], density: float) -> dict[str, int]:
    """The fewest weights each layer keeps under the collapse guard: ``density`` of it, at least 1."""
    return {name: max(1, math.ceil(density * m.numel())) for name, m in masks.items()}


def _top_k_stable(flat: torch.Tensor, k: int, pruned: bool = True) -> torch.Tensor:
    """Boolean mask of the k largest entries of ``flat``; ties go to the lower index.

    The threshold is the k-th largest of the entries above -inf (the pruned ones, which sit at the
    bottom anyway; ``pruned=False`` says there are none), found by :func:`_kth_largest`.
    """
    if k == 0:
        return torch.zeros_like(flat, dtype=torch.bool)
    threshold, at_least = _kth_largest(flat, k, pruned)
    keep = flat_ops.compare("ge", flat, threshold)
    if at_least == k:  # no tie at the threshold
        return keep
    # ties at the threshold (often the zero scores of weights no gradient reaches): the first
    # ``missing`` of them by position are kept, so everything after the last of those is ``above``
    above = flat_ops.compare("gt", flat, threshold)
    missing = k - flat_ops.count(above)
    last = _nth_true(keep.logical_xor(above), missing)
    keep[last + 1 :] = above[last + 1 :]
    return keep


def _nth_true(mask: torch.Tensor, n: int, chunk: int = 1 << 16) -> int:
    """Flat index of the n-th (1-based) True entry of ``mask``: counted per chunk, then located
    in its chunk only (listing every True entry of a large tie costs more than the ranking)."""
    before = 0
    for i, part in enumerate(mask.split(chunk)):
        c = flat_ops.count(part)
        if before + c >= n:
            return i * chunk + int(flat_ops.positions(part)[n - before - 1])
        before += c
    raise ValueError(f"fewer than {n} True entries")


#: Entries of the strided sample that brackets the k-th largest (see :func:`_kth_largest`).
SAMPLE = 1 << 16


def _kth_largest(flat: torch.Tensor, k: int, pruned: bool) -> tuple[torch.Tensor, int]:
    """The k-th largest entry of ``flat`` above -inf (-inf when fewer are), exactly, and how
    many entries are at least that large.

    A selection over all 11.7M scores of ResNet-18 (torch.kthvalue) was the largest cost of a
    step after the passes. A strided sample of the scores brackets the answer instead: two
    compare-and-count passes check that the k-th largest lies between two sample values, and
    the selection runs on the entries in that band only (about 1% of them), which also counts
    the entries at the threshold; a band's lower end shared by many entries (the zero scores of
    weights no gradient reaches) is answered by a count, not selected. A bracket that misses low
    is widened once; one that still misses (a sample that does not represent the scores) falls
    back to the whole selection, so the answer never depends on the sample.
    numpy's introselect is no help: 17x slower than torch once most entries are the pruned -inf.
    """
    stride = flat.numel() // SAMPLE
    if stride >= 4:
        sample = flat[::stride]
        sample = (
            sample[sample > float("-inf")].sort(descending=True).values
            if pruned
            else sample.sort(descending=True).values
        )
        alive = flat_ops.count(flat_ops.compare("gt", flat, float("-inf"))) if pruned else flat.numel()
        if k <= alive and sample.numel() >= 1024:
            rank = k * sample.numel() / alive
            margin = 6 * math.sqrt(rank * (1 - rank / sample.numel()) + 1) + 16
            hi = sample[max(0, int(rank - margin))]
            lo = sample[min(sample.numel() - 1, int(rank + margin))]
            above_hi = flat_ops.compare("gt", flat, hi)
            above = flat_ops.count(above_hi)
            at_least_lo = flat_ops.count(flat_ops.compare("ge", flat, lo))
            if at_least_lo < k:  # the sample missed low: once more, with a wider lower end
                lo = sample[min(sample.numel() - 1, int(rank + 4 * margin))]
                at_least_lo = flat_ops.count(flat_ops.compare("ge", flat, lo))
            if above < k <= at_least_lo:
                above_lo = flat_ops.compare("gt", flat, lo)
                if k > flat_ops.count(above_lo):  # the k-th largest is lo itself (often a tie: 0)
                    return lo, at_least_lo
                band = flat_ops.select(flat, above_lo.logical_xor_(above_hi))  # lo < entry <= hi
                threshold = torch.kthvalue(band, band.numel() - (k - above) + 1).values
                return threshold, above + flat_ops.count(flat_ops.compare("ge", band, threshold))
    ranked = flat_ops.select(flat, flat_ops.compare("gt", flat, float("-inf"))) if pruned else flat
    if k <= ranked.numel():
        threshold = torch.kthvalue(ranked, ranked.numel() - k + 1).values
        return threshold, flat_ops.count(flat_ops.compare("ge", ranked, threshold))
    return flat.new_tensor(float("-inf")), flat.numel()  # fewer entries above -inf: -inf itself


def check_finite(scores: Mapping[str, torch.Tensor]) -> None:
    """A NaN or Inf score cannot be ranked: name the layer it is in."""
    for name, s in scores.items():
        if not torch.isfinite(s).all():
            raise NumericsError(
                f"scores of layer {name!r} contain NaN or Inf; check the model's weights and the "
                "calibration data (normalisation, labels)"
            )


@torch.no_grad()
def apply_masks(weights: Mapping[str, nn.Parameter], masks: Mapping[str, torch.Tensor]) -> None:
    """Zero pruned weights in place (no copy of the model).

    ``masked_fill`` writes +0.0 where multiplying by the mask would leave -0.0 for negative weights
    (and NaN for NaN ones): sparse storage keeps -0.0 bit for bit, so it must not appear.
    """
    for name, w in weights.items():
        w.masked_fill_(~masks[name].to(device=w.device, dtype=torch.bool), 0.0)


@torch.no_grad()
def zero_dropped(weights: Mapping[str, nn.Parameter], dropped: Mapping[str, torch.Tensor]) -> None:
    """Zero, in place, the weights at these flat indices (a step's :attr:`Ranking.dropped`): what
    :func:`apply_masks` does for a step, touching only the weights the step removed."""
    for name, w in weights.items():
        idx = dropped[name].to(w.device)
        if w.is_contiguous():
            w.view(-1).index_fill_(0, idx, 0.0)
        else:  # a channels-last weight: the indices are of its logical (row-major) order
            w[torch.unravel_index(idx, w.shape)] = 0.0


def count_kept(masks: Mapping[str, torch.Tensor]) -> int:
    """Number of weights the masks keep."""
    return sum(int(m.count_nonzero()) for m in masks.values())
