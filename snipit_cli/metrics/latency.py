"""Measured forward latency: warm-up, then the median of repeats under ``torch.inference_mode``.

MAC ratios are what other tools print as "speedup"; the time a forward pass takes is what users
get, so snipit measures it and says on how many threads and which device.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
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
        x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(0)).to(device)
        times = []
        with torch.inference_mode():
            for i in range(warmup + repeats):
                _sync(device)
                start = time.perf_counter()
                model(x)
                _sync(device)
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000)
        quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
        results[str(batch)] = {
            "median_ms": statistics.median(times),
            "min_ms": min(times),
            "max_ms": max(times),
            "iqr_ms": quartiles[2] - quartiles[0],
        }
    return {
        "batch_sizes": results,
        "repeats": repeats,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
