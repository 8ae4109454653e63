"""``snipit export``: slim ResNet, EfficientNet and ViT (and dense models) to ONNX with a dynamic
batch dimension, checked by onnxruntime against PyTorch; a file that computes something else, a
model the exporter cannot trace and a missing extra are one-line errors that leave no file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

import snipit_cli

SMALL = ("--num-classes", "5", "--batch-size", "4", "--batches", "1", "--steps", "1")
SLIM = {  # timm's test models: the architectures' own blocks, at a few hundred thousand params
    "resnet": ("timm:test_resnet", "--input-size", "3,32,32"),
    "efficientnet": ("timm:test_efficientnet", "--input-size", "3,32,32"),
    "vit": ("timm:test_vit", "--input-size", "3,32,32", "--arch-kwargs", '{"img_size": 32}'),
}
QUICK = ("--repeats", "2", "--warmup", "0")


def _one_error(result) -> str:
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "internal error" not in lines[0] and result.stdout == ""
    return lines[0]


def _ort(path: Path, x: torch.Tensor) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


@pytest.mark.parametrize("arch", list(SLIM))
def test_a_slim_model_exports_with_a_dynamic_batch_and_matches_torch(cli, tmp_path, arch):
    model, *rest = SLIM[arch]
    pruned = cli("prune", model, *rest, *SMALL, "--structured", "--sparsity", "0.3", "-o", "slim.safetensors")
    assert pruned.exit_code == 0, pruned.stderr
    result = cli("export", "slim.safetensors", "-o", "slim.onnx", *QUICK, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (
        doc["file"]["path"] == "slim.onnx" and doc["file"]["size"] == (tmp_path / "slim.onnx").stat().st_size
    )
    assert doc["onnx"]["dynamic_batch"] is True and doc["onnx"]["opset"] >= 18
    assert list(doc["parity"]["by_batch"]) == ["1", "3"] and doc["parity"]["max_abs_diff"] <= 1e-4
    assert all(t["onnxruntime"]["median_ms"] > 0 and t["torch"]["median_ms"] > 0
               for t in doc["latency"]["batch_sizes"].values())  # fmt: skip

    proto = onnx.load(tmp_path / "slim.onnx")
    onnx.checker.check_model(proto)
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # symbolic, not a fixed size
    torch_model = snipit_cli.load_model(tmp_path / "slim.safetensors")
    assert doc["model"]["input_size"] == [3, 32, 32]
    for batch in (1, 5):  # 5: a size the check did not use
        x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = torch_model(x).numpy()
        np.testing.assert_allclose(_ort(tmp_path / "slim.onnx", x), expected, rtol=0, atol=1e-4)


def test_a_library_model_exports_and_the_line_says_what_was_measured(cli, tmp_path):
    result = cli("export", "timm:test_resnet", "--num-classes", "3", "--input-size", "3,32,32", *QUICK)
    assert result.exit_code == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith("wrote test_resnet.onnx (") and ", dynamic batch): max |onnx - torch| = " in line
    assert "on batches 1 and 3; batch 1: onnxruntime " in line and "(median of 2)" in line
    assert (tmp_path / "test_resnet.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_resnet.onnx"]  # no temp left


def test_a_file_that_computes_something_else_is_refused_and_not_left(cli, tmp_path):
    torch.save(__import__("tiny_models").DriftingCNN().state_dict(), tmp_path / "drift.pt")
    args = ("--arch", "tiny_models:DriftingCNN", "--input-size", "3,8,8", "-o", "d.onnx")
    last = _one_error(cli("export", "drift.pt", *args))
    assert (
        "the ONNX export of drift.pt differs from PyTorch by up to" in last and "nothing was written" in last
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drift.pt"]


def test_a_model_the_exporter_cannot_trace_is_one_line(cli, tmp_path):
    torch.save(__import__("tiny_models").DataDependentCNN().state_dict(), tmp_path / "dd.pt")
    args = ("--arch", "tiny_models:DataDependentCNN", "--input-size", "3,8,8", "-o", "dd.onnx")
    last = _one_error(cli("export", "dd.pt", *args))
    assert last.startswith("error: the ONNX exporter cannot export this model: ") and "--debug" in last
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dd.pt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-o", "m.pt"), "-o/--output must end in .onnx, got m.pt"),
        (("--check-batch", "0"), "--check-batch sizes must be 1 or more"),
        (("--opset", "9"), "--opset must be between 18 and 23"),
        (("--repeats", "0"), "--repeats must be 1 or more"),
    ],
)
def test_bad_export_options_are_one_line_errors(cli, tmp_path, args, message):
    assert message in _one_error(cli("export", "timm:test_resnet", "--input-size", "3,32,32", *args))
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_needs_force(cli, tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"old")
    args = ("export", "timm:test_resnet", "--input-size", "3,32,32", "-o", "m.onnx", *QUICK)
    assert "m.onnx already exists; pass --force" in _one_error(cli(*args))
    assert (tmp_path / "m.onnx").read_bytes() == b"old"
    assert cli(*args, "--force").exit_code == 0
    onnx.checker.check_model(onnx.load(tmp_path / "m.onnx"))


def _snipit_without(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real CLI in a process where ``import MODULE`` fails, as when the extra is not installed."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from snipit_cli.cli.app import main\n"
        f"sys.argv = ['snipit', *{list(args)!r}]\n"
        "main()\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)


def test_without_the_onnx_extra_the_error_names_it(tmp_path):
    done = _snipit_without("onnx", "export", "timm:test_resnet", "--input-size", "3,32,32", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: snipit export needs the onnx extra (onnx not installed); install it with "
        "pip install 'snipit-cli[onnx]'\n"
    )
    assert done.stdout == "" and list(tmp_path.iterdir()) == []


def test_without_onnxruntime_the_file_is_written_unchecked_and_a_note_says_so(tmp_path):
    args = ("export", "timm:test_resnet", "--input-size", "3,32,32", "-o", "m.onnx", "--json")
    done = _snipit_without("onnxruntime", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["parity"] is None and doc["latency"] is None
    assert doc["notes"] == ["onnxruntime is not installed: the file was not run or checked "
                            "(pip install 'snipit-cli[onnx]')"]  # fmt: skip
    assert "note: onnxruntime is not installed" in done.stderr
    onnx.checker.check_model(onnx.load(tmp_path / "m.onnx"))


def test_a_trusted_pickled_model_exports_quietly(cli, tmp_path):
    from tiny_models import TinyCNN

    torch.manual_seed(0)
    torch.save(TinyCNN(), tmp_path / "whole.pt")  # the module itself, as some users save it
    args = ("export", "whole.pt", "--input-size", "3,8,8", "-o", "w.onnx", *QUICK)
    assert "--trust-pickle" in _one_error(cli(*args))  # never unpickled without the flag
    result = cli(*args, "--trust-pickle", "-q")
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("wrote w.onnx (")
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = torch.load(tmp_path / "whole.pt", weights_only=False).eval()(x).numpy()
    np.testing.assert_allclose(_ort(tmp_path / "w.onnx", x), expected, rtol=0, atol=1e-5)


def test_pretrained_names_library_weights_not_a_file(cli, tmp_path):
    torch.save(__import__("tiny_models").TinyCNN().state_dict(), tmp_path / "t.pt")
    args = ("export", "t.pt", "--arch", "tiny_models:TinyCNN", "--pretrained", "--input-size", "3,8,8")
    assert "--pretrained applies to timm:/torchvision: models" in _one_error(cli(*args))
