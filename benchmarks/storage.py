"""Checkpoint size and save/load time of sparse (bitmask) against dense storage.

Run by hand (not in the test suite):

    python benchmarks/storage.py [--repeats 5] [--sparsities 0.5,0.8,0.9,0.95,0.99] [--threads 1]

Prunes timm:resnet18 (random init, 1000 classes, ``--method magnitude``: data-free, so the figures
do not depend on calibration data) once per sparsity through ``run_prune``, then writes the same
model both ways with ``checkpoint_writer`` (atomically, as the CLI does) and reads it back with
``snipit_cli.load_model``, timing each (median of --repeats, interleaved). On a shared machine,
``--threads 1`` keeps the small per-tensor torch ops from waiting on a busy second core (they
then vary 10x run to run). Bits per weight are those of the encoded prunable weights alone
(mask + values, no header), against the ``(1 - s) * 32 + 1`` the encoding predicts. The zstd
columns compress the dense and the sparse file with the ``zstd`` command at level 3 (its
default; the generic alternative to a custom encoding) and time that compression.
Writes ``benchmarks/results/storage.md`` and ``storage.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

import snipit_cli
from snipit_cli.data.build import DataOptions
from snipit_cli.data.specs import parse_data_spec
from snipit_cli.fileio import write_atomic
from snipit_cli.models.checkpoint import checkpoint_writer, read_metadata
from snipit_cli.models.storage import MASK_SUFFIX, VALUES_SUFFIX
from snipit_cli.pruning.targets import prunable_weights
from snipit_cli.workflows.prune import ModelOptions, PruneRequest, run_prune

RESULTS = Path(__file__).parent / "results"
MODEL = "timm:resnet18"


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def prune_once(sparsity: float, folder: Path) -> tuple[torch.nn.Module, dict]:
    outcome = run_prune(
        PruneRequest(
            model=ModelOptions(MODEL),
            data=DataOptions(parse_data_spec("synthetic"), folder, batch_size=1, batches=1),
            method="magnitude",
            sparsity=sparsity,
            output=folder / "pruned.safetensors",
            force=True,
            storage="dense",
        )
    )
    document = read_metadata(folder / "pruned.safetensors")  # what the checkpoint stores
    return outcome.model, document


def weight_bits(path: Path, names: list[str]) -> float:
    """Stored bits per element of the prunable weights (encoded pairs, or dense when not encoded)."""
    raw = load_file(path)
    stored = numel = 0
    encoded = (read_metadata(path)["storage"]).get("tensors", {})
    for name in names:
        if name in encoded:
            pair = (raw[name + MASK_SUFFIX], raw[name + VALUES_SUFFIX])
            stored += sum(t.numel() * t.element_size() for t in pair)
            numel += math.prod(encoded[name]["shape"])
        else:
            stored += raw[name].numel() * raw[name].element_size()
            numel += raw[name].numel()
    return 8 * stored / numel


def zstd_bytes(path: Path) -> tuple[int, float]:
    """Size of ``zstd -3`` of a file, and the seconds compressing it took (the CLI, one thread)."""
    started = time.perf_counter()
    done = subprocess.run(["zstd", "-3", "-q", "-c", str(path)], capture_output=True, check=True)
    return len(done.stdout), time.perf_counter() - started


def row(sparsity: float, repeats: int, folder: Path) -> dict:
    model, document = prune_once(sparsity, folder)
    names = [f"{layer}.weight" for layer in prunable_weights(model)]
    paths = {s: folder / f"{s}.safetensors" for s in ("dense", "sparse")}
    save = {s: [] for s in paths}
    load = {s: [] for s in paths}
    for _ in range(repeats):  # interleaved, so drift in machine load hits both alike
        for storage, path in paths.items():
            save[storage].append(
                timed(lambda p=path, s=storage: write_atomic(p, checkpoint_writer(model, document, s)))
            )
            load[storage].append(timed(lambda p=path: snipit_cli.load_model(p)))
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = torch.equal(
            snipit_cli.load_model(paths["dense"])(x), snipit_cli.load_model(paths["sparse"])(x)
        )
    dense_bytes, sparse_bytes = (paths[s].stat().st_size for s in ("dense", "sparse"))
    zstd = {s: zstd_bytes(p) for s, p in paths.items()}
    return {
        "sparsity": sparsity,
        "achieved": document["sparsity"]["achieved"],
        "dense_bytes": dense_bytes,
        "sparse_bytes": sparse_bytes,
        "ratio": sparse_bytes / dense_bytes,
        "zstd3_dense_bytes": zstd["dense"][0],
        "zstd3_sparse_bytes": zstd["sparse"][0],
        "zstd3_dense_ratio": zstd["dense"][0] / dense_bytes,
        "zstd3_dense_s": zstd["dense"][1],
        "bits_per_weight": weight_bits(paths["sparse"], names),
        "bits_per_weight_predicted": (1 - document["sparsity"]["achieved"]) * 32 + 1,
        "save_s": {s: spread(v) for s, v in save.items()},
        "load_s": {s: spread(v) for s, v in load.items()},
        "identical_outputs": same,
    }


def markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [
        "# Checkpoint storage: sparse (bitmask) against dense and zstd -3",
        "",
        f"Command: `{meta['command']}`; torch {meta['torch']}, {meta['threads']} threads, {meta['machine']}. "
        f"{MODEL} (random init, 1000 classes), magnitude pruning; times are median [min–max] (n runs) "
        "of `checkpoint_writer` (encode + atomic write) and `snipit_cli.load_model` (read + decode + build).",
        "",
        "| sparsity | dense bytes | sparse bytes | sparse / dense | bits/weight (pruned layers) | "
        "predicted (1−s)·32+1 | zstd -3 dense bytes | zstd -3 dense / dense | zstd -3 sparse bytes | "
        "zstd -3 dense s | save dense s | save sparse s | load dense s | load sparse s | same outputs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['sparsity']} | {r['dense_bytes']:,} | {r['sparse_bytes']:,} | {r['ratio']:.4f} | "
            f"{r['bits_per_weight']:.2f} | {r['bits_per_weight_predicted']:.2f} | "
            f"{r['zstd3_dense_bytes']:,} | {r['zstd3_dense_ratio']:.4f} | {r['zstd3_sparse_bytes']:,} | "
            f"{r['zstd3_dense_s']:.2f} | "
            f"{_fmt(r['save_s']['dense'])} | {_fmt(r['save_s']['sparse'])} | "
            f"{_fmt(r['load_s']['dense'])} | {_fmt(r['load_s']['sparse'])} | {r['identical_outputs']} |"
        )
    return "\n".join(lines) + "\n"


def _fmt(s: dict) -> str:
    return f"{s['median']:.3f} [{s['min']:.3f}–{s['max']:.3f}] (n={s['n']})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sparsities", default="0.5,0.8,0.9,0.95,0.99")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads [default: torch's]")
    args = parser.parse_args(argv)
    if shutil.which("zstd") is None:
        parser.error("the zstd command is needed for the zstd -3 columns (apt install zstd)")
    if args.threads:
        torch.set_num_threads(args.threads)
    results: dict = {
        "meta": {
            "command": "python benchmarks/storage.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": f"{platform.machine()}, {platform.python_version()}",
        },
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for sparsity in (float(s) for s in args.sparsities.split(",")):
            started = time.perf_counter()
            results["rows"].append(row(sparsity, args.repeats, Path(tmp)))
            print(f"sparsity {sparsity}: {time.perf_counter() - started:.0f}s", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "storage.json").write_text(json.dumps(results, indent=1))
    (args.out / "storage.md").write_text(markdown(results))
    print(args.out / "storage.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
