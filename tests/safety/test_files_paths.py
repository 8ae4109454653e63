"""An output is never the input under another name, and nothing is replaced without --force.

The input is recognised by device and inode, so a hard link, a symlink or a bind mount (a real
one; needs mount permission, as root in CI here) naming it is refused even with --force. An
existing --plot file, and a dangling symlink as -o, need --force like any existing output.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mounts import mounted

ARCH = "tiny_models:TinyCNN"
FAST = ("--input-size", "3,8,8", "--batches", "1", "--batch-size", "4")
LENET = "snipit:lenet300-100"


def contents(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(result) -> str:
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    return result.stderr


@pytest.mark.parametrize("alias", [os.link, os.symlink], ids=["hard-link", "symlink"])
def test_a_second_name_for_the_input_is_refused_even_with_force(cli, tiny_checkpoint, tmp_path, alias):
    alias("tiny.pt", "alias.safetensors")
    before = contents(tmp_path)
    err = one_error(cli("prune", "tiny.pt", "--arch", ARCH, *FAST, "-o", "alias.safetensors", "--force"))
    assert "refusing to write over the input alias.safetensors" in err
    assert contents(tmp_path) == before


@pytest.fixture
def bind_mounted(tmp_path: Path):
    """``view/`` is a bind mount of ``models/``: the same files under a second path."""
    (tmp_path / "models").mkdir()
    (tmp_path / "view").mkdir()
    with mounted(["--bind", str(tmp_path / "models")], tmp_path / "view", "bind-mount"):
        yield tmp_path


@pytest.mark.parametrize(
    "command",
    [
        ("prune", "models/in.safetensors", "--method", "magnitude", "-o", "view/in.safetensors", "--force"),
        ("convert", "models/in.safetensors", "view/in.safetensors", "--storage", "dense", "--force"),
    ],
    ids=["prune", "convert"],
)
def test_the_input_through_a_bind_mount_is_refused(cli, bind_mounted, command):
    made = cli("prune", LENET, "--method", "magnitude", "-q", "-o", "models/in.safetensors")
    assert made.exit_code == 0, made.stderr
    assert (bind_mounted / "view" / "in.safetensors").exists()  # the same file, seen twice
    before = (bind_mounted / "models" / "in.safetensors").read_bytes()
    err = one_error(cli(*command))
    assert "refusing to write over the input view/in.safetensors" in err
    assert (bind_mounted / "models" / "in.safetensors").read_bytes() == before


@pytest.mark.parametrize("command", [("report", LENET), ("compare", LENET, LENET)], ids=["report", "compare"])
def test_an_existing_plot_needs_force(cli, tmp_path, command):
    (tmp_path / "chart.png").write_bytes(b"someone's chart")
    err = one_error(cli(*command, "--plot", "chart.png"))
    assert "chart.png already exists; pass --force to overwrite it or choose another --plot" in err
    assert (tmp_path / "chart.png").read_bytes() == b"someone's chart"


def test_report_plot_with_force_replaces_the_file(cli, tmp_path):
    pytest.importorskip("matplotlib")
    (tmp_path / "chart.png").write_bytes(b"someone's chart")
    result = cli("report", LENET, "--plot", "chart.png", "--force", "--format", "csv")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_plot_that_is_not_png_is_refused_before_the_report_is_built(cli, tmp_path, monkeypatch):
    def no_work(*_args, **_kwargs):
        raise AssertionError("the model was described before --plot was checked")

    monkeypatch.setattr("snipit_cli.workflows.describe.describe", no_work)
    err = one_error(cli("report", LENET, "--plot", "chart.svg"))
    assert "--plot writes PNG files" in err


def test_a_dangling_symlink_as_output_needs_force(cli, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink("elsewhere/target.safetensors", "out.safetensors")
    err = one_error(cli("prune", LENET, "--method", "magnitude", "-o", "out.safetensors"))
    assert "out.safetensors is a symlink to a missing file; pass --force to replace the link" in err
    assert os.readlink("out.safetensors") == "elsewhere/target.safetensors"
    assert not (tmp_path / "out.report.json").exists()


def test_with_force_a_dangling_symlink_is_replaced_not_written_through(cli, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink("elsewhere/target.safetensors", "out.safetensors")
    result = cli("prune", LENET, "--method", "magnitude", "-q", "-o", "out.safetensors", "--force")
    assert result.exit_code == 0, result.stderr
    assert not (tmp_path / "out.safetensors").is_symlink() and (tmp_path / "out.safetensors").is_file()
    assert list((tmp_path / "elsewhere").iterdir()) == []
