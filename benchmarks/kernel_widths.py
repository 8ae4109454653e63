"""Which channel counts this CPU's convolution kernels favour, and what else a slim model pays.

    python benchmarks/kernel_widths.py [--threads 1] [--batch 32]

Issue 19 item 5 asks for ``--round-to`` chosen for the device from measurement. This times a 3x3
convolution (the bulk of a ResNet's MACs) at every width from 8 to 80 channels in and out, at
56x56 (ResNet-18's first stage), in PyTorch's default NCHW layout and in channels-last, and
reports GMAC/s per width: a multiple the kernels favour shows as a step in throughput. It also
times ResNet's stem max-pool in both layouts (a cost that shrinks with the channels only
linearly, where convolutions shrink quadratically). Writes ``benchmarks/results/kernel_widths.md``
and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).parent / "results"
WIDTHS = list(range(8, 81, 1))


def median_ms(module: nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(2):
            module(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def conv_row(width: int, batch: int, side: int, repeats: int) -> dict:
    conv = nn.Conv2d(width, width, 3, padding=1, bias=False).eval()
    x = torch.randn(batch, width, side, side)
    macs = batch * side * side * width * width * 9
    nchw = median_ms(conv, x, repeats)
    cl = median_ms(
        conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last), repeats
    )
    return {
        "width": width,
        "nchw_ms": nchw,
        "channels_last_ms": cl,
        "nchw_gmacs": macs / nchw / 1e6,
        "channels_last_gmacs": macs / cl / 1e6,
    }


def pool_row(width: int, batch: int, repeats: int) -> dict:
    pool = nn.MaxPool2d(3, 2, 1)
    x = torch.randn(batch, width, 112, 112)
    return {
        "width": width,
        "nchw_ms": median_ms(pool, x, repeats),
        "channels_last_ms": median_ms(pool, x.contiguous(memory_format=torch.channels_last), repeats),
    }


def markdown(doc: dict) -> str:
    meta = doc["meta"]
    lines = [
        "# Convolution throughput by channel count, and the stem max-pool",
        "",
        f"Command: `{meta['command']}`; torch {meta['torch']}, {meta['threads']} thread(s), {meta['cpu']}, "
        f"CPU capability {meta['capability']}. 3x3 conv, width in = width out, "
        f"{meta['side']}x{meta['side']}, batch {meta['batch']}, median of {meta['repeats']}.",
        "",
        "| width | NCHW ms | NCHW GMAC/s | channels-last ms | channels-last GMAC/s |",
        "|---|---|---|---|---|",
    ]
    for r in doc["conv"]:
        lines.append(
            f"| {r['width']} | {r['nchw_ms']:.2f} | {r['nchw_gmacs']:.1f} | {r['channels_last_ms']:.2f} | "
            f"{r['channels_last_gmacs']:.1f} |"
        )
    lines += [
        "",
        "Throughput by width modulo 8 and 16 (median GMAC/s over the widths with that remainder):",
        "",
    ]
    lines += ["| width mod 16 | NCHW | channels-last |", "|---|---|---|"]
    for rem in range(16):
        rows = [r for r in doc["conv"] if r["width"] % 16 == rem]
        lines.append(
            f"| {rem} | {statistics.median(r['nchw_gmacs'] for r in rows):.1f} | "
            f"{statistics.median(r['channels_last_gmacs'] for r in rows):.1f} |"
        )
    lines += ["", f"Max-pool 3x3/2 on batch {meta['batch']} x C x 112 x 112 (ResNet's stem):", ""]
    lines += ["| C | NCHW ms | channels-last ms |", "|---|---|---|"]
    for r in doc["pool"]:
        lines.append(f"| {r['width']} | {r['nchw_ms']:.1f} | {r['channels_last_ms']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--side", type=int, default=56)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    conv = [conv_row(w, args.batch, args.side, args.repeats) for w in WIDTHS]
    pool = [pool_row(w, args.batch, args.repeats) for w in (64, 48, 32, 19)]
    import sys

    meta = {
        "command": "python benchmarks/kernel_widths.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch": torch.__version__,
        "threads": args.threads,
        "cpu": platform.machine(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "batch": args.batch,
        "side": args.side,
        "repeats": args.repeats,
    }
    doc = {"meta": meta, "conv": conv, "pool": pool}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernel_widths.json").write_text(json.dumps(doc, indent=1))
    (args.out / "kernel_widths.md").write_text(markdown(doc))
    print(args.out / "kernel_widths.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
