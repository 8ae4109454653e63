"""Data-parallel scoring under torchrun against one process: time, and whether the masks agree.

Run by hand (not part of the test suite):

    python benchmarks/parallel.py [--repeats 3] [--nproc 2]

Writes benchmarks/results/parallel.md and parallel.json. Every run is the real `snipit` script:
alone (with 1 thread, and with as many threads as torch uses by default), and under
`python -m torch.distributed.run --standalone --nproc-per-node N` (gloo on loopback, 1 thread per
rank, as torchrun sets). On a CPU box the N ranks share the same cores, so the honest comparison
is N ranks x 1 thread against 1 process x 1 thread (scaling at equal per-process resources) and
against 1 process x N threads (the same cores used another way). Mask agreement is reported
against both single-process runs: a thread count changes the float summation order inside
every convolution's backward pass, and the SNIP-it schedule can amplify that (see the README).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import torch

from snipit_cli.models.checkpoint import read_tensors

SNIPIT = str(Path(sysconfig.get_path("scripts")) / "snipit")
RESULTS = Path(__file__).parent / "results"
JOB = ["timm:resnet18", "--num-classes", "10", "--input-size", "3,32,32"] + [
    "--batches",
    "8",
    "--batch-size",
    "64",
]
CASES = {
    "snip-it, resnet18 @ 32 px, 8 x 64 images per step": [*JOB, "--sparsity", "0.9"],
    "snap-it --structured, resnet18 @ 32 px, 8 x 64": [*JOB, "--structured", "--sparsity", "0.5"],
}


def launch(args: list[str], mode: str, nproc: int, workdir: str) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK"}}
    env["GLOO_SOCKET_IFNAME"] = "lo"
    if mode == "1 process x 1 thread":
        env["OMP_NUM_THREADS"] = "1"
    cmd = [SNIPIT, "prune", *args, "-o", "out.safetensors", "--json", "--force"]
    if mode.startswith("torchrun"):
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        cmd = [*launcher, "--nproc-per-node", str(nproc), *cmd]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return wall, json.loads(proc.stdout)


def agreement(a: Path, b: Path) -> float:
    """Share of weights with the same kept/pruned state (same shapes); 1.0 for identical slim models."""
    ta, tb = read_tensors(a), read_tensors(b)
    if {k: t.shape for k, t in ta.items()} != {k: t.shape for k, t in tb.items()}:
        return 0.0
    same = sum(int(((ta[k] != 0) == (tb[k] != 0)).sum()) for k in ta if ta[k].dim() > 1)
    return same / sum(ta[k].numel() for k in ta if ta[k].dim() > 1)


def run_case(args: list[str], repeats: int, nproc: int) -> dict:
    threads = torch.get_num_threads()
    modes = ["1 process x 1 thread", f"1 process x {threads} threads", f"torchrun {nproc} x 1 thread"]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {}
        for mode in modes:
            walls, inner = [], []
            for _ in range(repeats):
                wall, report = launch(args, mode, nproc, tmp)
                walls.append(wall)
                inner.append(report["run"]["seconds"])
            kept = Path(tmp) / f"{len(outputs)}.safetensors"
            os.replace(Path(tmp) / "out.safetensors", kept)
            outputs[mode] = kept
            rows[mode] = {
                "wall_median_s": statistics.median(walls),
                "wall_min_s": min(walls),
                "wall_max_s": max(walls),
                "prune_median_s": statistics.median(inner),
                "samples_per_rank": report["pruning"]["calibration"]["samples_per_rank"],
            }
        for mode in modes:
            rows[mode]["mask_agreement_with_1x1"] = agreement(outputs[modes[0]], outputs[mode])
            rows[mode]["mask_agreement_with_1xN"] = agreement(outputs[modes[1]], outputs[mode])
    one = rows[modes[0]]["prune_median_s"]
    for mode in modes:
        rows[mode]["speedup_vs_1x1"] = one / rows[mode]["prune_median_s"]
    return {"command": "snipit prune " + " ".join(args), "runs": repeats, "modes": rows}


def write(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "parallel.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# Data-parallel scoring: torchrun (gloo, loopback) against one process",
        "",
        f"Machine: {results['machine']}; torch {results['torch']}; {results['runs']} runs per row, median "
        "[min-max]. `prune s` is the report's `seconds` (load, score, write; no interpreter start-up).",
        "",
    ]
    for name, case in results["cases"].items():
        lines += [f"## {name}", "", f"`{case['command']}`", ""]
        lines += [
            "| mode | wall s | prune s | speed-up vs 1x1 (prune s) | samples per rank "
            "| masks = 1 process x 1 thread | masks = 1 process x N threads |",
            "|---|---|---|---|---|---|---|",
        ]
        for mode, r in case["modes"].items():
            lines.append(
                f"| {mode} | {r['wall_median_s']:.1f} [{r['wall_min_s']:.1f}-{r['wall_max_s']:.1f}] | "
                f"{r['prune_median_s']:.1f} | {r['speedup_vs_1x1']:.2f}x | {r['samples_per_rank']} | "
                f"{r['mask_agreement_with_1x1']:.6f} | {r['mask_agreement_with_1xN']:.6f} |"
            )
        lines.append("")
    (RESULTS / "parallel.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--replot", action="store_true", help="rewrite parallel.md from parallel.json")
    args = parser.parse_args()
    if args.replot:
        write(json.loads((RESULTS / "parallel.json").read_text()))
        print((RESULTS / "parallel.md").read_text())
        return
    cases = {name: run_case(case, args.repeats, args.nproc) for name, case in CASES.items()}
    write(
        {
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, no GPU",
            "torch": torch.__version__,
            "runs": args.repeats,
            "cases": cases,
        }
    )
    print((RESULTS / "parallel.md").read_text())


if __name__ == "__main__":
    main()
