"""Issue 15, class 4: tensors snipit cannot prune or train are refused by name and dtype.

Weights and float buffers are float32, float16, bfloat16 or float64; integer buffers
(``num_batches_tracked``) stay as they are. A float4/float8 weight (torch's copy fails, or the
scores would be float8), a complex one (``load_state_dict`` drops its imaginary part with only a
warning) and an int8 one (integers of an unknown scale) are refused in one line naming the
tensor, from safetensors and from ``.pt`` files alike; a resume state whose momentum is int64 is
refused when it is read, not by the optimizer's first step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from split_files import write_mnist_splits
from tiny_models import TinyCNN

ARCH = ("--arch", "tiny_models:TinyCNN")


def one_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "internal error" not in result.stderr and "Warning" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def _float4(shape: tuple[int, ...]) -> torch.Tensor:
    if not hasattr(torch, "float4_e2m1fn_x2"):
        pytest.skip("this torch has no float4_e2m1fn_x2")
    return torch.zeros(shape, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)


WEIGHTS = {
    "float4": (lambda w: _float4(tuple(w.shape)), "head.weight is float4_e2m1fn_x2"),
    "float8": (
        lambda w: w.to(torch.float8_e4m3fn),
        "head.weight is float8_e4m3fn, which snipit cannot prune",
    ),
    "complex": (lambda w: torch.complex(w, w), "head.weight is complex64 (complex): loading it would drop"),
    "int8": (lambda w: (w * 100).to(torch.int8), "head.weight is int8, where the model holds float32"),
}


@pytest.mark.parametrize("kind", list(WEIGHTS))
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_a_weight_of_an_unsupported_dtype_is_refused_by_name(cli, tmp_path, kind, suffix):
    make, fragment = WEIGHTS[kind]
    state = TinyCNN().state_dict()
    state["head.weight"] = make(state["head.weight"])
    path = tmp_path / f"w{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, str(path))
    one_line(cli("report", path.name, *ARCH), fragment, "float32, float16, bfloat16 or float64")


def test_a_float_buffer_of_float8_is_refused_too(cli, tmp_path):
    state = TinyCNN().state_dict()
    state["features.1.running_var"] = state["features.1.running_var"].to(torch.float8_e5m2)
    save_file(state, str(tmp_path / "b.safetensors"))
    one_line(cli("report", "b.safetensors", *ARCH), "features.1.running_var is float8_e5m2")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_supported_dtypes_and_integer_buffers_load(cli, tmp_path, dtype):
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in TinyCNN().state_dict().items()}
    assert state["features.1.num_batches_tracked"].dtype == torch.int64
    save_file(state, str(tmp_path / "h.safetensors"))
    result = cli("report", "h.safetensors", *ARCH, "--input-size", "3,8,8", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["params"]["total"] == sum(
        v.numel() for k, v in state.items() if "running" not in k and "num_batches" not in k
    )


# ---------------------------------------------------------------- resume state


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A real ``snipit train`` checkpoint with its training state (SGD momentum), and its data."""
    from typer.testing import CliRunner

    from snipit_cli.cli.app import app

    folder = tmp_path_factory.mktemp("trained")
    data = write_mnist_splits(folder / "mnist")
    result = CliRunner().invoke(
        app,
        ["train", "snipit:lenet300-100", "--data", "mnist", "--data-root", str(data), "--epochs", "1"]
        + ["--batch-size", "32", "-o", str(folder / "t.safetensors")],
    )
    assert result.exit_code == 0, result.stderr
    return folder / "t.safetensors", data


@pytest.mark.parametrize(
    ("dtype", "fragment"),
    [
        (torch.int64, "fc1.weight/momentum_buffer in the training state"),
        (torch.complex64, "fc1.weight/momentum_buffer in the training state"),
        (torch.float8_e4m3fn, "fc1.weight/momentum_buffer in the training state"),
    ],
    ids=["int64", "complex64", "float8"],
)
def test_a_resume_state_of_the_wrong_dtype_is_refused_when_read(cli, tmp_path, trained, dtype, fragment):
    checkpoint, data = trained
    state_file = checkpoint.with_name("t.train-state.safetensors")
    with safe_open(str(state_file), framework="pt") as f:
        metadata = f.metadata()
    state = load_file(state_file)
    assert state["fc1.weight/momentum_buffer"].dtype == torch.float32
    state["fc1.weight/momentum_buffer"] = state["fc1.weight/momentum_buffer"].to(dtype)
    (tmp_path / "t.safetensors").write_bytes(checkpoint.read_bytes())
    save_file(state, str(tmp_path / "t.train-state.safetensors"), metadata=metadata)
    result = cli(
        "train", "t.safetensors", "--resume", "--epochs", "2", "--data", "mnist", "--data-root", data,
        "-o", "r.safetensors",
    )  # fmt: skip
    one_line(result, "cannot resume:", fragment, str(dtype).removeprefix("torch."))
    assert not (tmp_path / "r.safetensors").exists()
