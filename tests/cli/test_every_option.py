"""Options no other test used, each through the CLI with what it must change (issue 14: every
user-facing option is exercised; ``tests/journeys/test_option_coverage.py`` keeps it so)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from journeys.workspace import write_mnist

from snipit_cli.models.checkpoint import read_metadata, read_tensors
from snipit_cli.pruning.structured.options import kernel_multiple


@pytest.fixture
def mnist(tmp_path: Path) -> Path:
    """MNIST in torchvision's layout with both splits, as a downloaded copy has."""
    write_mnist(tmp_path / "mnist" / "MNIST" / "raw", ("train", "test"), n=48)
    return tmp_path / "mnist"


def _json(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("command", ["prune", "train", "report"])
def test_pretrained_offline_is_one_line_error(cli, command, mnist):
    extra = ["--data", "mnist", "--data-root", str(mnist)] if command == "train" else []
    result = cli(command, "timm:resnet18", "--pretrained", *extra)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "could not get pretrained weights for timm:resnet18" in (
        result.stderr
    )
    assert len(result.stderr.splitlines()) == 1


def test_compare_pretrained_applies_to_library_models_only(cli, tmp_path):
    ok = cli("prune", "snipit:lenet300-100", "--method", "magnitude", "-o", "l.safetensors", "-q")
    assert ok.exit_code == 0, ok.stderr
    # --no-pretrained is the default; the checkpoint is not asked for library weights either way.
    same = _json(cli("compare", "l.safetensors", "l.safetensors", "--no-pretrained", "--json"))
    assert same["ratios"][1]["nonzero"] == 1.0
    result = cli("compare", "timm:resnet18", "l.safetensors", "--pretrained")
    assert result.exit_code == 2 and "pretrained weights for timm:resnet18" in result.stderr


def test_workers_decode_the_same_batches(cli, mnist):
    data = ("--data", "mnist", "--data-root", mnist, "--batches", "2", "--batch-size", "8", "--steps", "1")
    masks = {}
    for workers in ("0", "2"):
        out = f"w{workers}.safetensors"
        result = cli("prune", "snipit:lenet300-100", *data, "--workers", workers, "-o", out)
        assert result.exit_code == 0, result.stderr
        masks[workers] = {k: v == 0 for k, v in read_tensors(Path(out)).items()}
    assert masks["0"].keys() == masks["2"].keys()
    assert all(torch.equal(masks["0"][k], masks["2"][k]) for k in masks["0"])


def test_round_to_keeps_multiples_of_n(cli):
    doc = _json(cli("prune", "snipit:small-cnn", "--arch-kwargs", '{"width": 8}', "--structured", "--method",
                    "l1", "--sparsity", "0.4", "--round-to", "4", "--json"))  # fmt: skip
    convs = [row["shape"][0] for row in doc["layers"] if row["type"] == "Conv2d"]
    assert convs and all(width % 4 == 0 for width in convs) and convs != [8, 16, 32, 32]
    assert doc["pruning"]["round_to"] == 4


@pytest.mark.parametrize(
    ("capability", "multiple"), [("AVX512", 16), ("AVX512_BF16", 16), ("AVX2", 8), ("DEFAULT", 1)]
)
def test_round_to_auto_is_the_multiple_the_cpu_kernels_compute_in(cli, monkeypatch, capability, multiple):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    doc = _json(cli("prune", "snipit:small-cnn", "--arch-kwargs", '{"width": 32}', "--structured", "--method",
                    "l1", "--sparsity", "0.4", "--round-to", "auto", "--json"))  # fmt: skip
    assert doc["pruning"]["round_to"] == multiple  # the resolved number is what the file records
    convs = [row["shape"][0] for row in doc["layers"] if row["type"] == "Conv2d"]
    assert all(width % multiple == 0 for width in convs) and convs != [32, 64, 128, 128]
    assert f"--round-to auto: {multiple} on cpu" in " ".join(doc["notes"])


def test_round_to_auto_on_cuda_is_8_without_a_gpu_needed_to_say_so():
    assert kernel_multiple(torch.device("cuda"))[0] == 8
    assert kernel_multiple(torch.device("mps"))[0] == 1


@pytest.mark.parametrize("value", ["x", "0", "-8", "1.5"])
def test_a_bad_round_to_is_one_line(cli, value):
    result = cli("prune", "snipit:small-cnn", "--structured", "--round-to", value, "-o", "x.safetensors")
    assert result.exit_code == 2 and "--round-to must be a whole number of channels" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not Path("x.safetensors").exists()


def test_target_latency_cuts_the_measured_latency_and_reports_both_timings(cli):
    doc = _json(cli("prune", "snipit:small-cnn", "--arch-kwargs", '{"width": 32}', "--input-size", "1,64,64",
                    "--structured", "--method", "l1", "--target", "latency", "--sparsity", "0.3",
                    "--latency-batch", "2", "--json"))  # fmt: skip
    latency = doc["pruning"]["latency"]
    assert latency["batch"] == 2 and latency["repeats"] == 20 and latency["device"] == "cpu"
    assert latency["removed"] == 1 - latency["slim_ms"] / latency["dense_ms"]  # the figure is its timings'
    assert doc["sparsity"]["of"] == "latency" and doc["sparsity"]["achieved"] == latency["removed"]
    assert doc["macs"]["removed"] > 0 and doc["nodes"]["remaining"] < doc["nodes"]["dense"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("prune", "snipit:small-cnn", "--structured", "--latency-batch", "4"),
         "error: --latency-batch sets the batch of --target latency; add --target latency"),
        (("prune", "snipit:small-cnn", "--structured", "--target", "latency", "--latency-batch", "0"),
         "error: --latency-batch must be 1 or more, got 0"),
        (("train", "snipit:small-cnn", "--method", "snap-it", "--structured", "--target", "latency"),
         "error: --target latency is for snipit prune"),
    ],
)  # fmt: skip
def test_latency_options_out_of_place_are_one_line_errors(cli, mnist, args, message):
    result = cli(*args, *(("--data", "mnist", "--data-root", mnist) if args[0] == "train" else ()))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(message) and len(result.stderr.splitlines()) == 1


