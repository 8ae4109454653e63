"""Paths users walked that broke: compare across input sizes, pipes closed early, options that
differed between commands, --exclude typos, --version (issue 14)."""

import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest
import torch
from mnist_files import write_learnable_mnist

import snipit_cli
from snipit_cli.metrics.accuracy import evaluate
from snipit_cli.models.loading import load_model

SNIPIT = Path(sysconfig.get_path("scripts")) / "snipit"
SMALL_RESNET = ("--num-classes", "10", "--input-size", "3,16,16", "--method", "magnitude")


@pytest.fixture
def masked_resnet(cli, tmp_path):
    result = cli("prune", "timm:resnet18", *SMALL_RESNET, "--sparsity", "0.9", "-o", "r.safetensors", "-q")
    assert result.exit_code == 0, result.stderr
    return tmp_path / "r.safetensors"


def test_compare_builds_the_library_baseline_at_the_checkpoints_input(cli, masked_resnet):
    # The README's `snipit compare timm:resnet18 a.safetensors`: the baseline must be the 16 px,
    # 10-class resnet18 the checkpoint was pruned from, not timm's 224 px / 1000 classes.
    result = cli("compare", "timm:resnet18", masked_resnet, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    base, pruned = doc["models"]
    assert base["model"]["input_size"] == pruned["model"]["input_size"] == [3, 16, 16]
    assert base["model"]["num_classes"] == pruned["model"]["num_classes"] == 10
    assert base["model"]["input_size_from"] == f"as {masked_resnet}"
    # Unstructured pruning removes no MACs and no parameters: the ratios say exactly that.
    assert doc["ratios"][1]["macs"] == 1.0 and doc["ratios"][1]["params"] == 1.0
    assert doc["ratios"][1]["nonzero"] > 9
    table = cli("compare", "timm:resnet18", masked_resnet).stdout
    macs_row = next(line for line in table.splitlines() if "MACs" in line)
    assert "3x16x16, 10 classes" in table and "(1.00x fewer)" in macs_row


def test_compare_refuses_models_fed_different_inputs(cli, masked_resnet, tmp_path):
    other = cli("prune", "timm:resnet18", "--num-classes", "10", "--input-size", "3,24,24", "--method",
                "magnitude", "-o", "r24.safetensors", "-q")  # fmt: skip
    assert other.exit_code == 0, other.stderr
    result = cli("compare", masked_resnet, "r24.safetensors", "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: models compared must take the same input and classes")
    assert "3x16x16" in result.stderr and "3x24x24" in result.stderr and "--input-size" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    # --input-size measures both alike, which is then comparable.
    same = cli("compare", masked_resnet, "r24.safetensors", "--input-size", "3,20,20", "--json")
    assert same.exit_code == 0, same.stderr
    assert [m["model"]["input_size"] for m in json.loads(same.stdout)["models"]] == [[3, 20, 20]] * 2


def _closed_pipe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run the installed script with a stdout whose reader has already gone (`| true`)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [str(SNIPIT), *args], cwd=cwd, stdout=write, stderr=subprocess.PIPE, text=True, timeout=300
        )
    finally:
        os.close(write)


def test_a_reader_that_leaves_early_ends_the_command_quietly(masked_resnet, tmp_path):
    for args in (("report", str(masked_resnet), "--json"), ("methods",)):
        proc = _closed_pipe(*args, cwd=tmp_path)
        assert proc.returncode == 141, proc.stderr  # 128 + SIGPIPE, as `git log | head` ends
        assert proc.stderr == ""


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"snipit {snipit_cli.__version__}\n"
    assert snipit_cli.__version__ != "0.0.0+unknown"  # the installed distribution, snipit-cli


@pytest.mark.parametrize("structured", [False, True])
def test_an_exclude_pattern_that_matches_nothing_is_refused(cli, tmp_path, structured):
    args = ["prune", "snipit:lenet300-100", "--method", "magnitude" if not structured else "l1",
            "--exclude", "fc3", "--exclude", "fc_3", "-o", "x.safetensors"]  # fmt: skip
    result = cli(*args, *(["--structured"] if structured else []))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --exclude 'fc_3' matches no Conv/Linear layer")
    assert "fc1, fc2, fc3" in result.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_report_eval_applies_mean_and_std(cli, tmp_path):
    root = write_learnable_mnist(tmp_path / "mnist", 40)
    pruned = cli("prune", "snipit:lenet300-100", "--method", "magnitude", "-o", "l.safetensors", "-q")
    assert pruned.exit_code == 0, pruned.stderr
    result = cli("report", "l.safetensors", "--eval", "--data", "mnist", "--data-root", root,
                 "--mean", "0.5", "--std", "0.25", "--batch-size", "16", "--json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    got = json.loads(result.stdout)["eval"]
    # By hand: the same images normalised with (x - 0.5) / 0.25.
    from torchvision.datasets.mnist import read_image_file, read_label_file

    images = read_image_file(str(root / "MNIST/raw/t10k-images-idx3-ubyte")).float().div(255)
    labels = read_label_file(str(root / "MNIST/raw/t10k-labels-idx1-ubyte")).long()
    x = ((images - 0.5) / 0.25).unsqueeze(1)
    batches = [(x[i : i + 16], labels[i : i + 16]) for i in (0, 16, 32)]
    expected = evaluate(load_model(tmp_path / "l.safetensors"), batches=batches)
    assert got["samples"] == 40 and got["top1"] == expected["top1"]
    assert got["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    default = json.loads(cli("report", "l.safetensors", "--eval", "--data", "mnist", "--data-root", root,
                             "--json").stdout)["eval"]  # fmt: skip
    assert default["loss"] != pytest.approx(got["loss"], rel=1e-3)  # the flags changed what was fed
    assert torch.get_num_threads() == 1


def test_prune_records_the_normalisation_it_applied(cli, tmp_path):
    root = write_learnable_mnist(tmp_path / "mnist", 40)
    data = ("--data", "mnist", "--data-root", root, "--split", "test", "--batches", "1", "--steps", "1")
    flags = json.loads(cli("prune", "snipit:lenet300-100", *data, "--mean", "0.5", "--std", "0.25",
                           "-o", "a.safetensors", "--json").stdout)  # fmt: skip
    assert flags["model"]["mean"] == [0.5] and flags["model"]["std"] == [0.25]
    customary = json.loads(cli("prune", "snipit:lenet300-100", *data, "-o", "b.safetensors", "--json").stdout)
    assert customary["model"]["mean"] == [0.1307] and customary["model"]["std"] == [0.3081]  # MNIST's own


def test_help_shows_every_written_default(cli, monkeypatch):
    # rich took "[default: ...]" in help texts for markup and dropped it ("named datasets .").
    from typer.main import get_command

    from snipit_cli.cli.app import app

    monkeypatch.setenv("COLUMNS", "1000")
    for name, command in get_command(app).commands.items():
        shown = cli(name, "--help").stdout
        for param in command.params:
            written = (getattr(param, "help", None) or "").replace("\\[", "[")
            if "[default:" in written:
                assert written.split("[default:")[1].split("]")[0] in shown, (name, param.name)


def test_a_missing_split_names_the_split_that_is_there(cli, tmp_path):
    root = write_learnable_mnist(tmp_path / "mnist", 8)  # the test split only, as ../shared/data holds
    result = cli(
        "prune", "snipit:lenet300-100", "--data", "mnist", "--data-root", root, "-o", "x.safetensors"
    )
    assert result.exit_code == 2 and "only the test split is there (--split test reads it)" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "x.safetensors").exists()
