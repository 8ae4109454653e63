"""Measured forward latency: warm-up, then the median of repeats under ``torch.inference_mode``.

MAC ratios are what other tools print as "speedup"; the time a forward pass takes is what users
get, so snipit measures it and says on how many threads and which device.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn


def measure_latency(
    model: nn.Module,
    input_size: Sequence[int],
    *,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 20,
    warmup: int = 3,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Per batch size: median, min, max and interquartile range of one forward pass, in ms."""
    model = model.eval().to(device)
    results = {}
    for batch in batch_sizes:
        x = probe_batch(input_size, batch).to(device)
        with torch.inference_mode():
            times = time_calls(
                lambda x=x: model(x), repeats=repeats, warmup=warmup, sync=lambda: _sync(device)
            )
        results[str(batch)] = summary(times)
    return {
        "batch_sizes": results,
        "repeats": repeats,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def probe_batch(input_size: Sequence[int], batch: int, seed: int = 0) -> torch.Tensor:
    """The fixed-seed input every timing and parity check feeds: the same tensor run to run."""
    return torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(seed))


def time_calls(
    call: Callable[[], object], *, repeats: int, warmup: int, sync: Callable[[], None] = lambda: None
) -> list[float]:
    """Milliseconds of each of ``repeats`` calls after ``warmup`` untimed ones (``sync`` waits for
    an asynchronous device before and after each): any runtime's forward, torch's or another's."""
    times = []
    for i in range(warmup + repeats):
        sync()
        start = time.perf_counter()
        call()
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return times


def summary(times: Sequence[float]) -> dict[str, float]:
    """Median, min, max and interquartile range of timings, in their unit."""
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "iqr_ms": quartiles[2] - quartiles[0],
    }


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
