"""The search behind --target params|macs: the fewest units whose removal reaches a fraction."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from snipit_cli.pruning.structured.engine import smallest_reaching


@given(
    steps=st.lists(st.floats(0.0, 1.0), min_size=0, max_size=300),
    fraction=st.floats(0.0, 1.2),
    curve=st.sampled_from(["as drawn", "linear", "convex", "flat runs"]),
)
@settings(max_examples=400, deadline=None)
def test_it_finds_the_smallest_n_a_linear_scan_finds_in_few_calls(steps, fraction, curve):
    n_max = len(steps)
    if curve == "linear":
        steps = [1.0] * n_max
    elif curve == "convex":
        steps = [i**2 for i in range(n_max)]
    elif curve == "flat runs":
        steps = [1.0 if i % 17 == 0 else 0.0 for i in range(n_max)]
    total = sum(steps) or 1.0
    values = [sum(steps[:n]) / total for n in range(n_max + 1)]  # non-decreasing, 0 to 1
    calls = []

    def amount(n: int) -> float:
        calls.append(n)
        return values[n]

    expected = next((n for n, v in enumerate(values) if v >= fraction), None)
    assert smallest_reaching(amount, n_max, fraction) == expected
    assert len(calls) <= 2 * math.ceil(math.log2(n_max + 1)) + 3


def test_a_linear_measure_takes_a_handful_of_calls():
    calls = []

    def amount(n: int) -> float:
        calls.append(n)
        return n / 1000

    assert smallest_reaching(amount, 1000, 0.4275) == 428
    assert len(calls) <= 4  # bisection: 12
