"""snipit train: masks held exactly, pruning while training, surgery carrying optimizer state, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from mnist_files import write_learnable_mnist
from safetensors.torch import load_file

from snipit_cli.data.build import DataOptions
from snipit_cli.data.specs import parse_data_spec
from snipit_cli.models.checkpoint import read_metadata, read_tensors
from snipit_cli.models.loading import load_model
from snipit_cli.models.zoo import SmallCNN
from snipit_cli.training.optim import OptimizerOptions, lr_at, slice_state
from snipit_cli.workflows.session import ModelOptions
from snipit_cli.workflows.train import TrainRequest, run_train

DATA = ("--data", "mnist", "--data-root", "mnist-root", "--split", "test", "--holdout", "0.25")
QUICK = ("--batch-size", "32", "--test-split", "none")


@pytest.fixture
def mnist_root(tmp_path: Path) -> Path:
    return write_learnable_mnist(tmp_path / "mnist-root", 200)


def zero_sets(path: Path) -> dict[str, torch.Tensor]:
    return {k: v == 0 for k, v in read_tensors(str(path)).items() if k.endswith("weight") and v.dim() > 1}


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_training_keeps_pruned_weights_exactly_zero(cli, mnist_root, optimizer):
    pruned = cli(
        "prune", "snipit:lenet300-100", "--sparsity", "0.9", "--method", "magnitude", "-o", "p.safetensors"
    )
    assert pruned.exit_code == 0, pruned.stderr
    result = cli(
        "train", "p.safetensors", *DATA, "--epochs", "2", "--optimizer", optimizer,
        "--weight-decay", "0.01", "-o", "t.safetensors", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    before, after = zero_sets(Path("p.safetensors")), zero_sets(Path("t.safetensors"))
    assert before.keys() == after.keys()
    for name in before:
        assert torch.equal(before[name], after[name]), name
    report = json.loads(result.stdout)
    assert report["sparsity"]["achieved"] == pytest.approx(0.9)
    assert report["storage"]["format"] == "dense" and "fc1.weight" in load_file("t.safetensors")
    assert report["training"]["epochs_done"] == 2
    assert report["training"]["history"][-1]["test_top1"] is not None
    # and the kept weights did train
    p, t = read_tensors("p.safetensors"), read_tensors("t.safetensors")
    assert not torch.equal(p["fc1.weight"], t["fc1.weight"])


def test_snip_it_while_training_reaches_the_exact_sparsity_at_the_scheduled_epochs(cli, mnist_root):
    result = cli(
        "train", "snipit:lenet300-100", *DATA, *QUICK, "--epochs", "4", "--prune-method", "snip-it",
        "--sparsity", "0.95", "--steps", "1", "--prune-delay", "1", "--prune-freq", "1",
        "-o", "t.safetensors", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    pruning = report["training"]["pruning"]
    assert pruning["epochs"] == [1, 2, 3]  # S=1: fractions 0.5, 0.725, then the limit
    assert [e["target"] for e in pruning["events"]] == pruning["schedule"] == [0.5, 0.725, 0.95]
    sparsities = [h["weight_sparsity"] for h in report["training"]["history"]]
    assert sparsities[0] == 0.0 and sparsities[1:] == pytest.approx([0.5, 0.725, 0.95], abs=1e-5)
    zeros = sum(int(m.sum()) for m in zero_sets(Path("t.safetensors")).values())
    total = sum(m.numel() for m in zero_sets(Path("t.safetensors")).values())
    assert zeros == round(0.95 * total)
    assert report["pruning"]["method"] == "snip-it" and report["sparsity"]["achieved"] == pytest.approx(
        0.95, abs=1e-6
    )


def test_snap_it_while_training_shrinks_the_model_and_it_reloads(cli, mnist_root):
    result = cli(
        "train", "snipit:small-cnn", "--arch-kwargs", '{"width": 8}', *DATA, *QUICK, "--epochs", "3",
        "--prune-method", "snap-it", "--structured", "--sparsity", "0.5", "--steps", "0",
        "--prune-freq", "1", "-o", "s.safetensors", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    params = [h["params"] for h in report["training"]["history"]]
    dense = sum(p.numel() for p in SmallCNN(width=8).parameters())
    assert report["training"]["pruning"]["epochs"] == [0, 1]  # S=0: 0.2 of the nodes, then 0.5
    assert dense > params[0] > params[1] == params[2]
    assert report["sparsity"]["of"] == "nodes" and report["sparsity"]["achieved"] == pytest.approx(
        0.5, abs=0.01
    )
    slim = load_model("s.safetensors")
    assert sum(p.numel() for p in slim.parameters()) == params[-1]
    state = read_tensors("s.train-state.safetensors")
    tensors = dict(slim.named_parameters())
    for key, value in state.items():  # momentum buffers were cut to the new shapes
        assert value.shape == tensors[key.rsplit("/", 1)[0]].shape


def test_optimizer_state_follows_the_surgery():
    """Momentum set equal to the weights before surgery must equal the slim weights after it."""
    from snipit_cli.criteria import create_criterion
    from snipit_cli.data.calibration import SyntheticData
    from snipit_cli.pruning.structured.options import StructuredOptions
    from snipit_cli.pruning.structured.slim import kept_indices, slim_model

    torch.manual_seed(0)
    model = SmallCNN(width=8)
    state = {n: {"momentum_buffer": p.detach().clone()} for n, p in model.named_parameters()}
    data = SyntheticData("synthetic", 4, 1, 0, size=(1, 28, 28), num_classes=10)
    outcome = slim_model(
        model,
        arch=None,
        criterion=create_criterion("snap", "units"),
        data=data,
        schedule=[0.5],
        size=(1, 28, 28),
        options=StructuredOptions(),
        exclude=[],
        seed=0,
    )
    kept = kept_indices(outcome, (1, 28, 28), [])
    shapes = {n: p.shape for n, p in model.named_parameters()}
    sliced = slice_state(state, kept, shapes)
    changed = 0
    for name, p in model.named_parameters():
        assert torch.equal(sliced[name]["momentum_buffer"], p.detach()), name
        changed += p.shape != state[name]["momentum_buffer"].shape
    assert changed > 0


class StopAfter:
    """Progress that interrupts the run when epoch ``n`` (0-based) starts."""

    def __init__(self, n: int):
        self.n = n

    def start_epoch(self, epoch, n_epochs, n_batches):
        if epoch == self.n:
            raise KeyboardInterrupt

    def advance_batch(self, loss):
        pass

    def end_epoch(self, record):
        pass


def _request(spec: str, output: str, epochs: int = 3, resume: bool = False, every: int = 0) -> TrainRequest:
    return TrainRequest(
        model=ModelOptions(spec),
        data=DataOptions(parse_data_spec("mnist"), Path("mnist-root"), split="test", batch_size=32),
        epochs=epochs,
        optimizer=OptimizerOptions("adamw"),
        test_split=None,
        holdout=0.25,
        output=Path(output),
        resume=resume,
        checkpoint_every=every,
    )


def test_resume_continues_bit_identically(mnist_root):
    straight = run_train(_request("snipit:lenet300-100", "straight.safetensors")).model
    with pytest.raises(KeyboardInterrupt):
        run_train(_request("snipit:lenet300-100", "part.safetensors", every=1), StopAfter(2))
    assert read_metadata(Path("part.safetensors"))["training"]["epochs_done"] == 2
    with pytest.raises(KeyboardInterrupt):  # without --checkpoint-every nothing is left behind
        run_train(_request("snipit:lenet300-100", "gone.safetensors"), StopAfter(2))
    assert not list(Path().glob("gone*")) and not list(Path().glob(".gone*"))
    resumed = run_train(_request("part.safetensors", "resumed.safetensors", resume=True)).model
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_cosine_schedule():
    options = OptimizerOptions("sgd", lr=0.1)
    assert lr_at(options, 0, 100) == pytest.approx(0.1)
    assert lr_at(options, 50, 100) == pytest.approx(0.05)
    assert lr_at(options, 100, 100) == pytest.approx(0.0)
    assert lr_at(OptimizerOptions("sgd", lr=0.1, lr_schedule="constant"), 50, 100) == 0.1


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--data", "synthetic"), "needs a dataset"),
        ((*DATA, "--prune-method", "snip-it", "--prune-delay", "3", "--epochs", "4"), "past --epochs 4"),
        ((*DATA, "--structured"), "add --method"),
        ((*DATA, "--resume"), "--resume needs a checkpoint written by snipit train"),
        ((*DATA, "--optimizer", "adam"), "adam"),
        ((*DATA, "--epochs", "0"), "--epochs must be at least 1"),
    ],
)
def test_bad_train_options_are_one_line_errors(cli, mnist_root, args, fragment):
    result = cli("train", "snipit:lenet300-100", *args, "-o", "x.safetensors")
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert not Path("x.safetensors").exists()


def test_prune_with_finetune_epochs_writes_the_finetuned_model(cli, mnist_root):
    result = cli(
        "prune", "snipit:lenet300-100", "--sparsity", "0.9", *DATA[:6], "--batch-size", "32",
        "--finetune-epochs", "2", "-o", "f.safetensors", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["training"]["epochs_done"] == 2
    assert json.loads(Path("f.report.json").read_text()) == report  # the report file says so too
    meta = read_metadata(Path("f.safetensors"))
    assert meta["method"] == "snip-it" and meta["training"]["epochs_done"] == 2
    zeros = zero_sets(Path("f.safetensors"))
    assert sum(int(m.sum()) for m in zeros.values()) == round(0.9 * sum(m.numel() for m in zeros.values()))


def test_prune_freq_zero_runs_every_step_before_training(cli, mnist_root):
    result = cli(
        "train", "snipit:lenet300-100", *DATA, *QUICK, "--epochs", "1", "--prune-method", "snip-it",
        "--sparsity", "0.9", "--prune-freq", "0", "-o", "t.safetensors", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    pruning = json.loads(result.stdout)["training"]["pruning"]
    assert pruning["epochs"] == [0] * 7 and [e["step"] for e in pruning["events"]] == list(range(7))
    assert json.loads(result.stdout)["training"]["history"][0]["weight_sparsity"] == pytest.approx(
        0.9, abs=1e-6
    )


def test_prune_refuses_a_bad_finetune_lr_before_pruning(cli, mnist_root):
    """The fine-tuning options are checked with the others: no pruned checkpoint is left behind."""
    result = cli(
        "prune", "snipit:lenet300-100", *DATA[:6], "--finetune-epochs", "1", "--finetune-lr", "0",
        "-o", "f.safetensors",
    )  # fmt: skip
    assert result.exit_code == 2 and result.stderr.startswith("error: --lr must be positive, got 0.0")
    assert not Path("f.safetensors").exists() and not Path("f.report.json").exists()


def test_a_finetuned_prune_checkpoint_resumes_with_snipit_train(cli, mnist_root):
    """prune --finetune-epochs writes the training state too, so `train --resume` carries on."""
    first = cli(
        "prune", "snipit:lenet300-100", "--sparsity", "0.9", *DATA[:6], "--batch-size", "32",
        "--finetune-epochs", "1", "-o", "f.safetensors", "--json",
    )  # fmt: skip
    assert first.exit_code == 0, first.stderr
    assert Path("f.train-state.safetensors").is_file()
    again = cli("train", "f.safetensors", "--resume", "--epochs", "2", "-o", "g.safetensors", "--json")
    assert again.exit_code == 0, again.stderr
    training = json.loads(again.stdout)["training"]
    assert training["epochs_done"] == 2 and len(training["history"]) == 2
    assert training["history"][0] == json.loads(first.stdout)["training"]["history"][0]


def test_train_into_a_folder_writes_it_whole_at_every_checkpoint_and_resumes_from_it(cli, mnist_root):
    result = cli(
        "train", "snipit:small-cnn", "--arch-kwargs", '{"width": 8}', *DATA, "--batch-size", "32",
        "--epochs", "2", "--checkpoint-every", "1", "--prune-method", "snap-it", "--structured",
        "--sparsity", "0.5", "--steps", "0", "--prune-freq", "1", "-o", "t/", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    folder = Path("t")
    assert report["folder"] == "t" and report["file"]["path"] == "t/model.safetensors"
    assert report["state_file"] == "t/model.train-state.safetensors"
    assert {p.name for p in folder.iterdir()} == {
        "config.json", "model.safetensors", "model.train-state.safetensors", "README.md",
    }  # fmt: skip
    assert sorted(p.name for p in Path.cwd().iterdir() if p.name.startswith(".")) == []  # no temps
    slim = load_model(folder)
    assert sum(p.numel() for p in slim.parameters()) == report["params"]["total"]
    card = (folder / "README.md").read_text()
    last = report["training"]["history"][-1]
    assert f"- **Accuracy:** top-1 {last['test_top1']:.4f}" in card
    assert f"- **Params (M):** {report['params']['total'] / 1e6:.3f}" in card
    assert json.loads((folder / "config.json").read_text())["snipit"]["structured"] is True

    resumed = cli("train", "t", "--resume", "--epochs", "3", "-o", "t2/", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["training"]["epochs_done"] == 3


def test_prune_finetune_into_a_folder_puts_the_accuracy_in_the_card(cli, mnist_both):
    result = cli(
        "prune", "snipit:lenet300-100", "--sparsity", "0.9", "--data", "mnist", "--data-root", mnist_both,
        "--batch-size", "32", "--finetune-epochs", "1", "-o", "f/", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    last = report["training"]["history"][-1]
    assert report["training"]["epochs_done"] == 1 and last["test_top1"] is not None
    assert json.loads(Path("f/report.json").read_text()) == report
    card = Path("f/README.md").read_text()
    assert "- **Pruning method:** snip-it\n" in card
    accuracy = f"top-1 {last['test_top1']:.4f}, top-5 {last['test_top5']:.4f} on mnist (test)"
    assert f"- **Accuracy:** {accuracy}" in card
    assert read_metadata(Path("f/model.safetensors"))["training"]["epochs_done"] == 1
    assert sorted(p.name for p in Path("f").iterdir()) == [
        "README.md", "config.json", "model.safetensors", "model.train-state.safetensors", "report.json",
    ]  # fmt: skip
