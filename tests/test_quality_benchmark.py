"""benchmarks/quality.py --quick runs end to end on MNIST-format files (the pipeline, not the numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mnist_files import write_learnable_mnist

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "quality.py"


def test_quick_quality_benchmark_writes_table_json_and_plot(tmp_path):
    write_learnable_mnist(tmp_path / "mnist", 300)

    out = tmp_path / "results"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCHMARK),
            "--quick",
            "--data-root",
            str(tmp_path / "mnist"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "quality-quick.json").read_text())
    runs = doc["runs"]
    assert {(r["method"], r["sparsity"]) for r in runs if not r["structured"] and r["when"] == "init"} == {
        (m, s) for m in ("random", "magnitude", "snip", "snip-it", "grasp", "synflow") for s in (0.9, 0.99)
    }
    assert {r["method"] for r in runs if r["structured"]} == {"random", "l1", "snap", "snap-it"}
    for r in runs:
        assert 0.0 <= r["top1"] <= 1.0
        assert (r["train_samples"], r["test_samples"]) == (240, 60)
        if not r["structured"]:
            assert abs(r["achieved"] - r["sparsity"]) < 1e-6
    table = (out / "quality-quick.md").read_text()
    assert "| init | snip-it | 0.99 |" in table and "240 train / 60 test" in table
    png = (out / "quality-quick.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def _cifar_jpegs(root: Path, split: str, per_class: int, seed: int) -> None:
    """CIFAR-10's JPEG export layout: ``<split>/<class>/NNNN.jpg``, 32x32 RGB, 10 classes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label in range(10):
        folder = root / split / f"class{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            pixels[3 * label : 3 * label + 3] = 255  # each class lights its own band of rows
            Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=90)


UNSTRUCTURED = ("random", "magnitude", "snip", "snip-it", "grasp", "synflow")


def runs_of(doc: dict, panel: str) -> list[dict]:
    return [r for r in doc["runs"] if r["panel"] == panel]


def test_quick_cifar10_benchmark_writes_its_panels(tmp_path):
    _cifar_jpegs(tmp_path / "data" / "cifar10-train-jpg", "train", 10, 0)
    _cifar_jpegs(tmp_path / "data" / "cifar10-test-jpg", "test", 10, 1)
    out = tmp_path / "results"
    command = [sys.executable, str(BENCHMARK), "--quick", "--dataset", "cifar10"]
    proc = subprocess.run(
        [*command, "--data-root", str(tmp_path / "data"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads((out / "quality-quick-cifar10.json").read_text())
    assert set(doc["meta"]["panels"]) == {"cifar10", "guard", "trained", "disconnection", "latency"}
    assert {r["method"] for r in runs_of(doc, "guard")} == set(UNSTRUCTURED)
    runs = doc["runs"]
    trained = [r for r in runs if r["panel"] == "trained" and r["method"] != "dense"]
    methods = ("random", "magnitude", "snip", "snip-it", "grasp", "synflow", "l1", "snap", "snap-it")
    asked = {(m, recal) for m in methods for recal in (False, True)}
    assert {(r["method"], r["recalibrate"]) for r in trained} == asked
    assert all(0.0 <= r["top1"] <= 1.0 for r in runs if r["panel"] != "disconnection")
    disconnection = [r for r in runs if r["panel"] == "disconnection"]
    assert len(disconnection) == 6 and all(r["connectivity"]["units"] > 0 for r in disconnection)
    latency = runs_of(doc, "latency")
    assert sorted(r["target"] for r in latency) == ["latency", "macs"]
    for r in latency:  # each slim model timed again beside the dense one
        assert r["latency"]["removed"] == 1 - r["latency"]["slim_ms"] / r["latency"]["dense_ms"]
        assert 0.0 < r["macs_removed"] < 1.0
        assert 0.0 <= r["latency"]["top1_finetuned"] <= 1.0  # evaluated again after fine-tuning
    table = (out / "quality-quick.md").read_text()
    assert "--target latency against --target macs" in table and "top-1 fine-tuned" in table
    assert "without and with BatchNorm recalibration" in table and "| snip-it | 0.99 |" in table
    assert (out / "quality-quick-cifar10.png").read_bytes().startswith(b"\x89PNG")
