"""Sparsity schedules as plain functions returning lists of pruned fractions.

:func:`schedule_for` is the one way to get a method's schedule: a criterion only declares its
family (``schedule_kind``), and the fractions are computed here, so each family is a plain
function testable on its own and the CLI, the prune and the train workflows all get the same.
"""

from __future__ import annotations

from snipit_cli.criteria.base import CriterionInfo
from snipit_cli.errors import UsageError

#: Rounds of each iterative family when ``--steps`` is not given (SNIP-it's S, SynFlow's n).
DEFAULT_STEPS = {"snipit": 5, "exponential": 100}


def validate_sparsity(sparsity: float) -> float:
    """Return ``sparsity`` if it is a pruned fraction strictly between 0 and 1."""
    if not 0.0 < sparsity < 1.0:
        raise UsageError(
            f"--sparsity must be a fraction strictly between 0 and 1, got {sparsity}; "
            "e.g. --sparsity 0.9 removes 90% of the prunable weights"
        )
    return sparsity


#: Decimal places schedules are rounded to (so 0.8875 is not reported as 0.8875000000000001).
PLACES = 12


def snipit_schedule(limit: float, steps: int = 5) -> list[float]:
    """Pruned fraction after each SNIP-it step: ``limit - (limit - lower) * 0.5**i``, then ``limit``.

    Follows the paper's code (arXiv 2006.00896): ``steps + 1`` fractions for i = 0..steps that
    approach ``limit`` from ``lower``, then ``limit`` itself, so a run scores ``steps + 2`` times.
    ``lower`` is 0.5 when ``limit > 0.5`` and 0.2 when ``limit`` is in (0.2, 0.5], as the paper's
    code does; below that it is ``limit / 2`` so the schedule still starts lower and only grows.
    The gap halves each step, so after :func:`snipit_max_steps` the fractions repeat: more steps
    would rescore the same sparsity again and again, and are refused.
    """
    validate_sparsity(limit)
    if steps < 0:
        raise UsageError(f"--steps must be 0 or more, got {steps}")
    lower = _snipit_lower(limit)
    bound = snipit_max_steps(limit)
    if steps > bound:
        raise UsageError(
            f"--steps {steps} is more than SNIP-it's schedule can use at --sparsity {limit}: each step "
            f"halves the gap to the limit, so after step {bound} the sparsity no longer changes (at "
            f"{PLACES} decimals) and every further step would only rescore it; pass --steps {bound} or fewer"
        )
    return [round(limit - (limit - lower) * 0.5**i, PLACES) for i in range(steps + 1)] + [limit]


def _snipit_lower(limit: float) -> float:
    if limit > 0.5:
        return 0.5
    if limit > 0.2:
        return 0.2
    return limit / 2


def snipit_max_steps(limit: float) -> int:
    """The most steps whose fractions all differ: the last i at which
    ``limit - (limit - lower) * 0.5**i``, rounded, still grows and is still below ``limit``."""
    gap = limit - _snipit_lower(limit)

    def fraction(i: int) -> float:
        return round(limit - gap * 0.5**i, PLACES)

    i = 0
    while fraction(i) < fraction(i + 1) < round(limit, PLACES):
        i += 1
    return i


def exponential_schedule(limit: float, iterations: int = 100) -> list[float]:
    """SynFlow's schedule: density ``(1 - limit) ** (k / n)`` after step k = 1..n (Tanaka et al. 2020).

    Each step removes the same fraction of what is left, so late steps remove few weights.
    """
    validate_sparsity(limit)
    if iterations < 1:
        raise UsageError(f"--steps must be at least 1 for an exponential schedule, got {iterations}")
    fractions = [round(1 - (1 - limit) ** (k / iterations), PLACES) for k in range(1, iterations + 1)]
    fractions[-1] = limit
    return fractions


def one_shot_schedule(limit: float) -> list[float]:
    """A single step straight to ``limit`` (SNIP, magnitude, random)."""
    return [validate_sparsity(limit)]


def count_to_prune(fraction: float, total: int) -> int:
    """Number of weights a pruned ``fraction`` of ``total`` means, rounded to the nearest weight."""
    return min(total, max(0, round(fraction * total)))


def schedule_for(criterion: CriterionInfo, sparsity: float, steps: int | None = None) -> list[float]:
    """Pruned fraction after each scoring round of ``criterion``'s family: one step, SNIP-it's
    (``steps`` S, default 5) or SynFlow's exponential one (default 100 rounds)."""
    kind = criterion.schedule_kind
    if kind == "one-shot":
        return one_shot_schedule(sparsity)
    rounds = DEFAULT_STEPS[kind] if steps is None else steps
    if kind == "snipit":
        return snipit_schedule(sparsity, rounds)
    if kind == "exponential":
        return exponential_schedule(sparsity, rounds)
    raise ValueError(f"criterion {criterion.name!r} declares an unknown schedule kind {kind!r}")
