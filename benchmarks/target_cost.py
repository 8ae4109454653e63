"""What ``--target params|macs`` costs over ``--target nodes``: whole ``run_prune`` calls, interleaved.

    python benchmarks/target_cost.py [--repeats 3] [--threads 1]

resnet18 (timm, random init, 10 classes) at 32 px, SNAP-it 0.5 with the speed benchmark's
calibration (5 batches of 64, 5 steps): the three targets one after another in each round, so
drift in machine load hits them alike; ``--threads 1`` keeps a busy second core from stalling
torch's thread pool (which turns 1 s into 25 s on this machine). The goal (issue 19) is at most
1.10x. Writes ``benchmarks/results/target_cost.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import speed  # noqa: E402  (the same request the speed benchmark makes)

from snipit_cli.workflows.prune import run_prune  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TARGETS = ("nodes", "params", "macs")
GOAL = 1.10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {t: [] for t in TARGETS}
    achieved: dict[str, float] = {}
    for _ in range(args.repeats):
        for target in TARGETS:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "o.safetensors"
                request = speed.request("timm:resnet18", (3, 32, 32), True, out, target=target)
                started = time.perf_counter()
                report = run_prune(request).report
                times[target].append(time.perf_counter() - started)
                achieved[target] = report["sparsity"]["achieved"]
            print(f"{target}: {times[target][-1]:.2f}s", file=sys.stderr)
    nodes = statistics.median(times["nodes"])
    rows = [
        {
            "target": t,
            "median_s": statistics.median(v),
            "min_s": min(v),
            "max_s": max(v),
            "ratio_to_nodes": statistics.median(v) / nodes,
            "achieved": achieved[t],
        }
        for t, v in times.items()
    ]
    meta = {
        "command": "python benchmarks/target_cost.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "torch": torch.__version__,
        "threads": args.threads,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "repeats": args.repeats,
    }
    lines = [
        "# `--target` cost: params and MACs against nodes",
        "",
        f"Command: `{meta['command']}`; torch {meta['torch']}, {args.threads} thread(s), {meta['machine']}. "
        "timm:resnet18 @ 3x32x32, SNAP-it 0.5, 5 batches of 64, 5 steps; whole `run_prune` calls, "
        f"median [min–max] of {args.repeats}, the targets interleaved.",
        "",
        f"| --target | seconds | ÷ nodes (goal ≤ {GOAL}) | achieved |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r['median_s']:.2f} [{r['min_s']:.2f}–{r['max_s']:.2f}] | "
            f"{r['ratio_to_nodes']:.2f} | {r['achieved']:.4f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "target_cost.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / "target_cost.md").write_text("\n".join(lines) + "\n")
    print(args.out / "target_cost.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
