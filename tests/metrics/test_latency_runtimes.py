"""``--latency-runtime``: each runtime computes what the model computes, leaves it as it was, and
the CLI names the runtime it timed; a runtime a model or machine cannot run on is one line."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from torch import nn

from snipit_cli.metrics.latency import forward_on, measure_latency, probe_batch
from snipit_cli.metrics.runtimes import RUNTIMES


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 5),
    ).eval()  # fmt: skip


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_each_runtime_computes_the_models_output_and_restores_it(runtime):
    model, x = _net(), probe_batch((3, 16, 16), 3)
    with torch.inference_mode():
        expected = model(x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with forward_on(model, (3, 16, 16), runtime) as (forward, label), torch.inference_mode():
        got = forward(x)
    got = torch.as_tensor(got)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
    assert label.startswith(
        {"torch": "torch", "channels-last": "torch channels-last"}.get(runtime, "onnxruntime")
    )
    for name, tensor in model.state_dict().items():  # channels-last is undone: NCHW again, same values
        assert tensor.is_contiguous() and torch.equal(tensor, before[name])


def test_measure_latency_says_which_runtime_it_timed():
    timing = measure_latency(
        _net(), (3, 16, 16), batch_sizes=(2,), repeats=2, warmup=0, runtime="onnxruntime"
    )
    assert timing["runtime"].startswith("onnxruntime ") and timing["runtime"].endswith("(CPU)")
    assert timing["batch_sizes"]["2"]["median_ms"] > 0 and timing["threads"] == torch.get_num_threads()


@pytest.fixture
def slim_cnn(cli, tmp_path):
    out = tmp_path / "slim.safetensors"
    result = cli(
        "prune", "snipit:small-cnn", "--structured", "--sparsity", "0.5", "--batches", "1", "-o", out, "-q"
    )
    assert result.exit_code == 0, result.stderr
    return out


@pytest.mark.parametrize(
    ("runtime", "label"), [("channels-last", "torch channels-last"), ("onnxruntime", "onnxruntime")]
)
def test_compare_times_both_models_on_the_runtime_asked(cli, slim_cnn, runtime, label):
    timing = ("--latency-batch", "2", "--repeats", "2", "--warmup", "0", "--device", "cpu", "--json")
    result = cli("compare", "snipit:small-cnn", slim_cnn, "--latency", "--latency-runtime", runtime, *timing)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    dense, slim = (m["latency"] for m in doc["models"])
    assert dense["runtime"] == slim["runtime"] and dense["runtime"].startswith(label)
    assert (
        doc["ratios"][1]["speedup"]["2"]
        == dense["batch_sizes"]["2"]["median_ms"] / slim["batch_sizes"]["2"]["median_ms"]
    )
    table = cli("report", slim_cnn, "--latency", "--latency-runtime", runtime, "--latency-batch", "1",
                "--repeats", "1", "--warmup", "0", "--device", "cpu")  # fmt: skip
    assert table.exit_code == 0 and label in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("snipit:small-cnn", "--latency-runtime", "onnxruntime"),
         "error: --latency-runtime onnxruntime says where to time: add --latency"),
    ],
)  # fmt: skip
def test_a_runtime_out_of_place_is_one_line(cli, args, message):
    result = cli("report", *args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1


def test_onnxruntime_missing_names_the_extra(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails as if not installed
    result = cli(
        "report", "snipit:small-cnn", "--latency", "--latency-runtime", "onnxruntime", "--device", "cpu"
    )
    assert result.exit_code == 2 and len(result.stderr.splitlines()) == 1
    assert "onnxruntime not installed" in result.stderr and "pip install 'snipit-cli[onnx]'" in result.stderr
