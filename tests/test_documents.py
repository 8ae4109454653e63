"""The one JSON vocabulary: the README's tables, documents.py and what each command prints agree."""

import json
import re
from pathlib import Path

import pytest

from snipit_cli.workflows.documents import (
    BLOCKS,
    COMMANDS,
    HEADER,
    OPTIONAL,
    SCHEMA_VERSION,
    connectivity_notes,
)

README = Path(__file__).resolve().parent.parent / "README.md"
FAST = ("--input-size", "3,8,8", "--batch-size", "4", "--batches", "2", "--steps", "2")


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## JSON documents")
    return text[start : text.index("\n## ", start + 1)]


def _readme_commands() -> dict[str, tuple[str, ...]]:
    rows = re.findall(r"^\| `(\w+)` \| (`.*`) \|$", _section(), flags=re.M)
    return {command: tuple(re.findall(r"`([\w\[\]]+)`", keys)) for command, keys in rows}


def _readme_blocks() -> dict[str, set[str]]:
    blocks: dict[str, set[str]] = {}
    for line in _section().splitlines():
        cells = line.split(" | ")
        if not line.startswith("| `") or len(cells) < 2:
            continue
        for block, key in re.findall(r"`([\w\[\]]+)\.(\w+)`", cells[0]):
            blocks.setdefault(block, set()).add(key)
    return blocks


def test_the_readme_lists_every_commands_keys_in_order():
    assert _readme_commands() == COMMANDS


def test_the_readme_explains_every_key_of_every_block():
    assert _readme_blocks() == {
        block: set(keys) for block, keys in BLOCKS.items() if block in _readme_blocks()
    }
    assert set(_readme_blocks()) == set(BLOCKS)


def _check(doc: dict, command: str) -> None:
    """``doc`` has exactly its command's keys, and each block exactly its keys (less optional ones)."""
    assert list(doc) == list(COMMANDS[command])
    assert doc["schema_version"] == SCHEMA_VERSION and doc["command"] == command
    for block, keys in BLOCKS.items():
        name, many = block.removesuffix("[]"), block.endswith("[]")
        values = doc.get(name) if name in doc else None
        for value in (values or []) if many else [values]:
            if value is None:
                continue
            required = set(keys) - OPTIONAL.get(block, frozenset())
            assert required <= value.keys() <= set(keys), (command, block)


@pytest.fixture
def pruned(cli, tiny_checkpoint, tiny_arch, tmp_path):
    result = cli("prune", tiny_checkpoint, "--arch", tiny_arch, *FAST, "-o", "p.safetensors", "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), tmp_path / "p.safetensors"


def test_prune_prints_and_writes_the_prune_document(pruned, tmp_path):
    doc, _ = pruned
    _check(doc, "prune")
    assert json.loads((tmp_path / "p.report.json").read_text()) == doc
    assert doc["sparsity"]["achieved"] == doc["sparsity"]["weights"]
    assert doc["storage"] == {"format": "dense", "encoding": "dense"}  # the default
    assert doc["macs"]["removed"] == 0.0 and doc["nodes"] is None and doc["training"] is None
    assert doc["connectivity"]["path"] is True and doc["connectivity"]["units"] == 4 + 8 + 5
    assert not any(note.startswith("no input-to-output path") for note in doc["notes"])


def _connectivity(path, layers=()):
    return {"units": 7, "no_incoming": 3, "unused_inputs": 0, "layers_cut": 1, "path": path,
            "layers": list(layers)}  # fmt: skip


def test_the_cut_path_note_names_the_empty_layer_and_the_way_out():
    empty = {"name": "fc1", "units": 3, "no_incoming": 3, "unused_inputs": 0}
    guard_off = {"collapse": {"guard": False}}
    (note,) = connectivity_notes(_connectivity(False, [empty]), guard_off)
    assert "no input-to-output path survives" in note and "layer fc1 has no weights left" in note
    assert "--sparsity" in note and "no --allow-collapse" in note
    (guarded,) = connectivity_notes(_connectivity(False, [empty]), {"collapse": {"guard": True}})
    assert "--allow-collapse" not in guarded  # the guard was on: only pruning less helps
    (unpruned,) = connectivity_notes(_connectivity(False), None)
    assert "do not connect" in unpruned
    assert connectivity_notes(_connectivity(True), guard_off) == []
    assert connectivity_notes(_connectivity(None), guard_off) == []  # the check could not run


def test_structured_prune_and_report_share_the_pruning_block(cli, tiny_checkpoint, tiny_arch):
    result = cli(
        "prune", tiny_checkpoint, "--arch", tiny_arch, *FAST, "--structured", "--sparsity", "0.5",
        "-o", "s.safetensors", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    _check(doc, "prune")
    assert doc["sparsity"]["nodes"] == doc["sparsity"]["achieved"]
    assert doc["macs"]["remaining"] < doc["macs"]["dense"]
    described = cli("report", "s.safetensors", "--json")
    assert described.exit_code == 0, described.stderr
    report = json.loads(described.stdout)
    _check(report, "report")
    run_only = {"equivalence", "limits"}
    assert {k: v for k, v in doc["pruning"].items() if k not in run_only} == report["pruning"]
    for block in ("sparsity", "params", "nodes", "macs", "storage", "layers"):
        assert report[block] == doc[block], block
    described_here = {"source", "input_size_from"}  # report's MODEL is the checkpoint, read from it
    assert {k: v for k, v in report["model"].items() if k not in described_here} == {
        k: v for k, v in doc["model"].items() if k not in described_here
    }
    assert report["file"] == doc["file"]


def test_report_compare_convert_methods_print_their_documents(cli, pruned):
    _, path = pruned
    for args, command in (
        (("report", path, "--json"), "report"),
        (("compare", path, path, "--json"), "compare"),
        (("convert", path, "d.safetensors", "--storage", "dense", "--json"), "convert"),
        (("methods", "--json"), "methods"),
    ):
        result = cli(*args)
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        _check(doc, command)
        if command == "compare":
            for nested in doc["models"]:
                assert not set(HEADER) & nested.keys()
                _check({**{k: doc[k] for k in HEADER}, "command": "report", **nested}, "report")


def test_train_prints_the_train_document(cli, tmp_path):
    from split_files import write_mnist_splits

    root = write_mnist_splits(tmp_path / "data")
    result = cli(
        "train", "snipit:lenet300-100", "--data", "mnist", "--data-root", root, "--epochs", "1",
        "--batch-size", "32", "-o", "t.safetensors", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    _check(doc, "train")
    assert doc["training"]["epochs_done"] == 1 and doc["state_file"].endswith("t.train-state.safetensors")
    assert doc["file"]["path"].endswith("t.safetensors") and doc["pruning"] is None
