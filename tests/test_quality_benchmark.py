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