def test_train_optimizer_schedule_seed_and_normalisation_options(cli, mnist, tmp_path):
    args = ("train", "snipit:lenet300-100", "--data", "mnist", "--data-root", mnist, "--epochs", "2",
            "--batch-size", "16", "--momentum", "0", "--lr-schedule", "constant", "--lr", "0.01", "--seed",
            "3", "--mean", "0.5", "--std", "0.5", "--workers", "0", "--output", "t.safetensors",
            "--quiet")  # fmt: skip
    result = cli(*args, "--json")
    doc = _json(result)
    training = doc["training"]
    assert training["optimizer"]["momentum"] == 0 and training["optimizer"]["lr_schedule"] == "constant"
    assert [e["lr"] for e in training["history"]] == [0.01, 0.01] and training["seed"] == 3
    assert result.stderr == ""  # --quiet
    again = cli(*args[:-3], "--output", "t2.safetensors", "--quiet", "--json")
    w1, w2 = read_tensors(Path("t.safetensors")), read_tensors(Path("t2.safetensors"))
    assert all(torch.equal(w1[k], w2[k]) for k in w1)  # --seed 3 twice: the same run
    other = cli(*args[:-9], "--seed", "4", "--mean", "0.5", "--std", "0.5", "-o", "t3.safetensors", "-q")
    assert other.exit_code == 0, other.stderr
    assert not torch.equal(w1["fc1.weight"], read_tensors(Path("t3.safetensors"))["fc1.weight"])
    assert again.exit_code == 0


