"""Dense and sparse storage through the CLI: prune writes dense unless asked for sparse, convert turns
one into the other bit for bit, report/compare show the sizes, and a 90% sparse resnet18 takes at most
a fifth in sparse storage."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from snipit_cli import load_model
from snipit_cli.cli.app import app
from snipit_cli.models.checkpoint import read_header_metadata, read_metadata, read_tensors

RESNET = ("timm:resnet18", "--method", "magnitude", "--sparsity", "0.9", "--input-size", "3,32,32")


def run(*args: object):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result


def bits(tensors: dict[str, torch.Tensor]) -> dict[str, bytes]:
    return {k: v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for k, v in tensors.items()}


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> Path:
    """One 90% sparse resnet18 (magnitude, random init) written both ways, as prune writes them:
    d by default, s with --storage sparse."""
    folder = tmp_path_factory.mktemp("storage")
    run("prune", *RESNET, "--storage", "sparse", "-o", folder / "s.safetensors", "-q")
    run("prune", *RESNET, "-o", folder / "d.safetensors", "-q")
    return folder


def test_prune_writes_dense_by_default_and_sparse_takes_at_most_a_fifth(resnet):
    sparse, dense = resnet / "s.safetensors", resnet / "d.safetensors"
    assert sparse.stat().st_size <= 0.2 * dense.stat().st_size
    assert json.loads((resnet / "s.report.json").read_text())["storage"]["format"] == "sparse"
    assert json.loads((resnet / "d.report.json").read_text())["storage"]["format"] == "dense"
    raw = load_file(sparse)
    assert "layer4.1.conv2.weight.__bitmask" in raw and "layer4.1.conv2.weight" not in raw
    assert read_metadata(sparse)["storage"]["encoding"] == "bitmask-v1"


def test_dense_storage_is_plain_safetensors_with_the_model_keys(resnet):
    plain = load_file(resnet / "d.safetensors")
    assert plain.keys() == load_model(resnet / "d.safetensors").state_dict().keys()
    assert bits(plain) == bits(read_tensors(resnet / "s.safetensors"))  # same seed, same bits


def test_both_storages_reload_to_identical_outputs(resnet):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = (load_model(resnet / f"{n}.safetensors")(x) for n in "sd")
    assert torch.equal(a, b)


def test_convert_both_ways_gives_the_files_prune_writes(resnet, tmp_path):
    run("convert", resnet / "s.safetensors", tmp_path / "d.safetensors", "--storage", "dense")
    run("convert", tmp_path / "d.safetensors", tmp_path / "s.safetensors", "--storage", "sparse")
    for name in ("d.safetensors", "s.safetensors"):  # stored tensors and metadata, bit for bit
        converted, written = tmp_path / name, resnet / name
        assert read_header_metadata(converted) == read_header_metadata(written)
        assert bits(load_file(converted)) == bits(load_file(written))


def test_convert_reports_what_it_wrote(resnet, tmp_path):
    out = tmp_path / "s.safetensors"
    doc = json.loads(run("convert", resnet / "d.safetensors", out, "--storage", "sparse", "--json").stdout)
    assert doc["file"]["size"] == out.stat().st_size
    assert doc["size_ratio"] == out.stat().st_size / (resnet / "d.safetensors").stat().st_size
    assert doc["storage"]["encoding"] == "bitmask-v1" and 0 < doc["encoded_tensors"] < doc["tensors"]


def test_convert_of_a_plain_file_keeps_it_plain(tmp_path):
    tensors = {"w": torch.randn(64, 64) * (torch.rand(64, 64) < 0.1), "b": torch.randn(64)}
    save_file(tensors, str(tmp_path / "plain.safetensors"))
    run("convert", tmp_path / "plain.safetensors", tmp_path / "s.safetensors", "--storage", "sparse")
    run("convert", tmp_path / "s.safetensors", tmp_path / "back.safetensors", "--storage", "dense")
    assert read_metadata(tmp_path / "s.safetensors")["storage"]["tensors"].keys() == {"w"}
    assert read_metadata(tmp_path / "back.safetensors") is None  # no snipit document invented
    assert bits(load_file(tmp_path / "back.safetensors")) == bits(tensors)


def test_report_and_compare_show_bytes_per_parameter_and_the_dense_ratio(resnet):
    sparse, dense = resnet / "s.safetensors", resnet / "d.safetensors"
    size, dense_file = sparse.stat().st_size, dense.stat().st_size
    doc = json.loads(run("report", sparse, "--json").stdout)
    file, params = doc["file"], doc["params"]
    state = load_model(dense).state_dict()
    assert file["size"] == size and doc["storage"]["encoding"] == "bitmask-v1"
    assert file["bytes_per_param"] == size / params["total"]
    assert file["dense_size"] == sum(t.numel() * t.element_size() for t in state.values())
    assert file["to_dense"] == size / file["dense_size"] <= 0.2
    rows = list(csv.reader(io.StringIO(run("compare", dense, sparse, "--format", "csv").stdout)))
    by_metric = {r[0]: r[1:] for r in rows[1:]}
    per_param = f"{size / params['total']:.4f} ({dense_file / size:.2f}x fewer)"
    assert by_metric["file bytes per parameter"][1] == per_param
    assert by_metric["file / dense"] == [
        f"{dense_file / file['dense_size']:.4f}",
        f"{file['to_dense']:.4f}",
    ]
    assert by_metric["storage"] == ["dense", "bitmask-v1"]
    assert "| file.to_dense |" in run("report", sparse, "--format", "markdown").stdout


def test_a_sparse_checkpoint_prunes_again(resnet, tmp_path):
    out = tmp_path / "t.safetensors"
    result = run(
        "prune", resnet / "s.safetensors", "--method", "magnitude", "--sparsity", "0.95", "-o", out,
        "--storage", "sparse", "--json",
    )  # fmt: skip
    assert json.loads(result.stdout)["sparsity"]["achieved"] == pytest.approx(0.95, abs=1e-6)
    assert out.stat().st_size < (resnet / "s.safetensors").stat().st_size
