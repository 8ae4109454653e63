"""Hub-style output folders (``-o DIR/``, ``--format hf``): config.json in timm's vocabulary,
model.safetensors, a model card; timm's ``local-dir:`` loads a dense/unstructured folder with
snipit not importable, ``snipit_cli.load_model`` and every command read both kinds back, and the
card's own usage code runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file

import snipit_cli

TINY = ("--num-classes", "5", "--input-size", "3,32,32", "--batch-size", "4", "--batches", "1")
UNSTRUCTURED = ("prune", "timm:test_resnet", *TINY, "--method", "magnitude", "--sparsity", "0.5")
STRUCTURED = ("prune", "timm:test_resnet", *TINY, "--structured", "--sparsity", "0.3")
FILES = {"config.json", "model.safetensors", "README.md", "report.json"}
WITHOUT_SNIPIT = "import sys; sys.modules['snipit_cli'] = None\n"  # any import of snipit fails


def _probe() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(_probe())


def _one_error(result) -> str:
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("step ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def _card_code(folder: Path) -> str:
    return re.search(r"```python\n(.+?)```", (folder / "README.md").read_text(), re.S).group(1)


def test_a_folder_loads_with_timm_local_dir_without_snipit(cli, tmp_path):
    result = cli(*UNSTRUCTURED, "-o", "out/")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("wrote out/ (config.json, model.safetensors, README.md, report.json;")
    assert {p.name for p in (tmp_path / "out").iterdir()} == FILES
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["folder"] == "out" and report["file"]["path"] == "out/model.safetensors"
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["architecture"] == "test_resnet" and config["num_classes"] == 5
    assert config["num_features"] == timm.create_model("test_resnet").num_features
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert config["pretrained_cfg"]["mean"] == report["model"]["mean"]
    assert config["pretrained_cfg"]["std"] == report["model"]["std"]
    assert config["snipit"]["structured"] is False and config["snipit"]["method"] == "magnitude"

    # timm alone (snipit not importable) builds it from the folder and loads its weights
    code = WITHOUT_SNIPIT + (
        "import timm, torch\n"
        "model = timm.create_model('local-dir:out', pretrained=True).eval()\n"
        "x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))\n"
        "torch.save({'state': model.state_dict(), 'out': model(x).detach()}, 'timm_out.pt')\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    loaded = snipit_cli.load_model(tmp_path / "out")
    by_timm, by_snipit = torch.load(tmp_path / "timm_out.pt"), _outputs(loaded)
    assert by_timm["state"].keys() == loaded.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in by_timm["state"].items())
    torch.testing.assert_close(by_timm["out"], by_snipit, rtol=0, atol=1e-6)  # another process's threads
    # ... and plain safetensors + the library architecture load the same tensors
    plain = timm.create_model("test_resnet", num_classes=5)
    plain.load_state_dict(load_file(tmp_path / "out" / "model.safetensors"))
    assert torch.equal(_outputs(plain), by_snipit)


def test_the_model_card_holds_the_report_and_its_usage_code_runs(cli, tmp_path):
    assert cli(*UNSTRUCTURED, "-o", "out/").exit_code == 0
    card = (tmp_path / "out" / "README.md").read_text()
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert card.startswith("---\ntags:\n- image-classification\n- timm\n- pruned\n- snipit\n")
    assert "library_name: timm\n" in card
    assert "- **Pruning method:** magnitude\n" in card
    assert f"- **Sparsity:** {report['sparsity']['achieved']:.4f} of weights (target 0.5)\n" in card
    assert f"- **Params (M):** {report['params']['total'] / 1e6:.3f}" in card
    assert f"- **MACs (M):** {report['macs']['remaining'] / 1e6:.3f}" in card
    assert f"- **Command:** `snipit {' '.join(UNSTRUCTURED)} -o out/`\n" in card
    assert "arXiv:2006.00896" in card
    scope: dict = {}
    exec(_card_code(tmp_path / "out"), scope)  # the card's own lines, run where the folder is
    assert torch.equal(_outputs(scope["model"]), _outputs(snipit_cli.load_model(tmp_path / "out")))


def test_a_slim_folder_loads_with_snipit_and_report_reads_it(cli, tmp_path):
    result = cli(*STRUCTURED, "-o", "slim/", "--json")
    assert result.exit_code == 0, result.stderr
    pruned = json.loads(result.stdout)
    assert pruned["folder"] == "slim" and pruned["pruning"]["structured"]
    model = snipit_cli.load_model(tmp_path / "slim")
    params = pruned["params"]
    assert sum(p.numel() for p in model.parameters()) == params["total"] < params["dense"]
    config = json.loads((tmp_path / "slim" / "config.json").read_text())
    assert config["snipit"]["structured"] is True
    assert config["snipit"]["loads_with"] == "snipit_cli.load_model"
    assert 'snipit_cli.load_model("slim")' in _card_code(tmp_path / "slim")
    assert "library_name: pytorch\n" in (tmp_path / "slim" / "README.md").read_text()

    described = cli("report", "slim", "--json")
    assert described.exit_code == 0, described.stderr
    doc = json.loads(described.stdout)
    assert doc["params"] == pruned["params"] and doc["macs"]["remaining"] == pruned["macs"]["remaining"]
    assert doc["file"]["path"] == "slim/model.safetensors"
    scope: dict = {}
    exec(_card_code(tmp_path / "slim"), scope)
    assert torch.equal(_outputs(scope["model"]), _outputs(model))


def test_format_hf_names_the_folder_after_the_model(cli, tmp_path):
    result = cli(*UNSTRUCTURED, "--format", "hf")
    assert result.exit_code == 0, result.stderr
    assert {p.name for p in (tmp_path / "test_resnet-pruned").iterdir()} == FILES
    # a folder as input: default outputs are named after the folder, not model.safetensors
    again = cli("prune", "test_resnet-pruned", *TINY[4:], "--method", "magnitude", "--sparsity", "0.6")
    assert again.exit_code == 0, again.stderr
    assert (tmp_path / "test_resnet-pruned-pruned.safetensors").is_file()


def test_a_report_outside_the_folder_is_written_there(cli, tmp_path):
    result = cli(*UNSTRUCTURED, "-o", "out/", "--report", "r.json")
    assert result.exit_code == 0, result.stderr
    assert {p.name for p in (tmp_path / "out").iterdir()} == FILES - {"report.json"}
    assert json.loads((tmp_path / "r.json").read_text())["folder"] == "out"
    assert "Sparsity:** 0.5000" in (tmp_path / "out" / "README.md").read_text()


def test_an_existing_folder_is_replaced_only_with_force_and_only_if_it_is_snipits(cli, tmp_path):
    assert cli(*UNSTRUCTURED, "-o", "out/").exit_code == 0
    before = (tmp_path / "out" / "model.safetensors").read_bytes()
    assert "out already exists; pass --force" in _one_error(cli(*UNSTRUCTURED, "-o", "out/"))
    assert "out already exists; pass --force" in _one_error(cli(*UNSTRUCTURED, "-o", "out"))
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == before

    assert cli(*UNSTRUCTURED, "--sparsity", "0.7", "-o", "out/", "--force").exit_code == 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["sparsity"]["target"] == 0.7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp or backup left

    (tmp_path / "out" / "notes.txt").write_text("mine")
    last = _one_error(cli(*UNSTRUCTURED, "-o", "out/", "--force"))
    assert "out holds files snipit did not write (notes.txt)" in last
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("-o", "x.safetensors", "--format", "hf"), "--format hf writes a folder, but -o names a"),
        (("-o", "x/", "--format", "safetensors"), "-o x/ names a folder but --format is safetensors"),
        (("-o", "./", "--force"), "holds the working folder"),
        (("-o", "missing/x/"), "output folder missing does not exist"),
    ],
)
def test_contradictory_or_unsafe_folder_outputs_are_one_line_errors(cli, tmp_path, args, message):
    assert message in _one_error(cli(*UNSTRUCTURED, *args))
    assert list(tmp_path.iterdir()) == []


def test_a_timm_folder_of_save_for_hf_is_a_model_source(cli, tmp_path):
    from timm.models._hub import save_for_hf

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=3)
    save_for_hf(model, str(tmp_path / "theirs"), safe_serialization=True)
    result = cli("report", "theirs", "--input-size", "3,32,32", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["model"]["arch"]["spec"] == "timm:test_resnet"
    assert torch.equal(_outputs(snipit_cli.load_model(tmp_path / "theirs")), _outputs(model))

    (tmp_path / "theirs" / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "theirs" / "pytorch_model.bin")
    assert "holds pytorch_model.bin (a pickle)" in _one_error(cli("report", "theirs"))


def test_a_torchvision_folders_card_loads_it_with_torchvision(cli, tmp_path):
    args = ("prune", "torchvision:mobilenet_v3_small", *TINY, "--method", "magnitude", "--format", "hf")
    assert cli(*args).exit_code == 0
    folder = tmp_path / "mobilenet_v3_small-pruned"
    code = _card_code(folder)
    assert 'torchvision.models.get_model("mobilenet_v3_small", num_classes=5)' in code
    assert "architecture" not in json.loads((folder / "config.json").read_text())  # timm cannot build it
    scope: dict = {}
    exec(code, scope)
    assert torch.equal(_outputs(scope["model"]), _outputs(snipit_cli.load_model(folder)))


def test_a_sparse_storage_folder_says_snipit_loads_it(cli, tmp_path):
    assert cli(*UNSTRUCTURED, "--storage", "sparse", "-o", "sp/").exit_code == 0
    config = json.loads((tmp_path / "sp" / "config.json").read_text())
    assert config["snipit"]["loads_with"] == "snipit_cli.load_model"
    card = (tmp_path / "sp" / "README.md").read_text()
    assert "library_name: pytorch\n" in card and "sparse archive encoding" in card
    scope: dict = {}
    exec(_card_code(tmp_path / "sp"), scope)
    dense = cli(*UNSTRUCTURED, "-o", "dense/")
    assert dense.exit_code == 0
    assert torch.equal(_outputs(scope["model"]), _outputs(snipit_cli.load_model(tmp_path / "dense")))
