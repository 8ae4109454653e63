"""The weights a run ranks: those of :mod:`snipit_cli.layers`, tied ones once, and the checks that
refuse a selection that is empty or names no layer."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from torch import nn

from snipit_cli.errors import ModelError, UsageError
from snipit_cli.layers import is_excluded, prunable_layers


def prunable_weights(model: nn.Module, exclude: Sequence[str] = ()) -> dict[str, nn.Parameter]:
    """Weights that take part in the global ranking, keyed by module name.

    Raises a clear error when nothing is left to prune, e.g. every layer excluded.
    """
    weights: dict[str, nn.Parameter] = {}
    seen: set[int] = set()
    for name, m in prunable_layers(model).items():
        if not is_excluded(name, exclude) and id(m.weight) not in seen:  # a tied weight ranks once
            seen.add(id(m.weight))
            weights[name] = m.weight
    if not weights:
        hint = " (all excluded by --exclude)" if prunable_layers(model) else ""
        raise ModelError(
            f"the model has no prunable Conv/Linear layer{hint}; check the model or the --exclude patterns"
        )
    return weights


def check_exclude(model: nn.Module, exclude: Sequence[str]) -> None:
    """Refuse an ``--exclude`` pattern that matches no Conv/Linear layer: a typo would otherwise
    prune the very layer the user meant to keep, silently."""
    names = list(prunable_layers(model))
    unmatched = [p for p in exclude if not any(fnmatchcase(n, p) for n in names)]
    if unmatched:
        examples = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise UsageError(
            f"--exclude {unmatched[0]!r} matches no Conv/Linear layer of this model (its layers are "
            f"named like {examples}; `snipit report MODEL` lists them all); fix or drop the pattern"
        )
