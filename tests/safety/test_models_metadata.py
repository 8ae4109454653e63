"""Issue 15, class 2: a ``snipit`` metadata document of the wrong type is refused when read.

Each case rewrites the document of a real snipit checkpoint; every command reading it stops in
one line ``X has invalid snipit metadata: FIELD must be ..., got VALUE`` (exit 2, nothing
written), because ``read_metadata`` checks the whole document against one schema
(``snipit_cli/models/metadata_schema.py``) before any consumer sees it.
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


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A real unstructured (bitmask-stored) snipit checkpoint of TinyCNN."""
    from typer.testing import CliRunner

    from snipit_cli.cli.app import app

    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    torch.save(TinyCNN().state_dict(), folder / "tiny.pt")
    result = CliRunner().invoke(
        app,
        ["prune", str(folder / "tiny.pt"), "--arch", "tiny_models:TinyCNN", "--input-size", "3,8,8", *FAST]
        + ["--sparsity", "0.5", "--storage", "sparse", "-o", str(folder / "p.safetensors")]
        + ["--report", str(folder / "r.json")],
    )
    assert result.exit_code == 0, result.stderr
    return folder / "p.safetensors"


def rewritten(base: Path, out: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    """``base`` with ``edit`` applied to its document (a return value replaces the document)."""
    with safe_open(str(base), framework="pt") as f:
        metadata = dict(f.metadata())
    doc = json.loads(metadata["snipit"])
    replaced = edit(doc)
    metadata["snipit"] = json.dumps(doc if replaced is None else replaced)
    save_file(load_file(base), str(out), metadata=metadata)
    return out


def setter(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            doc = doc.setdefault(key, {})
        doc[last] = value

    return edit


TRAINING = {"epochs": 2, "epochs_done": 1, "step": 3}

#: (id, edit, the message after "has invalid snipit metadata: ")
CASES = [
    ("document-list", lambda d: [1, 2], "the document must be an object, got [1, 2]"),
    (
        "format-version-string",
        setter("format_version", "2"),
        'format_version must be an integer >= 0, got "2"',
    ),
    ("model-string", setter("model", "x"), 'model must be an object, got "x"'),
    ("slim-list", setter("slim", [1, 2]), "slim must be an object, got [1, 2]"),
    ("slim-entry", setter("slim", {"head": 3}), "slim.head must be an object, got 3"),
    (
        "input-size-string",
        setter("model.input_size", "abc"),
        'model.input_size must be a list of 3 positive integers, got "abc"',
    ),
    (
        "input-size-zero",
        setter("model.input_size", [3, 0, 8]),
        "model.input_size must be a list of 3 positive integers, got [3, 0, 8]",
    ),
    (
        "input-size-huge",
        setter("model.input_size", [3, 100000, 100000]),
        "model.input_size must be C,H,W of at most 50,331,648 values in all (3x4096x4096), "
        "got [3, 100000, 100000]",
    ),
    ("mean-number", setter("model.mean", 5), "model.mean must be a non-empty list of numbers, got 5"),
    ("std-zero", setter("model.std", [0]), "model.std must be a non-empty list of positive numbers, got [0]"),
    ("num-classes-string", setter("model.num_classes", "10"), "model.num_classes must be a positive integer"),
    ("arch-spec-number", setter("model.arch.spec", 5), "model.arch.spec must be a string, got 5"),
    ("arch-without-spec", setter("model.arch", {"kwargs": {}}), "model.arch.spec must be present"),
    ("arch-kwargs-list", setter("model.arch.kwargs", [1]), "model.arch.kwargs must be an object, got [1]"),
    (
        "arch-num-classes-bool",
        setter("model.arch.num_classes", True),
        "model.arch.num_classes must be a positive integer, got true",
    ),
    (
        "epochs-done-string",
        setter("training", {**TRAINING, "epochs_done": "x"}),
        'training.epochs_done must be an integer >= 0, got "x"',
    ),
    ("training-list", setter("training", [1]), "training must be an object, got [1]"),
    (
        "training-history-item",
        setter("training", {**TRAINING, "history": [{}, 3]}),
        "training.history[1] must be an object, got 3",
    ),
    (
        "training-unknown-prune-option",
        setter("training", {**TRAINING, "pruning": {"options": {"sparsity": 0.5, "bogus": 1}}}),
        "training.pruning.options.bogus must be absent",
    ),
    ("storage-string", setter("storage", "dense"), 'storage must be an object, got "dense"'),
    ("storage-tensors-list", setter("storage.tensors", [1]), "storage.tensors must be an object, got [1]"),
    (
        "storage-shape-floats",
        lambda d: d["storage"]["tensors"]["features.3.weight"].update(shape=[8.0, 4]),
        "storage.tensors.features.3.weight.shape must be a list of sizes (integers >= 0), got [8.0, 4]",
    ),
    ("calibration-number", setter("calibration", 3), "calibration must be an object, got 3"),
    (
        "calibration-batches-string",
        setter("calibration.batches", "1"),
        'calibration.batches must be an integer >= 0, got "1"',
    ),
    (
        "nodes-sparsity-string",
        setter("nodes", {"sparsity": "a"}),
        "nodes.sparsity must be a number in [0, 1]",
    ),
    (
        "schedule-bools",
        setter("schedule", [True]),
        "schedule must be a list of numbers in [0, 1], got [true]",
    ),
    (
        "sparsity-above-one",
        setter("sparsity.achieved", 7),
        "sparsity.achieved must be a number in [0, 1], got 7",
    ),
    ("exclude-string", setter("exclude", "head"), 'exclude must be a list of strings, got "head"'),
]


def one_line(result, fragment: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "internal error" not in result.stderr
    assert fragment in result.stderr, result.stderr


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(("edit", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_field_of_the_wrong_type_is_named(cli, tmp_path, base, edit, message):
    rewritten(base, tmp_path / "bad.safetensors", edit)
    before = listing(tmp_path)
    result = cli(
        "prune", "bad.safetensors", "--data", "synthetic", *FAST, "--sparsity", "0.6", "-o", "o.safetensors"
    )
    one_line(result, f"bad.safetensors has invalid snipit metadata: {message}")
    assert listing(tmp_path) == before


def test_a_null_document_is_named(cli, tmp_path, base):
    _write_raw_document(base, tmp_path / "null.safetensors", "null")
    one_line(
        cli("report", "null.safetensors"), "invalid snipit metadata: the document must be an object, got null"
    )


def _write_raw_document(base: Path, out: Path, raw: str) -> Path:
    with safe_open(str(base), framework="pt") as f:
        metadata = dict(f.metadata())
    metadata["snipit"] = raw
    save_file(load_file(base), str(out), metadata=metadata)
    return out


@pytest.mark.parametrize(
    "command",
    [
        ("report", "bad.safetensors"),
        ("compare", "bad.safetensors", "bad.safetensors"),
        ("convert", "bad.safetensors", "o.safetensors", "--storage", "dense"),
        ("train", "bad.safetensors", "--resume", "--data", "mnist", "--epochs", "3", "-o", "o.safetensors"),
    ],
    ids=["report", "compare", "convert", "train-resume"],
)
def test_every_reader_gets_the_validated_document(cli, tmp_path, base, command):
    rewritten(base, tmp_path / "bad.safetensors", setter("training", {**TRAINING, "epochs_done": "x"}))
    before = listing(tmp_path)
    one_line(cli(*command), 'training.epochs_done must be an integer >= 0, got "x"')
    assert listing(tmp_path) == before


def test_nesting_deeper_than_the_stack_is_unreadable_not_internal(cli, tmp_path, base):
    _write_raw_document(base, tmp_path / "deep.safetensors", "[" * 100_000 + "]" * 100_000)
    one_line(cli("report", "deep.safetensors"), "has unreadable snipit metadata")


def test_a_real_document_passes_and_a_newer_format_asks_for_an_upgrade(cli, tmp_path, base):
    assert cli("report", base).exit_code == 0
    rewritten(base, tmp_path / "new.safetensors", setter("format_version", 99))
    one_line(cli("report", "new.safetensors"), "written by a newer snipit (format 99); upgrade snipit")
