"""What a `snipit prune` run costs on this machine: wall time per run and per gradient pass.

Run by hand (not part of the test suite):

    python benchmarks/prune_cost.py [--repeats 3] [--full-size]

Writes benchmarks/results/prune_cost.md and prune_cost.json. Each case runs the real `snipit`
script in a subprocess, so the figure includes start-up (imports) as a user sees it.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

SNIPIT = str(Path(sysconfig.get_path("scripts")) / "snipit")
RESULTS = Path(__file__).parent / "results"

# The README's main job; the other cases change only the method.
README_JOB = ["timm:resnet18", "--num-classes", "10", "--input-size", "3,32,32", "--sparsity", "0.9"]
CASES = {
    "README main job (snip-it, resnet18 @ 32 px)": README_JOB,
    "one-shot snip, resnet18 @ 32 px": [*README_JOB, "--method", "snip"],
    "magnitude (no data), resnet18 @ 32 px": [*README_JOB, "--method", "magnitude"],
}
FULL_SIZE = {"snip-it, resnet18 @ 224 px (timm default)": ["timm:resnet18", "--sparsity", "0.9"]}


def run_case(args: list[str], repeats: int) -> dict:
    walls, reports = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [SNIPIT, "prune", *args, "-o", "out.safetensors", "--json"]
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=True)
            walls.append(time.perf_counter() - start)
            reports.append(json.loads(proc.stdout))
    passes = reports[0]["pruning"]["calibration"]["passes"]
    inner = [r["run"]["seconds"] for r in reports]
    return {
        "command": "snipit prune " + " ".join(args),
        "runs": repeats,
        "wall_median_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "wall_max_s": max(walls),
        "prune_median_s": statistics.median(inner),
        "passes": passes,
        "batch_size": reports[0]["pruning"]["calibration"]["batch_size"],
        "s_per_pass": statistics.median(inner) / passes if passes else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full-size", action="store_true", help="also run resnet18 at 224 px (minutes)")
    ns = parser.parse_args()
    cases = {**CASES, **(FULL_SIZE if ns.full_size else {})}
    env = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
    }
    results = {}
    for name, args in cases.items():
        repeats = 1 if name in FULL_SIZE else ns.repeats
        print(f"running {name} x{repeats}", file=sys.stderr)
        results[name] = run_case(args, repeats)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prune_cost.json").write_text(json.dumps({"env": env, "results": results}, indent=2) + "\n")
    lines = [
        f"# snipit prune cost (torch {env['torch']}, {env['threads']} threads, {env['cpu']})",
        "",
        "Wall time of the `snipit` process (start-up included), median [min–max] of the runs; "
        "`prune s` is the report's `seconds` (load + score + write); passes are forward+backward "
        "passes of `batch` images.",
        "",
        "| case | runs | wall s | prune s | passes × batch | s / pass |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        per_pass = f"{r['s_per_pass']:.3f}" if r["s_per_pass"] else "—"
        wall = f"{r['wall_median_s']:.1f} [{r['wall_min_s']:.1f}–{r['wall_max_s']:.1f}]"
        lines.append(
            f"| {name} | {r['runs']} | {wall} "
            f"| {r['prune_median_s']:.1f} | {r['passes']} × {r['batch_size']} | {per_pass} |"
        )
    lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in results.values()]
    (RESULTS / "prune_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
