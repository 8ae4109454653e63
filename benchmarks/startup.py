"""CLI start-up: wall time and peak memory of whole `snipit` processes that need no torch
(--help, COMMAND --help, --version, a usage error), against `python -c pass` and `import torch`.

    python benchmarks/startup.py [--runs 15]

Writes benchmarks/results/startup.{json,md}. Runs are interleaved (one of each command per round),
so load on the machine hits every command alike; medians are quoted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
GOAL_S = 0.3


def _cases() -> dict[str, list[str]]:
    snipit = shutil.which("snipit") or str(Path(sys.executable).with_name("snipit"))
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    for args in (
        ["--help"],
        ["--version"],
        ["prune", "--help"],
        ["report", "--help"],
        ["train", "--help"],
        ["export", "--help"],
        ["prune", "--sparsity", "abc", "m.pt"],
    ):
        cases["snipit " + " ".join(args)] = [snipit, *args]
    return cases


def _run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS in MiB (ru_maxrss of this one child, via wait4)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, _, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    cases = _cases()
    times: dict[str, list[float]] = {k: [] for k in cases}
    rss: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.runs):
        for name, cmd in cases.items():
            wall, mem = _run(cmd)
            times[name].append(wall)
            rss[name].append(mem)
    rows = {
        name: {
            "median_s": round(statistics.median(times[name]), 3),
            "min_s": round(min(times[name]), 3),
            "max_s": round(max(times[name]), 3),
            "peak_rss_mib": round(statistics.median(rss[name]), 1),
        }
        for name in cases
    }
    setup = {
        "runs": args.runs,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "goal_s": GOAL_S,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps({"setup": setup, "rows": rows}, indent=2) + "\n")
    lines = [
        "# CLI start-up",
        "",
        f"`python benchmarks/startup.py --runs {args.runs}`: whole processes, interleaved, "
        f"{args.runs} runs each; goal: snipit rows under {GOAL_S} s.",
        "",
        "| command | median s | min–max s | peak RSS MiB | goal |",
        "|---|---:|---:|---:|---|",
    ]
    for name, r in rows.items():
        goal = ("met" if r["median_s"] < GOAL_S else "NOT met") if name.startswith("snipit") else "reference"
        lines.append(
            f"| `{name}` | {r['median_s']:.3f} | {r['min_s']:.3f}–{r['max_s']:.3f} | "
            f"{r['peak_rss_mib']:.0f} | {goal} |"
        )
    (RESULTS / "startup.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
