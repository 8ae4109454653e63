"""``snipit prune`` through Typer's CliRunner: outputs, JSON, config files and errors."""

import json
from pathlib import Path

import pytest
import torch
from conftest import folder_listing

from snipit_cli import load_model
from snipit_cli.layers import prunable_layers
from snipit_cli.models.checkpoint import read_tensors
from snipit_cli.workflows import documents

#: The prune document's top-level keys, in order (README "JSON documents"; documents.COMMANDS["prune"]).
REPORT_KEYS = (
    "schema_version",
    "snipit_version",
    "command",
    "model",
    "pruning",
    "sparsity",
    "params",
    "nodes",
    "macs",
    "layers",
    "connectivity",
    "storage",
    "file",
    "folder",
    "report_file",
    "training",
    "run",
    "notes",
)
FAST = ("--input-size", "3,8,8", "--batch-size", "4", "--batches", "2", "--steps", "2")


def _zeros(model) -> int:
    return sum(int((m.weight == 0).sum()) for m in prunable_layers(model).values())


def _prune(cli, checkpoint, arch, *extra):
    return cli("prune", checkpoint, "--arch", arch, *FAST, *extra)


def test_json_matches_report_file_and_checkpoint_is_exact(cli, tiny_checkpoint, tiny_arch, tmp_path):
    result = _prune(cli, tiny_checkpoint, tiny_arch, "--sparsity", "0.8", "-o", "out.safetensors", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc == json.loads((tmp_path / "out.report.json").read_text())
    assert tuple(doc) == REPORT_KEYS == documents.COMMANDS["prune"]
    assert {"method", "structured", "schedule", "calibration"} <= doc["pruning"].keys()
    assert "path" in doc["file"] and "seconds" in doc["run"]
    assert {"source", "arch", "input_size"} <= doc["model"].keys()
    assert {"target", "achieved"} <= doc["sparsity"].keys()
    assert {"total", "prunable", "nonzero"} <= doc["params"].keys()
    assert {"data", "batches", "batch_size", "samples"} <= doc["pruning"]["calibration"].keys()
    assert {"name", "shape", "params", "nonzero", "sparsity"} <= doc["layers"][0].keys()
    assert doc["pruning"]["schedule"] == pytest.approx([0.5, 0.65, 0.725, 0.8])
    calibration = doc["pruning"]["calibration"]
    assert calibration | {"passes": 8, "samples": 8} == calibration

    tensors = read_tensors(tmp_path / "out.safetensors")
    prunable = [tensors[f"{name}.weight"] for name in ("features.0", "features.3", "head")]
    total = sum(t.numel() for t in prunable)
    zeros = sum(int((t == 0).sum()) for t in prunable)
    assert zeros == round(0.8 * total)
    assert doc["params"]["prunable"] == total and doc["params"]["prunable_nonzero"] == total - zeros
    assert doc["sparsity"]["achieved"] == zeros / total
    # not a terminal: no bar, no table, no colour; one plain line per step for logs
    assert result.stderr.splitlines() == [
        f"step {i}/4: sparsity {f:.4f}, kept {k:,} of {total:,}"
        for i, f, k in zip(
            range(1, 5),
            doc["pruning"]["schedule"],
            [total - round(f * total) for f in doc["pruning"]["schedule"]],
            strict=True,
        )
    ]


def test_a_cut_path_is_reported_with_its_note(cli, tiny_checkpoint, tiny_arch):
    args = ("--sparsity", "0.99", "--allow-collapse", "-o", "cut.safetensors", "--json")
    result = _prune(cli, tiny_checkpoint, tiny_arch, *args)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    block = doc["connectivity"]
    assert block["path"] is False and block["layers_cut"] >= 1
    assert block["units"] == 4 + 8 + 5  # features.0, features.3, head
    cut = [r["name"] for r in block["layers"] if r["no_incoming"] == r["units"]]
    note = next(n for n in doc["notes"] if n.startswith("no input-to-output path survives"))
    assert cut[0] in note and "--sparsity" in note and "no --allow-collapse" in note
    assert note in result.stderr
    described = json.loads(cli("report", "cut.safetensors", "--json").stdout)
    assert described["connectivity"] == block and note in described["notes"]


def test_default_output_names_and_reload(cli, tiny_checkpoint, tiny_arch, tmp_path):
    result = _prune(cli, tiny_checkpoint, tiny_arch, "--method", "magnitude", "--sparsity", "0.5")
    assert result.exit_code == 0, result.stderr
    assert "tiny-pruned.safetensors" in result.stdout
    assert {"tiny-pruned.safetensors", "tiny-pruned.report.json"} <= folder_listing(tmp_path)
    model = load_model(tmp_path / "tiny-pruned.safetensors")  # no --arch: read from metadata
    weights = [m.weight for m in prunable_layers(model).values()]
    assert sum(int((w == 0).sum()) for w in weights) == round(0.5 * sum(w.numel() for w in weights))


def test_same_seed_bit_identical_checkpoints(cli, tiny_checkpoint, tiny_arch, tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        result = _prune(cli, tiny_checkpoint, tiny_arch, "--seed", seed, "-o", f"{name}.safetensors")
        assert result.exit_code == 0, result.stderr
    a, b, c = (read_tensors(tmp_path / f"{n}.safetensors") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k] == 0, c[k] == 0) for k in a)


