"""``snipit report`` / ``snipit compare``: exact figures, formats, plots, ratios, pipelines."""

import csv
import io
import json
import os
import subprocess
import sys

import pytest
import torch

from snipit_cli.metrics.accuracy import evaluate
from snipit_cli.metrics.macs import macs_by_module
from snipit_cli.models.checkpoint import read_tensors

REPORT_KEYS = {"snipit_version", "model", "pruning", "params", "sparsity", "macs", "file", "storage",
               "layers", "eval", "latency"}  # fmt: skip
#: What 0.1's ``source`` and ``totals`` held, at their schema-2 places (CHANGELOG).
BLOCK_KEYS = {
    "model": {"source"},
    "params": {"total", "nonzero", "prunable", "prunable_nonzero"},
    "sparsity": {"weights", "nodes"},
    "macs": {"remaining"},
    "file": {"size"},
}
#: The blocks 0.1's ``totals`` was made of.
TOTALS_BLOCKS = ("params", "sparsity", "nodes", "macs", "file", "storage")
SMALL = (
    "--input-size",
    "3,32,32",
    "--num-classes",
    "10",
    "--batch-size",
    "2",
    "--batches",
    "1",
    "--steps",
    "1",
)


@pytest.fixture
def sparse_tiny(cli, tiny_checkpoint, tiny_arch, tmp_path):
    args = (
        "--input-size",
        "3,8,8",
        "--batch-size",
        "4",
        "--batches",
        "1",
        "--steps",
        "1",
        "--sparsity",
        "0.7",
    )
    result = cli("prune", tiny_checkpoint, "--arch", tiny_arch, *args, "-o", "sparse.safetensors")
    assert result.exit_code == 0, result.stderr
    return tmp_path / "sparse.safetensors"


@pytest.fixture
def slim_resnet(cli, tmp_path):
    result = cli(
        "prune", "timm:resnet18", "--structured", "--sparsity", "0.5", *SMALL, "-o", "slim.safetensors"
    )
    assert result.exit_code == 0, result.stderr
    return tmp_path / "slim.safetensors"


