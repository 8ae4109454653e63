"""What snipit train trains and evaluates on: the default test split, image-folder splits,
--test-data, the input size and normalisation it records, and --resume reusing the recorded data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from mnist_files import write_learnable_mnist
from split_files import TEST, TRAIN, write_image_split

from snipit_cli.data.build import DataOptions
from snipit_cli.data.readers.base import IMAGENET_STATS
from snipit_cli.data.specs import parse_data_spec
from snipit_cli.models.checkpoint import read_metadata, read_tensors
from snipit_cli.training.loop import NullEpochProgress
from snipit_cli.training.optim import OptimizerOptions
from snipit_cli.workflows.session import ModelOptions
from snipit_cli.workflows.train import PruneWhileTraining, TrainRequest, run_train

LENET = "snipit:lenet300-100"
SMALL_RGB = ("snipit:small-cnn", "--arch-kwargs", '{"width": 2, "in_chans": 3}', "--input-size", "3,32,32")
ONE_EPOCH = ("--epochs", "1", "--batch-size", "32")


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def train_json(cli, *args: str) -> dict:
    result = cli("train", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- the default evaluation split


def test_mnist_trains_on_train_and_evaluates_on_test_by_default(cli, mnist_both):
    report = train_json(
        cli, LENET, "--data", "mnist", "--data-root", mnist_both, *ONE_EPOCH, "-o", "m.safetensors"
    )

    data = report["training"]["data"]
    assert (data["split"], data["test_split"], data["test"]) == ("train", "test", "test split")
    assert (data["train_samples"], data["test_samples"]) == (TRAIN, TEST)
    top1 = report["training"]["history"][0]["test_top1"]
    assert top1 is not None and round(top1 * TEST, 6) == round(top1 * TEST)  # a share of the 40 test images
    assert report["model"]["mean"] == [0.1307] and report["model"]["std"] == [0.3081]  # what was applied


def test_cifar10_readme_fine_tuning_command_runs(cli, cifar_both):
    """README: snipit train pruned.safetensors --data cifar10 --epochs 30 -o finetuned.safetensors."""
    pruned = cli(
        "prune", *SMALL_RGB, "--sparsity", "0.5", "--method", "magnitude", "-o", "pruned.safetensors"
    )
    assert pruned.exit_code == 0, pruned.stderr

    report = train_json(
        cli, "pruned.safetensors", "--data", "cifar10", "--data-root", cifar_both, *ONE_EPOCH,
        "-o", "finetuned.safetensors",
    )  # fmt: skip

    data = report["training"]["data"]
    assert (data["train_samples"], data["test_samples"]) == (TRAIN, TEST)
    assert report["training"]["history"][0]["test_top1"] is not None
    assert report["model"]["mean"] == [0.4914, 0.4822, 0.4465]  # CIFAR-10's, the pruned file had none
    assert report["sparsity"]["achieved"] == pytest.approx(0.5, abs=1e-3)


def test_prune_finetune_calibrating_on_train_evaluates_on_the_test_split(cli, cifar_both):
    result = cli(
        "prune", *SMALL_RGB, "--data", "cifar10", "--data-root", cifar_both, "--batch-size", "16",
        "--batches", "1", "--finetune-epochs", "1", "-o", "f.safetensors", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    finetune = json.loads(result.stdout)["training"]
    assert (finetune["data"]["train_samples"], finetune["data"]["test_samples"]) == (TRAIN, TEST)
    assert finetune["history"][0]["test_top1"] is not None
    assert read_metadata(Path("f.safetensors"))["training"]["epochs_done"] == 1


def test_a_missing_test_split_is_a_one_line_error_naming_the_ways_out(cli, tmp_path):
    root = write_learnable_mnist(tmp_path / "only-test", 40)  # t10k files only, as ../shared/data/mnist
    raw = root / "MNIST" / "raw"
    for kind in ("images-idx3", "labels-idx1"):
        (raw / f"t10k-{kind}-ubyte").rename(raw / f"train-{kind}-ubyte")  # now train only

    result = cli("train", LENET, "--data", "mnist", "--data-root", root, *ONE_EPOCH, "-o", "x.safetensors")

    one_line_error(result, "no mnist test split", "--holdout", "--test-split none", "--test-data")
    assert not Path("x.safetensors").exists()


def test_training_on_the_test_split_refuses_to_evaluate_on_it_too(cli, tmp_path):
    root = write_learnable_mnist(tmp_path / "only-test", 40)

    result = cli(
        "train", LENET, "--data", "mnist", "--data-root", root, "--split", "test", "-o", "x.safetensors"
    )

    one_line_error(result, "would reuse the training images", "--holdout", "--test-split none")
    assert not Path("x.safetensors").exists()
    held_out = train_json(
        cli, LENET, "--data", "mnist", "--data-root", root, "--split", "test", "--holdout", "0.25",
        *ONE_EPOCH, "-o", "x.safetensors",
    )  # fmt: skip
    assert (held_out["training"]["data"]["train_samples"], held_out["training"]["data"]["test_samples"]) == (
        30,
        10,
    )


def test_train_needs_data_and_its_help_promises_no_default(cli):
    lines = [line.strip("│ ") for line in cli("train", "--help").stdout.splitlines()]
    start = next(i for i, line in enumerate(lines) if re.match(r"--data\s+<str>", line))
    end = next(i for i, line in enumerate(lines[start + 1 :], start + 1) if line.startswith("-"))
    data_help = " ".join(lines[start:end])
    assert "required" in data_help
    assert "synthetic" not in data_help and "default" not in data_help

    one_line_error(cli("train", LENET), "needs a dataset", "--data")
    one_line_error(cli("train", LENET, "--data", "synthetic"), "needs a dataset")


# ---------------------------------------------------------------- image folders: splits, --test-data


def test_image_folder_with_split_subfolders_trains_on_train_and_tests_on_test(cli, image_splits):
    report = train_json(
        cli, *SMALL_RGB, "--data", f"imagefolder:{image_splits}", *ONE_EPOCH, "-o", "i.safetensors"
    )

    data = report["training"]["data"]
    assert (data["train_samples"], data["test_samples"]) == (24, 6)
    assert data["data"] == f"imagefolder:{image_splits.resolve()}"


def test_val_folder_is_the_test_split_when_there_is_no_test_folder(cli, image_splits):
    (image_splits / "test").rename(image_splits / "val")

    report = train_json(cli, *SMALL_RGB, "--data", image_splits, *ONE_EPOCH, "-o", "i.safetensors")

    assert report["training"]["data"]["test_samples"] == 6


def test_a_folder_without_splits_is_never_silently_evaluated_on(cli, image_splits):
    train = image_splits / "train"

    one_line_error(
        cli("train", *SMALL_RGB, "--data", f"imagefolder:{train}", *ONE_EPOCH, "-o", "x.safetensors"),
        "would reuse the training images", "--test-data", "--holdout", "--test-split none",
    )  # fmt: skip
    one_line_error(
        cli("train", *SMALL_RGB, "--data", train, "--test-data", train, *ONE_EPOCH, "-o", "x.safetensors"),
        "would reuse the training images",
    )
    assert not Path("x.safetensors").exists()

    report = train_json(
        cli, *SMALL_RGB, "--data", f"imagefolder:{train}",
        "--test-data", f"imagefolder:{image_splits / 'test'}", *ONE_EPOCH, "-o", "t.safetensors",
    )  # fmt: skip
    data = report["training"]["data"]
    assert (data["train_samples"], data["test_samples"]) == (24, 6)
    assert data["test_data"] == f"imagefolder:{(image_splits / 'test').resolve()}"


def test_a_folder_holding_only_train_has_no_test_split(cli, image_splits, tmp_path):
    """As ../shared/data/cifar10-train-jpg: a DIR with train/ only."""
    (image_splits / "test").rename(tmp_path / "elsewhere")

    one_line_error(
        cli("train", *SMALL_RGB, "--data", image_splits, *ONE_EPOCH, "-o", "x.safetensors"),
        "no test split in image folder", "has train/ but no test/ or val/", "--test-data",
    )  # fmt: skip
    report = train_json(
        cli, *SMALL_RGB, "--data", image_splits, "--test-data", tmp_path / "elsewhere", *ONE_EPOCH,
        "-o", "t.safetensors",
    )  # fmt: skip
    assert report["training"]["data"]["test_samples"] == 6


def test_test_data_classes_must_match_the_training_classes(cli, image_splits, tmp_path):
    (image_splits / "test" / "cat").rename(image_splits / "test" / "cow")

    result = cli("train", *SMALL_RGB, "--data", image_splits, *ONE_EPOCH, "-o", "x.safetensors")

    one_line_error(result, "differ from those trained on", "cow")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--holdout", "0.2"), "--test-data and --holdout"),
        (("--test-split", "none"), "drop --test-split none"),
    ],
)
def test_test_data_conflicts(cli, image_splits, extra, fragment):
    result = cli(
        "train", *SMALL_RGB, "--data", image_splits / "train", "--test-data", image_splits / "test", *extra,
        "-o", "x.safetensors",
    )  # fmt: skip
    one_line_error(result, fragment)


def test_prune_finetune_on_a_folder_without_splits_trains_unevaluated_and_says_so(cli, image_splits):
    result = cli(
        "prune", *SMALL_RGB, "--data", image_splits / "train", "--batch-size", "8", "--batches", "1",
        "--finetune-epochs", "1", "-o", "f.safetensors", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["training"]["data"]["test_samples"] == 0
    assert report["training"]["history"][0]["test_top1"] is None
    assert any(
        "not evaluated" in note and "would reuse the training images" in note for note in report["notes"]
    )


# ---------------------------------------------------------------- input size from the images


def test_input_size_comes_from_the_images_for_a_model_that_does_not_say(
    cli, tiny_checkpoint, tiny_arch, image_splits
):
    (image_splits / "train" / "ant").rename(image_splits / "train" / "dog")  # 3 classes; TinyCNN has 5
    common = ("--arch", tiny_arch, "--data", image_splits / "train", "--batch-size", "8")

    trained = train_json(
        cli, tiny_checkpoint, *common, "--test-split", "none", "--epochs", "1", "-o", "t.safetensors"
    )
    pruned = cli("prune", tiny_checkpoint, *common, "--batches", "1", "-o", "p.safetensors", "--json")

    assert pruned.exit_code == 0, pruned.stderr
    for model in (trained["model"], json.loads(pruned.stdout)["model"]):
        assert model["input_size"] == [3, 16, 16]
        assert model["input_size_from"] == "image folder (16x16 images)"
        assert model["mean"] == list(IMAGENET_STATS[0]) and model["std"] == list(IMAGENET_STATS[1])
    assert read_metadata(Path("p.safetensors"))["model"]["mean"] == list(IMAGENET_STATS[0])


def test_images_of_different_sizes_say_so(cli, tiny_checkpoint, tiny_arch, tmp_path):
    write_image_split(tmp_path / "mixed", 2, size=(16, 16))
    write_image_split(tmp_path / "more", 1, size=(12, 20))
    for cls in ("ant", "bee", "cat"):
        (tmp_path / "more" / cls / "0.png").rename(tmp_path / "mixed" / cls / "wide.png")

    result = cli(
        "prune", tiny_checkpoint, "--arch", tiny_arch, "--data", tmp_path / "mixed", "-o", "x.safetensors"
    )

    one_line_error(result, "cannot tell what input size", "differ in size (12x20, 16x16", "--input-size")


def test_mean_and_std_flags_are_what_the_checkpoint_records(cli, mnist_both):
    report = train_json(
        cli, LENET, "--data", "mnist", "--data-root", mnist_both, "--mean", "0.5", "--std", "0.25",
        *ONE_EPOCH, "-o", "m.safetensors",
    )  # fmt: skip
    assert report["model"]["mean"] == [0.5] and report["model"]["std"] == [0.25]
    assert read_metadata(Path("m.safetensors"))["model"]["std"] == [0.25]


# ---------------------------------------------------------------- --resume reuses the recorded data


RUN = ("--batch-size", "32", "--optimizer", "adamw", "--lr-schedule", "constant", "--seed", "3")


def test_resume_without_data_options_continues_identically(cli, mnist_both):
    data = ("--data", "mnist", "--data-root", mnist_both)
    straight = train_json(cli, LENET, *data, *RUN, "--epochs", "2", "-o", "straight.safetensors")
    train_json(cli, LENET, *data, *RUN, "--epochs", "1", "--checkpoint-every", "1", "-o", "part.safetensors")

    resumed = train_json(cli, "part.safetensors", "--resume", "--epochs", "2", "-o", "resumed.safetensors")

    a, b = read_tensors("straight.safetensors"), read_tensors("resumed.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in straight["training"]["history"]]
    assert [{k: v for k, v in h.items() if k != "seconds"} for h in resumed["training"]["history"]] == strip
    assert resumed["training"]["data"] == straight["training"]["data"]
    assert resumed["training"]["optimizer"] == straight["training"]["optimizer"]
    assert resumed["training"]["seed"] == 3


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--data", "cifar10"), "was trained with --data mnist, not cifar10"),
        (("--split", "test"), "was trained with --split train, not test"),
        (("--holdout", "0.2"), "was trained with --holdout none, not 0.2"),
        (("--seed", "4"), "was trained with --seed 3, not 4"),
        (("--optimizer", "sgd"), "was trained with --optimizer adamw, not sgd"),
        (("--exclude", "fc1"), "was trained with --exclude [], not ['fc1']"),
    ],
)
def test_resume_refuses_other_data(cli, mnist_both, args, fragment):
    train_json(
        cli, LENET, "--data", "mnist", "--data-root", mnist_both, *RUN, "--epochs", "1", "-o", "p.safetensors"
    )

    result = cli("train", "p.safetensors", "--resume", "--epochs", "2", *args, "-o", "r.safetensors")

    one_line_error(result, fragment, "drop")
    assert not Path("r.safetensors").exists()


def test_resume_keeps_the_recorded_exclude(cli, mnist_both):
    data = ("--data", "mnist", "--data-root", mnist_both, *RUN)
    train_json(cli, LENET, *data, "--exclude", "fc3", "--epochs", "1", "-o", "p.safetensors")
    resumed = train_json(cli, "p.safetensors", "--resume", "--epochs", "2", "-o", "r.safetensors")
    assert resumed["training"]["exclude"] == ["fc3"]
    assert resumed["params"]["prunable"] == 784 * 300 + 300 * 100  # fc3 stays out of the ranking


def test_resume_takes_the_same_values_given_again_and_a_moved_data_root(cli, mnist_both, tmp_path):
    train_json(
        cli, LENET, "--data", "mnist", "--data-root", mnist_both, *RUN, "--epochs", "1", "-o", "p.safetensors"
    )
    moved = mnist_both.rename(tmp_path / "moved")

    resumed = train_json(
        cli, "p.safetensors", "--resume", "--epochs", "2", "--data", "mnist", "--split", "train",
        "--data-root", moved, "--seed", "3", "-o", "r.safetensors",
    )  # fmt: skip

    assert resumed["training"]["data"]["data_root"] == str(moved.resolve())
    assert resumed["training"]["epochs_done"] == 2


class StopAt(NullEpochProgress):
    """Interrupts the run as epoch ``n`` (0-based) starts, as Ctrl-C would."""

    def __init__(self, n: int):
        self.n = n

    def start_epoch(self, epoch, n_epochs, n_batches):
        if epoch == self.n:
            raise KeyboardInterrupt


def test_resume_reuses_the_recorded_pruning_schedule(cli, mnist_both):
    """Interrupted mid-schedule, resumed with only --resume --epochs: the remaining steps still run."""

    def request(output: str) -> TrainRequest:
        return TrainRequest(
            model=ModelOptions(LENET),
            data=DataOptions(parse_data_spec("mnist"), mnist_both, batch_size=32),
            epochs=3,
            optimizer=OptimizerOptions("adamw", lr_schedule="constant"),
            prune=PruneWhileTraining("snip-it", 0.9, delay=0, freq=1, steps=1, batches=2),
            output=Path(output),
            checkpoint_every=1,
        )

    straight = run_train(request("straight.safetensors")).report
    with pytest.raises(KeyboardInterrupt):
        run_train(request("part.safetensors"), StopAt(2))
    assert len(read_metadata(Path("part.safetensors"))["training"]["pruning"]["events"]) == 2

    resumed = train_json(cli, "part.safetensors", "--resume", "--epochs", "3", "-o", "resumed.safetensors")

    assert resumed["training"]["pruning"]["events"] == straight["training"]["pruning"]["events"]
    a, b = read_tensors("straight.safetensors"), read_tensors("resumed.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = cli(
        "train", "part.safetensors", "--resume", "--epochs", "3", "--sparsity", "0.5", "-o", "x.safetensors"
    )
    one_line_error(other, "was trained with --method and its options", "drop --method")