def test_existing_output_needs_force(cli, tiny_checkpoint, tiny_arch, tmp_path):
    (tmp_path / "out.safetensors").write_bytes(b"precious")
    result = _prune(cli, tiny_checkpoint, tiny_arch, "-o", "out.safetensors")
    assert result.exit_code == 2
    assert "--force" in result.stderr
    assert (tmp_path / "out.safetensors").read_bytes() == b"precious"
    result = _prune(cli, tiny_checkpoint, tiny_arch, "-o", "out.safetensors", "--force")
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "out.safetensors").read_bytes() != b"precious"


def test_config_file_with_flag_override(cli, tiny_checkpoint, tiny_arch, tmp_path):
    config = tmp_path / "recipe.toml"
    config.write_text(
        f'model = "{tiny_checkpoint}"\narch = "{tiny_arch}"\ninput-size = "3,8,8"\nbatch_size = 4\n'
        'batches = 1\nsteps = 1\nmethod = "snip"\nsparsity = 0.6\nexclude = ["head"]\n'
        'output = "from-config.safetensors"\n'
    )
    result = cli("prune", "--config", config, "--sparsity", "0.7", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["pruning"]["method"] == "snip" and doc["sparsity"]["target"] == 0.7
    assert doc["pruning"]["exclude"] == ["head"] and doc["file"]["path"] == "from-config.safetensors"
    head = next(r for r in doc["layers"] if r["name"] == "head")
    assert head["sparsity"] == 0 and not head["prunable"]


def test_config_with_unknown_key_is_refused(cli, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('model = "timm:resnet18"\nsparsityy = 0.5\n')
    result = cli("prune", "--config", config)
    assert result.exit_code == 2
    assert "sparsityy" in result.stderr
    assert folder_listing(tmp_path) == {"bad.toml"}


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parents[2] / "sample_configs").glob("*.toml")))
def test_sample_configs_run_as_they_are(cli, recipe, tmp_path):
    result = cli("prune", "--config", recipe, "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (tmp_path / doc["file"]["path"]).is_file()
    assert doc["sparsity"]["achieved"] == pytest.approx(doc["sparsity"]["target"], abs=1e-6)


ERRORS = [
    (("timm:resnet18", "--sparsity", "1.5"), "--sparsity must be a fraction"),
    (("timm:resnet18", "--sparsity", "0"), "--sparsity must be a fraction"),
    (("timm:resnet19",), "did you mean resnet18"),
    (("timm:resnet18", "--method", "nope"), "unknown method 'nope'"),
    (("missing.pt", "--arch", "timm:resnet18"), "no such file 'missing.pt'"),
    (("timm:resnet18", "--data", "cifar10"), "--download"),
    (("timm:resnet18", "--input-size", "3,32"), "--input-size must be C,H,W"),
    (("timm:resnet18", "--input-size", "1,32,32"), "does not accept inputs of shape (1, 32, 32)"),
    (("timm:resnet18", "--data", "nowhere/at/all"), "unknown --data"),
    (("timm:resnet18", "--arch-kwargs", "{bad"), "--arch-kwargs is not valid JSON"),
    (("timm:resnet18", "--exclude", "*"), "no prunable Conv/Linear layer"),
    (("timm:resnet18", "-o", "out.pt"), "must end in .safetensors"),
    (("timm:resnet18", "-o", "no/such/dir/out.safetensors"), "does not exist"),
    pytest.param(
        ("timm:resnet18", "--device", "cuda"),
        "no CUDA GPU",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),
    ),
]


@pytest.mark.parametrize(("args", "fragment"), ERRORS)
def test_errors_exit_2_with_one_line_and_no_files(cli, tmp_path, args, fragment):
    before = folder_listing(tmp_path)
    result = cli("prune", *args, "--batches", "1", "--batch-size", "2", "--steps", "0")
    assert result.exit_code == 2, result.stderr
    assert fragment in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert folder_listing(tmp_path) == before


def test_state_dict_that_does_not_fit_the_arch(cli, tiny_checkpoint, tiny_arch, tmp_path):
    before = folder_listing(tmp_path)
    result = cli("prune", tiny_checkpoint, "--arch", tiny_arch, "--arch-kwargs", '{"num_classes": 9}')
    assert result.exit_code == 2
    assert "head.weight (5, 8) vs (9, 8)" in result.stderr
    assert folder_listing(tmp_path) == before


