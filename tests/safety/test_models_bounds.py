"""Issue 15, class 3: a lying architecture record cannot make snipit allocate without bound.

Real snipit checkpoints of TinyCNN (a few thousand elements) are rewritten to record shapes of
10^14 elements, negative sizes, a float padding, ``{"width": 100000}``, 10^9 classes or a
ResNet-18. Each is refused in one line before the model is built: building runs under a budget
derived from the file's own tensor header (``snipit_cli/models/budget.py``), every tensor
factory call checked on the ``meta`` device first. Unbounded, each case would try to allocate
from 44 MB (ResNet-18) to 720 GB (``width``) and 400 TB (shapes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tiny_models import TinyCNN

FAST = ("--batches", "1", "--batch-size", "4", "--steps", "1")


def _prune(folder: Path, *extra: str) -> Path:
    from typer.testing import CliRunner

    from snipit_cli.cli.app import app

    torch.manual_seed(0)
    torch.save(TinyCNN().state_dict(), folder / "tiny.pt")
    out = folder / "p.safetensors"
    result = CliRunner().invoke(
        app,
        ["prune", str(folder / "tiny.pt"), "--arch", "tiny_models:TinyCNN", "--input-size", "3,8,8", *FAST]
        + ["--sparsity", "0.3", "-o", str(out), "--report", str(folder / "r.json"), *extra],
    )
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def slim_base(tmp_path_factory) -> Path:
    """A real structured checkpoint: its slim record narrows features.3/features.4/head."""
    return _prune(tmp_path_factory.mktemp("slim"), "--structured")


@pytest.fixture(scope="module")
def dense_base(tmp_path_factory) -> Path:
    return _prune(tmp_path_factory.mktemp("dense"))


def rewritten(base: Path, out: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    with safe_open(str(base), framework="pt") as f:
        metadata = dict(f.metadata())
    doc = json.loads(metadata["snipit"])
    edit(doc)
    metadata["snipit"] = json.dumps(doc)
    save_file(load_file(base), str(out), metadata=metadata)
    return out


def one_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "internal error" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def slim_shape(module: str, key: str, shape: list) -> Callable[[dict[str, Any]], None]:
    return lambda doc: (
        doc["slim"].setdefault(module, {"attrs": {}, "shapes": {}})["shapes"].update({key: shape})
    )


def slim_attr(module: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: (
        doc["slim"].setdefault(module, {"attrs": {}, "shapes": {}})["attrs"].update({key: value})
    )


def arch(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda doc: doc["model"]["arch"].update(fields)


SLIM_CASES = [
    (
        "shape-1e7-squared",
        slim_shape("head", "weight", [10**7, 10**7]),
        "its slim record would allocate more than",
    ),
    (
        "shape-1e7-floats",
        slim_shape("head", "weight", [1e7, 1e7]),
        "slim.head.shapes.weight must be a list of sizes (integers >= 0), got [10000000.0, 10000000.0]",
    ),
    (
        "shape-negative",
        slim_shape("features.3", "weight", [-4, 4, 3, 3]),
        "slim.features.3.shapes.weight must be a list of sizes",
    ),
    (
        "shape-wrong-rank",
        slim_shape("features.3", "weight", [4, 4]),
        "slim record gives features.3.weight the shape [4, 4]; it needs 4 sizes >= 0",
    ),
    (
        "padding-float",
        slim_attr("features.3", "padding", [1.5, 1.5]),
        "slim record sets features.3.padding to [1.5, 1.5], which is not a plain attribute of that kind",
    ),
    (
        "out-channels-string-list",
        slim_attr("features.3", "out_channels", [4]),
        "slim record sets features.3.out_channels to [4]",
    ),
    (
        "dense-width-hidden-by-slim",
        arch(kwargs={"width": 100000}),
        "building tiny_models:TinyCNN would allocate more than 268,435,456",
    ),
]

DENSE_CASES = [
    ("width-100000", arch(kwargs={"width": 100000}), "building tiny_models:TinyCNN would allocate more than"),
    ("classes-1e9", arch(num_classes=10**9), "building tiny_models:TinyCNN would allocate more than"),
    ("timm-resnet18", arch(spec="timm:resnet18"), "building timm:resnet18 would allocate more than"),
    (
        "torchvision-classes",
        arch(spec="torchvision:resnet18", num_classes=10**8),
        "building torchvision:resnet18 would allocate more than",
    ),
]


@pytest.mark.parametrize(("edit", "fragment"), [c[1:] for c in SLIM_CASES], ids=[c[0] for c in SLIM_CASES])
def test_a_lying_slim_checkpoint_is_refused_before_allocating(cli, tmp_path, slim_base, edit, fragment):
    rewritten(slim_base, tmp_path / "lie.safetensors", edit)
    one_line(cli("report", "lie.safetensors"), fragment)


@pytest.mark.parametrize(("edit", "fragment"), [c[1:] for c in DENSE_CASES], ids=[c[0] for c in DENSE_CASES])
def test_a_lying_architecture_is_refused_before_allocating(cli, tmp_path, dense_base, edit, fragment):
    rewritten(dense_base, tmp_path / "lie.safetensors", edit)
    result = cli(
        "prune", "lie.safetensors", "--data", "synthetic", *FAST, "--sparsity", "0.6", "-o", "o.safetensors"
    )
    one_line(result, "lie.safetensors holds", fragment)
    assert not (tmp_path / "o.safetensors").exists()


def test_the_budget_is_the_files_elements(tmp_path, dense_base):
    """2x the file's elements plus 4 Mi: what ``file_elements`` reads from the header alone."""
    from snipit_cli.models.budget import build_budget, file_elements

    state = TinyCNN().state_dict()
    dense_elements = sum(t.numel() for t in state.values())
    assert file_elements(dense_base) == dense_elements  # 8 elements per mask byte: 288 -> 36 bytes
    assert build_budget(dense_elements, slim=False) == 2 * dense_elements + (1 << 22)


def test_arch_kwargs_on_the_command_line_are_bounded_too(cli, tmp_path, dense_base):
    """--arch with --arch-kwargs over a tiny file: the same bound, the same one line."""
    result = cli("report", dense_base, "--arch", "tiny_models:TinyCNN", "--arch-kwargs", '{"width": 100000}')
    one_line(result, "would allocate more than", "--arch-kwargs")


def test_honest_checkpoints_still_reload(cli, slim_base, dense_base):
    for path in (slim_base, dense_base):
        assert cli("report", path).exit_code == 0


def test_an_input_larger_than_3x4096x4096_is_refused_before_the_probe(cli, dense_base):
    """One zero image of the input size is run through the model: 3x5000x5000 would be 300 MB
    for the image alone and GBs of activations; refused in one line naming --input-size."""
    one_line(cli("report", dense_base, "--input-size", "3,5000,5000"), "--input-size")
