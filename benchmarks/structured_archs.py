"""SNAP-it at 50% node sparsity on every architecture the structured tests cover.

Run by hand (not part of the test suite):

    python benchmarks/structured_archs.py [--px 32] [--batches 2] [--batch-size 8]

Writes benchmarks/results/structured_archs.md and .json: per architecture the node, parameter and
MAC counts dense -> slim, the equivalence check's relative difference, and the wall time of the
whole `run_prune` call (random init, synthetic calibration data).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from snipit_cli.data.build import DataOptions
from snipit_cli.data.specs import DataSpec
from snipit_cli.pruning.structured.options import StructuredOptions
from snipit_cli.workflows.prune import ModelOptions, PruneRequest, run_prune

ARCHS = [
    "timm:resnet18",
    "timm:resnet50",
    "timm:mobilenetv3_small_100",
    "timm:efficientnet_b0",
    "timm:convnext_atto",
    "timm:densenet121",
    "timm:regnety_002",
    "timm:vgg11_bn",
    "torchvision:resnet18",
    "torchvision:mobilenet_v2",
    "timm:vit_tiny_patch16_224",
]
RESULTS = Path(__file__).parent / "results"


def run(spec: str, px: int, batches: int, batch_size: int, folder: Path) -> dict:
    request = PruneRequest(
        model=ModelOptions(
            spec,
            num_classes=10,
            input_size=(3, px, px),
            arch_kwargs={"img_size": px} if "vit" in spec else None,
        ),
        data=DataOptions(DataSpec("synthetic"), folder, batch_size=batch_size, batches=batches),
        sparsity=0.5,
        output=folder / f"{spec.replace(':', '_')}.safetensors",
        structured=StructuredOptions(),
    )
    start = time.perf_counter()
    report = run_prune(request).report
    return {
        "seconds": time.perf_counter() - start,
        "nodes": report["nodes"],
        "params": {"dense": report["params"]["dense"], "slim": report["params"]["total"]},
        "macs": report["macs"],
        "max_rel_diff": report["pruning"]["equivalence"]["max_rel_diff"],
        "passes": report["pruning"]["calibration"]["passes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--px", type=int, default=32)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    ns = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for spec in ARCHS:
            print(f"pruning {spec}", file=sys.stderr)
            results[spec] = run(spec, ns.px, ns.batches, ns.batch_size, Path(tmp))
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(), "px": ns.px,
           "batches": ns.batches, "batch_size": ns.batch_size}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "structured_archs.json").write_text(
        json.dumps({"env": env, "results": results}, indent=2) + "\n"
    )
    lines = [
        f"# SNAP-it, 50% node sparsity, {ns.px} px, {ns.batches} x {ns.batch_size} synthetic images, "
        f"5 steps (torch {env['torch']}, {env['threads']} threads)",
        "",
        "| model | nodes dense → slim | params dense → slim | MACs dense → slim | max rel diff | s |",
        "|---|---|---|---|---|---|",
    ]
    for spec, r in results.items():
        n, p, m = r["nodes"], r["params"], r["macs"]
        lines.append(
            f"| {spec} | {n['dense']:,} → {n['remaining']:,} | {p['dense']:,} → {p['slim']:,} "
            f"({p['slim'] / p['dense']:.2f}×) | {m['dense']:,} → {m['remaining']:,} "
            f"({m['remaining'] / m['dense']:.2f}×) "
            f"| {r['max_rel_diff']:.1e} | {r['seconds']:.1f} |"
        )
    lines += ["", f"Command: `python benchmarks/structured_archs.py --px {ns.px} --batches {ns.batches} "
              f"--batch-size {ns.batch_size}`"]  # fmt: skip
    (RESULTS / "structured_archs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
