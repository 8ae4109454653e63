"""Sparsity schedules as plain functions returning lists of pruned fractions."""

from __future__ import annotations

from snipit_cli.errors import UsageError


def validate_sparsity(sparsity: float) -> float:
    """Return ``sparsity`` if it is a pruned fraction strictly between 0 and 1."""
    if not 0.0 < sparsity < 1.0:
        raise UsageError(
            f"--sparsity must be a fraction strictly between 0 and 1, got {sparsity}; "
            "e.g. --sparsity 0.9 removes 90% of the prunable weights"
        )
    return sparsity


def snipit_schedule(limit: float, steps: int = 5) -> list[float]:
    """Pruned fraction after each SNIP-it step: ``limit - (limit - lower) * 0.5**i``, then ``limit``.

    Follows the paper's code (arXiv 2006.00896): ``steps + 1`` fractions for i = 0..steps that
    approach ``limit`` from ``lower``, then ``limit`` itself, so a run scores ``steps + 2`` times.
    ``lower`` is 0.5 when ``limit > 0.5`` and 0.2 when ``limit`` is in (0.2, 0.5], as the paper's
    code does; below that it is ``limit / 2`` so the schedule still starts lower and only grows.
    """
    validate_sparsity(limit)
    if steps < 0:
        raise UsageError(f"--steps must be 0 or more, got {steps}")
    if limit > 0.5:
        lower = 0.5
    elif limit > 0.2:
        lower = 0.2
    else:
        lower = limit / 2
    # Rounded to 12 places so 0.8875 is not reported as 0.8875000000000001.
    return [round(limit - (limit - lower) * 0.5**i, 12) for i in range(steps + 1)] + [limit]


def exponential_schedule(limit: float, iterations: int = 100) -> list[float]:
    """SynFlow's schedule: density ``(1 - limit) ** (k / n)`` after step k = 1..n (Tanaka et al. 2020).

    Each step removes the same fraction of what is left, so late steps remove few weights.
    """
    validate_sparsity(limit)
    if iterations < 1:
        raise UsageError(f"--steps must be at least 1 for an exponential schedule, got {iterations}")
    fractions = [round(1 - (1 - limit) ** (k / iterations), 12) for k in range(1, iterations + 1)]
    fractions[-1] = limit
    return fractions


def one_shot_schedule(limit: float) -> list[float]:
    """A single step straight to ``limit`` (SNIP, magnitude, random)."""
    return [validate_sparsity(limit)]


def count_to_prune(fraction: float, total: int) -> int:
    """Number of weights a pruned ``fraction`` of ``total`` means, rounded to the nearest weight."""
    return min(total, max(0, round(fraction * total)))
