"""Measured forward latency: warm-up, then the median of repeats under ``torch.inference_mode``.

MAC ratios are what other tools print as "speedup"; the time a forward pass takes is what users
get, so snipit measures it and says on how many threads, which device and which runtime. The
runtime matters as much as the widths: eager PyTorch runs BatchNorm, activations and pooling as
separate memory-bound passes whose cost falls with the activations, not with the MACs, while a
deployment runtime (onnxruntime folds BatchNorm into the convolution and fuses the activation)
leaves mostly the convolutions, so a slim model delivers more of its MAC reduction there.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from snipit_cli.metrics.runtimes import RUNTIMES


def measure_latency(
    model: nn.Module,
    input_size: Sequence[int],
    *,
    batch_sizes: Sequence[int] = (1, 32),
    repeats: int = 20,
    warmup: int = 3,
    device: torch.device | str = "cpu",
    runtime: str = "torch",
) -> dict[str, Any]:
    """Per batch size: median, min, max and interquartile range of one forward pass, in ms."""
    model = model.eval().to(device)
    results = {}
    with forward_on(model, input_size, runtime, device) as (forward, label):
        for batch in batch_sizes:
            x = probe_batch(input_size, batch).to(device)
            with torch.inference_mode():
                times = time_calls(
                    lambda x=x: forward(x), repeats=repeats, warmup=warmup, sync=lambda: sync_device(device)
                )
            results[str(batch)] = summary(times)
    return {
        "batch_sizes": results,
        "repeats": repeats,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "runtime": label,
    }


@contextlib.contextmanager
def forward_on(
    model: nn.Module, input_size: Sequence[int], runtime: str, device: torch.device | str = "cpu"
) -> Iterator[tuple[Callable[[torch.Tensor], object], str]]:
    """The model's forward on ``runtime`` and the runtime's name as reports print it. A
    channels-last model is put back in the standard layout afterwards; an ONNX file lives in a
    temporary folder for the duration."""
    if runtime == "torch":
        yield model, "torch"
    elif runtime == "channels-last":
        model.to(memory_format=torch.channels_last)
        try:
            yield (lambda x: model(x.contiguous(memory_format=torch.channels_last))), "torch channels-last"
        finally:
            model.to(memory_format=torch.contiguous_format)
    elif runtime == "onnxruntime":
        if torch.device(device).type != "cpu":
            raise ValueError("onnxruntime is timed on the CPU here")
        with tempfile.TemporaryDirectory(prefix="snipit-latency-") as tmp:
            yield _onnx_forward(model, input_size, Path(tmp) / "model.onnx")
    else:
        raise ValueError(f"unknown runtime {runtime!r}; one of {', '.join(RUNTIMES)}")


def _onnx_forward(model: nn.Module, input_size: Sequence[int], path: Path):
    """The model exported by ``snipit export``'s code and run by onnxruntime on as many threads as
    torch uses, so the two runtimes' timings compare; all graph optimisations on (the default)."""
    import onnxruntime

    from snipit_cli.models import onnx_export

    onnx_export.export_onnx(model, probe_batch(input_size, 2), path, None)
    run = onnx_export.onnx_runner(path, threads=torch.get_num_threads())
    return (lambda x: run(x.numpy())), f"onnxruntime {onnxruntime.__version__} (CPU)"


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


def sync_device(device: torch.device | str) -> None:
    """Wait for an asynchronous device's queued work (a no-op on the CPU), so a timer reads it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
