"""Which layers snipit prunes and counts: Conv/Linear modules with a weight, by qualified name,
and the ``--exclude`` fnmatch patterns that take some of them out.

A base module because three domain packages read this one definition: ``pruning`` (what it
ranks), ``metrics`` (what its per-layer rows count) and the structured head detection. In
``pruning/`` it made ``metrics`` import pruning while the structured pass measures MACs through
``metrics``: a cycle.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from torch import nn

#: Layer types whose ``weight`` is pruned. Biases and norm layers never are.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    nn.Linear,
)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Conv/Linear module with a weight, keyed by its qualified name."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, PRUNABLE_TYPES) and isinstance(getattr(m, "weight", None), nn.Parameter)
    }


def is_excluded(name: str, exclude: Sequence[str]) -> bool:
    """True when a module name matches one of the fnmatch ``exclude`` patterns."""
    return any(fnmatchcase(name, pattern) for pattern in exclude)