def test_pickled_module_refused_without_flag(cli, tmp_path):
    from tiny_models import TinyCNN

    torch.save(TinyCNN(), tmp_path / "whole.pt")
    before = folder_listing(tmp_path)
    result = cli("prune", "whole.pt", *FAST)
    assert result.exit_code == 2 and "--trust-pickle" in result.stderr
    assert folder_listing(tmp_path) == before
    result = cli("prune", "whole.pt", *FAST, "--trust-pickle", "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["model"]["arch"]["spec"] == "tiny_models:TinyCNN"  # the class pickle itself named
    reloaded = load_model(doc["file"]["path"])  # so the pruned checkpoint reloads without pickle
    assert _zeros(reloaded) == round(0.9 * doc["params"]["prunable"])


def test_debug_shows_the_traceback(cli):
    from snipit_cli.errors import ModelError

    with pytest.raises(ModelError):
        cli("prune", "timm:resnet19", "--debug")


def test_methods_lists_the_registry(cli):
    result = cli("methods", "--json")
    assert result.exit_code == 0
    names = [m["name"] for m in json.loads(result.stdout)["methods"]]
    assert {"snip-it", "snip", "magnitude", "random"} <= set(names)
    human = cli("methods").stdout
    assert "snip-it" in human and "Verdenius" in human


def _write_image_folder(root: Path, n_per_class: int = 3) -> Path:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(n_per_class):
            pixels = torch.randint(0, 256, (10, 12, 3), generator=g, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def test_image_folder_end_to_end_with_small_dataset_note(cli, tiny_arch, tmp_path):
    from tiny_models import TinyCNN

    folder = _write_image_folder(tmp_path / "images")
    torch.save(TinyCNN(num_classes=2).state_dict(), tmp_path / "two.pt")
    args = ("two.pt", "--arch", tiny_arch, "--arch-kwargs", '{"num_classes": 2}', "--input-size", "3,8,8")
    result = cli(
        "prune",
        *args,
        "--data",
        f"imagefolder:{folder}",
        "--batch-size",
        "4",
        "--batches",
        "3",
        "--steps",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    calibration = doc["pruning"]["calibration"]
    assert calibration["samples"] == 6 and calibration["batches"] == 2
    assert calibration["data"] == f"imagefolder:{folder}"
    assert "only 6 samples" in result.stderr and "only 6 samples" in doc["notes"][0]


def test_labels_beyond_the_models_classes_are_an_error(cli, tiny_arch, tmp_path):
    from tiny_models import TinyCNN

    folder = _write_image_folder(tmp_path / "images")
    torch.save(TinyCNN(num_classes=1).state_dict(), tmp_path / "one.pt")
    before = folder_listing(tmp_path)
    result = cli(
        "prune",
        "one.pt",
        "--arch",
        tiny_arch,
        "--arch-kwargs",
        '{"num_classes": 1}',
        "--input-size",
        "3,8,8",
        "--data",
        str(folder),
        "--batch-size",
        "6",
        "--batches",
        "1",
    )
    assert result.exit_code == 2
    assert "outside the model's 1 classes" in result.stderr
    assert folder_listing(tmp_path) == before


def test_config_keys_are_flag_names(cli, tiny_checkpoint, tiny_arch, tmp_path):
    config = tmp_path / "flags.toml"
    config.write_text(
        f'model = "{tiny_checkpoint}"\narch = "{tiny_arch}"\ninput-size = "3,8,8"\nbatch-size = 2\n'
        "batches = 1\nsteps = 0\njson = true\nquiet = true\n"
    )
    result = cli("prune", "--config", config)
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["pruning"]["calibration"]["batch_size"] == 2


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["prune", "timm:resnet18", "--sparsity", "abc"], "Invalid value for '--sparsity'"),
        (["prune", "timm:resnet18", "--bogus"], "No such option: --bogus"),
        (["prune", "timm:resnet18", "--split", "val"], "Invalid value for '--split'"),
    ],
)
def test_click_usage_errors_are_one_line_too(monkeypatch, capsys, tmp_path, args, fragment):
    from snipit_cli.cli.app import main

    monkeypatch.setattr("sys.argv", ["snipit", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert fragment in captured.err and captured.out == ""
    assert list(tmp_path.iterdir()) == []


def test_failed_report_write_leaves_old_outputs_intact(
    cli, tiny_checkpoint, tiny_arch, tmp_path, monkeypatch
):
    (tmp_path / "out.safetensors").write_bytes(b"old checkpoint")
    (tmp_path / "out.report.json").write_text("old report")
    before = folder_listing(tmp_path)
    real_write_text = Path.write_text

    def disk_full(self, *args, **kwargs):
        if self.name.startswith(".out.report.json"):
            raise OSError(28, "No space left on device", str(self))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", disk_full)
    result = _prune(cli, tiny_checkpoint, tiny_arch, "-o", "out.safetensors", "--force")
    assert result.exit_code == 2
    assert "No space left on device" in result.stderr
    assert folder_listing(tmp_path) == before  # no temp files either
    assert (tmp_path / "out.safetensors").read_bytes() == b"old checkpoint"
    assert (tmp_path / "out.report.json").read_text() == "old report"


def test_outputs_get_the_usual_file_mode(cli, tiny_checkpoint, tiny_arch, tmp_path):
    import os
    import stat

    result = _prune(cli, tiny_checkpoint, tiny_arch, "-o", "out.safetensors")
    assert result.exit_code == 0, result.stderr
    umask = os.umask(0)
    os.umask(umask)
    for name in ("out.safetensors", "out.report.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
