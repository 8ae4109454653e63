"""Issue 15, class 1: nothing a checkpoint names is imported before snipit decided it may be.

A real snipit checkpoint is rewritten to record ``evilmod:Net``, and ``evilmod.py`` (whose
top-level code writes a marker file) is put in the working folder and beside the checkpoint.
Every command that reads a checkpoint refuses it in one line naming ``--arch evilmod:Net``, and
the marker never appears. ``python -m snipit_cli`` (the working folder is ``sys.path[0]``) and
``python -c`` (``''`` is) run as real processes; in-process runs put the working folder on
``sys.path`` as those launchers do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import snipit_cli

TESTS = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(snipit_cli.__file__).parents[1]), str(TESTS)])}
FAST = ("--batches", "1", "--batch-size", "4", "--steps", "1")


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory) -> Path:
    """A real snipit checkpoint of TinyCNN (recorded arch ``tiny_models:TinyCNN``)."""
    from typer.testing import CliRunner

    from snipit_cli.cli.app import app

    return _prune_tiny(tmp_path_factory.mktemp("base"), CliRunner(), app)


def _prune_tiny(folder: Path, runner, app) -> Path:
    import torch
    from tiny_models import TinyCNN

    torch.manual_seed(0)
    torch.save(TinyCNN().state_dict(), folder / "tiny.pt")
    out = folder / "pruned.safetensors"
    result = runner.invoke(
        app,
        ["prune", str(folder / "tiny.pt"), "--arch", "tiny_models:TinyCNN", "--input-size", "3,8,8", *FAST]
        + ["--sparsity", "0.5", "-o", str(out), "--report", str(folder / "r.json")],
    )
    assert result.exit_code == 0, result.stderr
    return out


def recording(base: Path, out: Path, spec: str) -> Path:
    """``base`` with its recorded arch spec replaced by ``spec``."""
    with safe_open(str(base), framework="pt") as f:
        metadata = dict(f.metadata())
    doc = json.loads(metadata["snipit"])
    doc["model"]["arch"]["spec"] = spec
    metadata["snipit"] = json.dumps(doc)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(load_file(base), str(out), metadata=metadata)
    return out


@pytest.fixture
def hostile(tmp_path: Path, base_checkpoint: Path) -> tuple[Path, Path, Path]:
    """(working folder, checkpoint in its own folder, marker): evilmod.py in both folders."""
    work, marker = tmp_path / "work", tmp_path / "MARKER"
    checkpoint = recording(base_checkpoint, tmp_path / "downloads" / "ckpt.safetensors", "evilmod:Net")
    code = f"open({str(marker)!r}, 'w').close()\nfrom tiny_models import TinyCNN as Net\n"
    work.mkdir()
    for folder in (work, checkpoint.parent):
        (folder / "evilmod.py").write_text(code)
    return work, checkpoint, marker


def one_line_refusal(code: int, stdout: str, stderr: str, *fragments: str) -> None:
    assert code == 2, stderr
    assert stdout == ""
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )


def test_report_as_python_m_does_not_import_a_file_beside_or_in_the_working_folder(hostile):
    """The issue's reproduction: ``python -m snipit_cli report ckpt.safetensors``."""
    work, checkpoint, marker = hostile
    proc = run([sys.executable, "-m", "snipit_cli", "report", str(checkpoint)], work)
    one_line_refusal(proc.returncode, proc.stdout, proc.stderr, "--arch evilmod:Net", "installed")
    assert not marker.exists()


def test_report_from_the_checkpoints_own_folder_does_not_import_it(hostile):
    _, checkpoint, marker = hostile
    proc = run([sys.executable, "-m", "snipit_cli", "report", checkpoint.name], checkpoint.parent)
    one_line_refusal(proc.returncode, proc.stdout, proc.stderr, "--arch evilmod:Net")
    assert not marker.exists()


def test_load_model_with_the_working_folder_on_sys_path_does_not_import_it(hostile):
    work, checkpoint, marker = hostile
    script = (
        "import sys, snipit_cli\n"
        "try:\n"
        f"    snipit_cli.load_model({str(checkpoint)!r})\n"
        "except snipit_cli.errors.SnipitError as exc:\n"
        "    sys.exit(f'error: {exc}')\n"
    )
    proc = run([sys.executable, "-c", script], work)  # sys.path[0] == '': the working folder
    assert proc.returncode == 1 and "--arch evilmod:Net" in proc.stderr, proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    "command",
    [
        ("report", "{ckpt}"),
        ("compare", "{ckpt}", "{ckpt}"),
        ("prune", "{ckpt}", "--data", "synthetic", "--sparsity", "0.6", *FAST, "-o", "o.safetensors"),
        ("train", "{ckpt}", "--data", "mnist", "--epochs", "1", "-o", "o.safetensors"),
        ("convert", "{ckpt}", "o.safetensors", "--storage", "dense"),
    ],
    ids=["report", "compare", "prune", "train", "convert"],
)
def test_every_command_refuses_it_in_process(cli, hostile, monkeypatch, command):
    work, checkpoint, marker = hostile
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))  # as python -m puts the working folder first
    result = cli(*(part.format(ckpt=checkpoint) for part in command))
    if command[0] == "convert":  # needs no model: nothing is imported, the file is copied
        assert result.exit_code == 0, result.stderr
    else:
        one_line_refusal(result.exit_code, result.stdout, result.stderr, "--arch evilmod:Net")
    assert not marker.exists()
    assert "evilmod" not in sys.modules


def test_arch_confirms_the_module(hostile):
    """The refusal's fix works: ``--arch evilmod:Net`` imports it (the user said so)."""
    work, checkpoint, marker = hostile
    proc = run([sys.executable, "-m", "snipit_cli", "report", str(checkpoint), "--arch", "evilmod:Net"], work)
    assert proc.returncode == 0, proc.stderr
    assert marker.exists()


def test_a_standard_library_module_is_not_imported_and_prints_nothing(cli, tmp_path, base_checkpoint):
    """``this`` prints the Zen of Python when imported."""
    checkpoint = recording(base_checkpoint, tmp_path / "zen.safetensors", "this:Net")
    proc = run([sys.executable, "-m", "snipit_cli", "report", str(checkpoint)], tmp_path)
    one_line_refusal(proc.returncode, proc.stdout, proc.stderr, "--arch this:Net", "standard library")
    assert "Zen" not in proc.stderr


@pytest.mark.parametrize("spec", ["evilmod.__main__:Net", "../evil:Net", "__main__:Net"])
def test_a_module_name_that_is_no_package_module_is_refused(cli, tmp_path, base_checkpoint, spec):
    checkpoint = recording(base_checkpoint, tmp_path / "odd.safetensors", spec)
    result = cli("report", checkpoint)
    one_line_refusal(result.exit_code, result.stdout, result.stderr, f"--arch {spec}")


def test_a_module_on_pythonpath_outside_the_working_folder_still_reloads(cli, base_checkpoint):
    """``tiny_models`` lies in tests/, on sys.path by pytest's ``pythonpath`` (as PYTHONPATH
    would put it): the checkpoint reloads as it did, without --arch."""
    result = cli("report", base_checkpoint, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model"]["arch"]["spec"] == "tiny_models:TinyCNN"