def test_report_of_a_known_checkpoint_is_exact(cli, sparse_tiny):
    result = cli("report", sparse_tiny, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc.keys() >= REPORT_KEYS and all(doc[block].keys() >= keys for block, keys in BLOCK_KEYS.items())
    tensors = read_tensors(sparse_tiny)
    weights = [tensors[f"{n}.weight"] for n in ("features.0", "features.3", "head")]
    total, zeros = sum(w.numel() for w in weights), sum(int((w == 0).sum()) for w in weights)
    assert doc["params"]["prunable"] == total and doc["params"]["prunable_nonzero"] == total - zeros
    assert doc["sparsity"]["weights"] == pytest.approx(zeros / total) == pytest.approx(0.7, abs=1 / total)
    assert doc["params"]["total"] == sum(
        t.numel() for k, t in tensors.items() if "running" not in k and "num_batches" not in k
    )
    assert doc["file"]["size"] == sparse_tiny.stat().st_size
    assert doc["pruning"]["method"] == "snip-it" and doc["sparsity"]["nodes"] is None
    # MACs: 4x3x9 taps at 8x8 + 8x4x9 at 8x8 + 8x5 (the tiny CNN keeps its 8x8 maps)
    assert doc["macs"]["remaining"] == 4 * 3 * 9 * 64 + 8 * 4 * 9 * 64 + 8 * 5
    assert [r["macs"] for r in doc["layers"]] == [4 * 3 * 9 * 64, 8 * 4 * 9 * 64, 8 * 5]


def test_markdown_and_csv_parse(cli, sparse_tiny):
    md = cli("report", sparse_tiny, "--format", "markdown").stdout
    table_lines = [line for line in md.splitlines() if line.startswith("|")]
    assert table_lines and len({line.count("|") for line in table_lines[-4:]}) == 1
    rows = list(csv.DictReader(io.StringIO(cli("report", sparse_tiny, "--format", "csv").stdout)))
    assert [r["name"] for r in rows] == ["features.0", "features.3", "head"]
    assert rows[0]["shape"] == "4x3x3x3" and float(rows[0]["sparsity"]) >= 0


def test_a_disconnected_model_shows_its_connectivity(cli, tiny_checkpoint, tiny_arch, tmp_path):
    args = ("--input-size", "3,8,8", "--batch-size", "4", "--batches", "1", "--steps", "1")
    result = cli("prune", tiny_checkpoint, "--arch", tiny_arch, *args, "--sparsity", "0.99",
                 "--allow-collapse", "-o", "cut.safetensors")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = cli("report", "cut.safetensors", "--format", "markdown")
    assert report.exit_code == 0 and "| connectivity.path | no |" in report.stdout
    assert "### disconnected layers" in report.stdout and "no input-to-output path" in report.stderr
    rows = list(csv.DictReader(io.StringIO(cli("report", "cut.safetensors", "--format", "csv").stdout)))
    assert [r["name"] for r in rows] == ["features.0", "features.3", "head"]  # CSV: still the layers
    compared = cli("compare", tiny_checkpoint, "cut.safetensors", "--arch", tiny_arch, "--input-size",
                   "3,8,8", "--format", "markdown").stdout  # fmt: skip
    assert "| input-to-output path | yes | no |" in compared
    assert "| disconnected units | 0 |" in compared


def test_plot_is_a_real_png(cli, slim_resnet, tmp_path):
    result = cli("report", slim_resnet, "--plot", "layers.png", "--json")
    assert result.exit_code == 0, result.stderr
    data = (tmp_path / "layers.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    json.loads(result.stdout)


def test_plot_without_matplotlib_is_a_clear_error(cli, sparse_tiny, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    result = cli("report", sparse_tiny, "--plot", "x.png")
    assert result.exit_code == 2 and "pip install 'snipit-cli[plot]'" in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_compare_ratios_match_the_individual_reports(cli, slim_resnet):
    dense_args = ("--num-classes", "10", "--input-size", "3,32,32")
    result = cli("compare", "timm:resnet18", slim_resnet, *dense_args, "--latency", "--repeats", "3",
                 "--warmup", "1", "--latency-batch", "2", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    dense, slim = doc["models"]
    single = json.loads(cli("report", slim_resnet, "--json").stdout)
    assert {b: slim[b] for b in TOTALS_BLOCKS} == {b: single[b] for b in TOTALS_BLOCKS}
    ratio = doc["ratios"][1]
    assert ratio["params"] == dense["params"]["total"] / slim["params"]["total"] > 1
    assert ratio["macs"] == dense["macs"]["remaining"] / slim["macs"]["remaining"] > 1
    t_dense, t_slim = dense["latency"]["batch_sizes"]["2"], slim["latency"]["batch_sizes"]["2"]
    assert ratio["speedup"]["2"] == t_dense["median_ms"] / t_slim["median_ms"]
    assert dense["latency"]["threads"] == torch.get_num_threads() and dense["latency"]["repeats"] == 3
    assert doc["ratios"][0]["params"] == 1.0


def test_compare_plot_and_table(cli, slim_resnet, tmp_path):
    args = ("timm:resnet18", slim_resnet, "--num-classes", "10", "--input-size", "3,32,32", "--latency",
            "--repeats", "2", "--warmup", "0", "--latency-batch", "1")  # fmt: skip
    result = cli("compare", *args, "--plot", "cmp.png")
    assert result.exit_code == 0, result.stderr
    assert "fewer" in result.stdout and "faster" in result.stdout
    assert (tmp_path / "cmp.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_names_the_model_that_cannot_load(cli, slim_resnet):
    result = cli("compare", slim_resnet, "missing.safetensors")
    assert result.exit_code == 2 and "cannot load missing.safetensors" in result.stderr
    assert cli("compare", slim_resnet).exit_code == 2


def test_eval_on_an_image_folder(cli, sparse_tiny, tmp_path):
    from PIL import Image

    for label in ("a", "b"):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * i, 80, 120)).save(tmp_path / "imgs" / label / f"{i}.png")
    data = f"imagefolder:{tmp_path / 'imgs'}"
    result = cli("report", sparse_tiny, "--data", data, "--eval", "--batch-size", "4", "--json")
    assert result.exit_code == 0, result.stderr
    ev = json.loads(result.stdout)["eval"]
    assert ev["samples"] == 6 and 0 <= ev["top1"] <= ev["top5"] <= 1 and ev["loss"] > 0


def test_evaluate_against_hand_computed_accuracy():
    model = torch.nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))  # logits = inputs
    x = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [1.0, 2.0, 3.0]])
    y = torch.tensor([0, 2, 0])  # right, second guess, third guess
    result = evaluate(model, batches=[(x, y)])
    assert result["top1"] == pytest.approx(1 / 3) and result["top5"] == 1.0 and result["samples"] == 3
    assert result["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(x, y)))


def test_macs_by_module_names_layers():
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(256, 5)
    )
    macs = macs_by_module(net, (3, 8, 8))
    assert macs == {"": 4 * 3 * 9 * 64 + 256 * 5, "0": 4 * 3 * 9 * 64, "2": 256 * 5}


def test_every_json_output_is_clean_in_a_pipeline(tmp_path, slim_resnet):
    """Through real processes with stdout piped and colour forced on: stdout is JSON and nothing else."""
    snipit = [sys.executable, "-m", "snipit_cli"]
    env = {**os.environ, "FORCE_COLOR": "1"}
    commands = [
        ["methods", "--json"],
        ["prune", "timm:resnet18", *SMALL, "--sparsity", "0.5", "-o", "p.safetensors", "--json"],
        ["report", str(slim_resnet), "--json"],
        ["compare", str(slim_resnet), "p.safetensors", "--json"],
    ]

    def start(args):
        return subprocess.Popen(
            [*snipit, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def clean_json(proc):
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
        json.loads(stdout)
        assert "\x1b" not in stdout

    for proc in [start(args) for args in commands[:3]]:  # side by side: mostly importing torch
        clean_json(proc)
    clean_json(start(commands[3]))  # compare reads the file prune wrote


def test_a_redirected_table_keeps_whole_layer_names(tmp_path, slim_resnet):
    """`snipit report x > report.txt` must not cut names to 80 columns."""
    proc = subprocess.run(
        [sys.executable, "-m", "snipit_cli", "report", str(slim_resnet)],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "layer4.0.downsample.0" in proc.stdout
    assert "…" not in proc.stdout