def test_train_structured_target_min_keep_and_prune_batches(cli, mnist):
    doc = _json(cli("train", "snipit:small-cnn", "--arch-kwargs", '{"width": 8}', "--data", "mnist",
                    "--data-root", mnist, "--epochs", "1", "--batch-size", "16", "--prune-method", "l1",
                    "--structured", "--target", "params", "--min-keep", "0.5", "--sparsity", "0.3",
                    "--prune-freq", "0", "--prune-batches", "1", "-o", "s.safetensors",
                    "--json"))  # fmt: skip
    pruning = doc["training"]["pruning"]
    assert pruning["of"] == "params" and pruning["calibration"]["batches"] == 1
    widths = {k: v.shape[0] for k, v in read_tensors(Path("s.safetensors")).items() if k.endswith("weight")}
    dense = {
        "features.0.weight": 8,
        "features.3.weight": 16,
        "features.7.weight": 32,
        "features.10.weight": 32,
    }
    assert all(widths[k] >= n // 2 for k, n in dense.items())  # --min-keep 0.5 of each group


def test_prune_finetune_lr(cli, mnist):
    doc = _json(cli("prune", "snipit:lenet300-100", "--data", "mnist", "--data-root", mnist, "--batches", "1",
                    "--batch-size", "16", "--steps", "1", "--finetune-epochs", "1", "--finetune-lr", "0.01",
                    "-o", "f.safetensors", "--json"))  # fmt: skip
    assert doc["training"]["optimizer"]["lr"] == 0.01 and doc["training"]["history"][0]["lr"] < 0.01
    assert read_metadata(Path("f.safetensors"))["training"]["optimizer"]["lr"] == 0.01


def test_train_reads_a_config_file(cli, mnist, tmp_path):
    config = tmp_path / "train.toml"
    config.write_text(f'data = "mnist"\ndata-root = "{mnist}"\nepochs = 1\nbatch-size = 16\n')
    doc = _json(cli("train", "snipit:lenet300-100", "--config", config, "-o", "c.safetensors", "--json"))
    assert doc["training"]["epochs"] == 1 and doc["training"]["data"]["data"] == "mnist"


def test_report_eval_batches_and_download_of_a_present_dataset(cli, mnist):
    ok = cli("prune", "snipit:lenet300-100", "--method", "magnitude", "-o", "l.safetensors", "-q")
    assert ok.exit_code == 0, ok.stderr
    # --download with the files present reads them and fetches nothing (there is no network here).
    doc = _json(cli("report", "l.safetensors", "--eval", "--data", "mnist", "--data-root", mnist,
                    "--download", "--workers", "0", "--eval-batches", "2", "--batch-size", "5",
                    "--json"))  # fmt: skip
    assert doc["eval"]["samples"] == 10 and doc["eval"]["split"] == "test"


def test_compare_state_dicts_with_arch_kwargs_device_split_and_a_trusted_pickle(cli, tmp_path, mnist):
    from tiny_models import TinyMLP

    torch.manual_seed(0)
    torch.save(TinyMLP(num_classes=10, in_features=784).state_dict(), "sd.pt")
    torch.save(TinyMLP(num_classes=10, in_features=784), "whole.pt")
    common = ("--arch", "tiny_models:TinyMLP", "--arch-kwargs", '{"in_features": 784}', "--num-classes", "10",
              "--input-size", "1,28,28", "--device", "cpu")  # fmt: skip
    refused = cli("compare", "sd.pt", "whole.pt", *common)
    assert refused.exit_code == 2 and "--trust-pickle" in refused.stderr
    doc = _json(cli("compare", "sd.pt", "sd.pt", *common, "--eval", "--data", "mnist", "--data-root", mnist,
                    "--split", "train", "--download", "--workers", "0", "--json"))  # fmt: skip
    assert [m["eval"]["split"] for m in doc["models"]] == ["train", "train"]
    assert doc["models"][0]["eval"] == doc["models"][1]["eval"] and doc["models"][0]["eval"]["samples"] == 48
    trusted = _json(cli("compare", "sd.pt", "whole.pt", "--trust-pickle", *common, "--json"))
    assert trusted["models"][1]["params"]["total"] == trusted["models"][0]["params"]["total"]


def test_compare_debug_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "snipit_cli", "compare", "timm:resnet18", "missing.safetensors", "--debug"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "missing.safetensors" in proc.stderr


def test_convert_quiet(cli):
    ok = cli("prune", "snipit:lenet300-100", "--method", "magnitude", "-o", "l.safetensors", "-q")
    assert ok.exit_code == 0, ok.stderr
    result = cli("convert", "l.safetensors", "d.safetensors", "--storage", "dense", "--quiet")
    assert result.exit_code == 0 and result.stderr == "" and result.stdout.startswith("wrote")
    assert read_metadata(Path("d.safetensors"))["storage"]["encoding"] == "dense"
