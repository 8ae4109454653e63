"""ONNX export of slim models at full resolution: file size, |onnx - torch|, and onnxruntime
against PyTorch latency on this machine's CPU.

    python benchmarks/export.py [--repeats 20] [--sparsity 0.5]

Each model (timm, random init, 1000 classes, 224 px) is pruned with SNAP-it (``--structured``, a
few synthetic calibration batches: the figures here are about the export, not the pruning), then
exported through ``run_export`` exactly as ``snipit export`` does, with its parity check on
batches 1 and 8 and its interleaved timing (median of --repeats per runtime and batch).
Writes ``benchmarks/results/export.md`` and ``export.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from snipit_cli.data.build import DataOptions
from snipit_cli.data.specs import parse_data_spec
from snipit_cli.pruning.structured.options import StructuredOptions
from snipit_cli.workflows.export import ExportRequest, run_export
from snipit_cli.workflows.prune import ModelOptions, PruneRequest, run_prune

RESULTS = Path(__file__).parent / "results"
MODELS = ("timm:resnet18", "timm:efficientnet_b0", "timm:vit_tiny_patch16_224")


def row(model: str, sparsity: float, repeats: int, folder: Path) -> dict:
    slim = folder / f"{model.split(':')[1]}-slim.safetensors"
    pruned = run_prune(
        PruneRequest(
            model=ModelOptions(model),
            data=DataOptions(parse_data_spec("synthetic"), folder, batch_size=4, batches=2),
            sparsity=sparsity,
            steps=1,
            structured=StructuredOptions(),
            output=slim,
            force=True,
        )
    ).report
    started = time.perf_counter()
    doc = run_export(
        ExportRequest(
            ModelOptions(str(slim)), folder / "m.onnx", check_batches=[1, 8], repeats=repeats, force=True
        )
    )
    return {
        "model": model,
        "params": pruned["params"]["total"],
        "dense_params": pruned["params"]["dense"],
        "macs": pruned["macs"]["remaining"],
        "dense_macs": pruned["macs"]["dense"],
        "onnx_bytes": doc["file"]["size"],
        "opset": doc["onnx"]["opset"],
        "max_abs_diff": doc["parity"]["max_abs_diff"],
        "max_rel_diff": doc["parity"]["max_rel_diff"],
        "by_batch": doc["parity"]["by_batch"],
        "latency": doc["latency"],
        "export_s": time.perf_counter() - started,
    }


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# ONNX export of slim models",
        "",
        f"Command: `{meta['command']}`; torch {meta['torch']} ({meta['threads']} threads), "
        f"{meta['versions']}, {meta['machine']}. Each model: timm, random init, 1000 classes, 3x224x224, "
        f"SNAP-it at {meta['sparsity']} of nodes; `snipit export`'s own check and timing "
        "(median [min–max] ms of one forward, the runtimes one after the other per batch size).",
        "",
        "| model | params (dense) | MACs (dense) | .onnx bytes | max \\|onnx − torch\\| (batch 1, 8) | "
        "relative | "
        "batch 1: onnxruntime / torch ms | batch 8: onnxruntime / torch ms | export + check s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lat = r["latency"]["batch_sizes"]
        cells = [
            f"{_ms(lat[b]['onnxruntime'])} / {_ms(lat[b]['torch'])} ({lat[b]['speedup']:.2f}x)"
            for b in ("1", "8")
        ]
        lines.append(
            f"| {r['model']} | {r['params'] / 1e6:.2f}M ({r['dense_params'] / 1e6:.2f}M) | "
            f"{r['macs'] / 1e6:.0f}M ({r['dense_macs'] / 1e6:.0f}M) | {r['onnx_bytes']:,} | "
            f"{r['by_batch']['1']:.2g}, {r['by_batch']['8']:.2g} | {r['max_rel_diff']:.2g} | "
            f"{cells[0]} | {cells[1]} | "
            f"{r['export_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _ms(s: dict) -> str:
    return f"{s['median_ms']:.2f} [{s['min_ms']:.2f}–{s['max_ms']:.2f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from snipit_cli.models.onnx_export import versions

    results: dict = {
        "meta": {
            "command": "python benchmarks/export.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "versions": ", ".join(f"{k} {v}" for k, v in versions().items()),
            "machine": f"{platform.machine()}, {platform.python_version()}",
            "sparsity": args.sparsity,
        },
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for model in MODELS:
            started = time.perf_counter()
            results["rows"].append(row(model, args.sparsity, args.repeats, Path(tmp)))
            print(f"{model}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "export.json").write_text(json.dumps(results, indent=1))
    (args.out / "export.md").write_text(markdown(results))
    print(args.out / "export.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
