"""Issue 16, the CLI layer: one error boundary in the root app, one output object (formats, notes,
--quiet) for every command, one set of option names (train's --method/--batches/--round-to, the
old spellings kept), and flag choices built from the library's own declarations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
import torch
from journeys.workspace import write_mnist
from typer.main import get_command

from snipit_cli.cli.app import app
from snipit_cli.cli.formats import FORMATS
from snipit_cli.data.specs import SPLITS
from snipit_cli.errors import UsageError
from snipit_cli.models.checkpoint import read_tensors
from snipit_cli.models.encodings import Storage
from snipit_cli.pruning.structured.options import TARGETS
from snipit_cli.training.options import LR_SCHEDULES, OPTIMIZERS


@pytest.fixture
def mnist(tmp_path: Path) -> Path:
    write_mnist(tmp_path / "mnist" / "MNIST" / "raw", ("train", "test"), n=32)
    return tmp_path / "mnist"


@pytest.fixture
def pruned(cli) -> str:
    ok = cli("prune", "snipit:lenet300-100", "--method", "magnitude", "-o", "l.safetensors", "-q")
    assert ok.exit_code == 0, ok.stderr
    return "l.safetensors"


def _one_error_line(result, code: int = 2) -> str:
    assert result.exit_code == code and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    return result.stderr


# ---------------------------------------------------------------- one error boundary


def test_a_config_error_is_one_line_from_the_root_boundary(cli, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("sparsityy = 0.5\n")
    for command in ("prune", "train"):
        line = _one_error_line(cli(command, "snipit:lenet300-100", "--config", bad))
        assert line == f"error: unknown option(s) in {bad}: sparsityy; use the flag names without --\n"
    broken = tmp_path / "broken.toml"
    broken.write_text("sparsity = \n")
    assert "is not valid TOML" in _one_error_line(cli("prune", "x", "--config", broken))
    assert folder_names(tmp_path) == {"bad.toml", "broken.toml"}


def folder_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_click_usage_errors_are_one_line_in_process_too(cli):
    line = _one_error_line(cli("prune", "timm:resnet18", "--sparsity", "abc"))
    assert line.startswith("error: Invalid value for '--sparsity'") and line.endswith("(see snipit --help)\n")
    assert _one_error_line(cli("report", "x", "--format", "yaml")).startswith(
        "error: Invalid value for '--format'"
    )


def test_debug_is_each_commands_flag_read_by_the_root_boundary(cli):
    assert _one_error_line(cli("prune", "timm:resnet18", "--sparsity", "2")).startswith(
        "error: --sparsity must be a fraction"
    )
    with pytest.raises(UsageError, match="--sparsity must be a fraction"):
        cli("prune", "timm:resnet18", "--sparsity", "2", "--debug")
    with pytest.raises(UsageError, match="compare needs at least two models"):
        cli("compare", "timm:resnet18", "--debug")


def test_a_command_without_a_boundary_of_its_own_is_covered(cli, monkeypatch):
    def boom(_pattern):
        raise RuntimeError("no registry")

    monkeypatch.setattr("snipit_cli.criteria.list_criteria", boom)
    line = _one_error_line(cli("methods"), code=1)
    assert line == "internal error: RuntimeError: no registry (re-run with --debug for the traceback)\n"
    with pytest.raises(RuntimeError, match="no registry"):
        cli("methods", "--debug")


# ---------------------------------------------------------------- one output object


def test_report_and_compare_print_their_notes_and_quiet_drops_them(cli, pruned, monkeypatch):
    from snipit_cli.workflows import describe as report_cli  # the CLI imports it when it runs

    real_describe, real_compare = report_cli.describe, report_cli.compare
    monkeypatch.setattr(report_cli, "describe", lambda r: real_describe(r) | {"notes": ["report said"]})
    monkeypatch.setattr(report_cli, "compare", lambda rs: real_compare(rs) | {"notes": ["compare said"]})
    said = cli("report", pruned, "--json")
    assert said.exit_code == 0 and said.stderr == "note: report said\n"
    quiet = cli("report", pruned, "--json", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""
    loud_doc, quiet_doc = json.loads(said.stdout), json.loads(quiet.stdout)
    assert loud_doc.pop("run")["device"] == quiet_doc.pop("run")["device"]  # only the seconds differ
    assert quiet_doc == loud_doc
    said = cli("compare", pruned, pruned, "--format", "csv")
    assert said.stderr == "note: compare said\n" and said.stdout.startswith("metric,")
    quiet = cli("compare", pruned, pruned, "--format", "csv", "-q")
    assert quiet.stderr == "" and quiet.stdout == said.stdout


def test_report_formats_go_to_stdout(cli, pruned):
    md = cli("report", pruned, "--format", "markdown")
    assert md.exit_code == 0 and md.stderr == ""
    assert md.stdout.startswith(f"### {pruned}\n\n| metric | value |\n|---|---|\n")
    assert "### layers\n\n| name | type | shape | dense_shape | params |" in md.stdout
    csv = cli("report", pruned, "--format", "csv", "--quiet")
    assert csv.stdout.splitlines()[0] == "name,type,shape,dense_shape,params,nonzero,sparsity,macs"
    assert csv.stdout.splitlines()[1].startswith("fc1,Linear,300x784,,235200,")
    as_json = json.loads(cli("report", pruned, "--json").stdout)
    as_format = json.loads(cli("report", pruned, "--format", "json").stdout)
    assert as_json.pop("run")["device"] == as_format.pop("run")["device"]  # seconds differ
    assert as_json == as_format
    assert as_json["params"]["total"] == 266610


def test_methods_quiet_still_lists(cli):
    loud, quiet = cli("methods"), cli("methods", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == loud.stdout
    assert [row["name"] for row in json.loads(cli("methods", "-q", "--json").stdout)["methods"]][:2] == [
        "snip",
        "snip-it",
    ]


# ---------------------------------------------------------------- one set of option names


def _train(cli, mnist, *args: str) -> dict:
    result = cli("train", "snipit:lenet300-100", "--data", "mnist", "--data-root", mnist, "--epochs", "1",
                 "--batch-size", "16", "--prune-freq", "0", "--steps", "1", "--test-split", "none",
                 *args, "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _record(doc: dict) -> dict:
    pruning = dict(doc["training"]["pruning"])
    pruning["events"] = [{k: v for k, v in e.items() if k != "seconds"} for e in pruning["events"]]
    return pruning


def test_train_method_and_batches_and_their_old_spellings_record_the_same(cli, mnist, tmp_path):
    new = _train(
        cli, mnist, "--method", "snip-it", "--batches", "2", "--sparsity", "0.5", "-o", "n.safetensors"
    )
    old = _train(cli, mnist, "--prune-method", "snip-it", "--prune-batches", "2", "--sparsity", "0.5",
                 "-o", "o.safetensors")  # fmt: skip
    assert new["training"]["pruning"]["method"] == "snip-it"
    assert new["training"]["pruning"]["calibration"]["batches"] == 2
    assert _record(new) == _record(old)
    a, b = read_tensors(Path("n.safetensors")), read_tensors(Path("o.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for keys in ('method = "snip-it"\nbatches = 2\n', 'prune-method = "snip-it"\nprune_batches = 2\n'):
        recipe = tmp_path / "r.toml"
        recipe.write_text(keys + "sparsity = 0.5\n")
        doc = _train(cli, mnist, "--config", recipe, "-o", "c.safetensors", "--force")
        assert _record(doc) == _record(new)


def test_train_help_shows_the_new_names_first(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    shown = cli("train", "--help").stdout
    assert "--method,--prune-method" in shown and "--batches,--prune-batches" in shown
    params = {p.name: p.opts for p in get_command(app).commands["train"].params}
    assert params["method"] == ["--method", "--prune-method"]
    assert params["batches"] == ["--batches", "--prune-batches"]


def test_train_round_to_slims_to_multiples_of_n(cli, mnist):
    doc = _train(cli, mnist, "--method", "l1", "--structured", "--sparsity", "0.5", "--round-to", "8",
                 "--batches", "1", "-o", "r.safetensors")  # fmt: skip
    assert doc["training"]["pruning"]["options"]["structured"]["round_to"] == 8
    widths = {k: v.shape[0] for k, v in read_tensors(Path("r.safetensors")).items() if k.endswith("weight")}
    assert widths["fc1.weight"] % 8 == 0 and widths["fc2.weight"] % 8 == 0
    assert (widths["fc1.weight"], widths["fc2.weight"]) != (300, 100) and widths["fc3.weight"] == 10


def test_train_round_to_needs_method_and_structured(cli, mnist):
    base = ("train", "snipit:lenet300-100", "--data", "mnist", "--data-root", mnist)
    line = _one_error_line(cli(*base, "--round-to", "8"))
    assert "--round-to prune while training: add --method" in line
    line = _one_error_line(cli(*base, "--method", "l1", "--round-to", "8"))
    assert "apply to --structured pruning; add --structured" in line


# ---------------------------------------------------------------- choices declared once


@pytest.mark.parametrize(
    ("command", "flag", "declared"),
    [
        ("prune", "--target", TARGETS),
        ("train", "--target", TARGETS),
        ("prune", "--split", SPLITS),
        ("train", "--split", SPLITS),
        ("train", "--test-split", (*SPLITS, "none")),
        ("train", "--optimizer", OPTIMIZERS),
        ("train", "--lr-schedule", LR_SCHEDULES),
        ("prune", "--storage", get_args(Storage)),
        ("convert", "--storage", get_args(Storage)),
        ("report", "--format", FORMATS),
        ("compare", "--format", FORMATS),
    ],
)
def test_flag_choices_are_the_librarys_declarations(cli, command, flag, declared):
    line = _one_error_line(cli(command, "a", "b", flag, "bogus"))
    assert f"'bogus' is not one of {', '.join(repr(v) for v in declared)}." in line
