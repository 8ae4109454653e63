"""The bad-input catalog: every case ends in one clear line, the right exit code, and the
working folder exactly as it was (nothing written, nothing overwritten, no temp file).

Each case builds its inputs in the test's folder, runs one command, and checks: exit code,
a fragment of the message, one ``error:`` line and no traceback on stderr, and the folder's
listing (and file bytes) unchanged. Cases that are not errors (a small dataset, images of
another size) check that the run says what it did.
"""

from __future__ import annotations

import errno
import json
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from console import listing, run_snipit
from mnist_files import write_learnable_mnist
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tiny_models import TinyCNN

ARCH = "tiny_models:TinyCNN"
FAST = ("--batches", "1", "--batch-size", "4", "--steps", "1")


@dataclass
class Case:
    """One catalog entry: files to create, the command, what must come out."""

    id: str
    args: tuple[str, ...]
    fragment: str
    code: int = 2
    setup: Callable[[Path], None] = lambda _: None
    creates: tuple[str, ...] = field(default_factory=tuple)  # files a successful case writes


# ---------------------------------------------------------------- inputs


def tiny_state_dict(path: Path, **tweaks: float) -> None:
    torch.manual_seed(0)
    state = TinyCNN().state_dict()
    for key, value in tweaks.items():
        state[key.replace("__", ".")].fill_(value)
    torch.save(state, path)


def tiny_checkpoint(folder: Path) -> None:
    """A real snipit checkpoint (pruned.safetensors), written through the library."""
    from snipit_cli.data.build import DataOptions
    from snipit_cli.data.specs import parse_data_spec
    from snipit_cli.workflows.prune import ModelOptions, PruneRequest, run_prune

    tiny_state_dict(folder / "tiny.pt")
    run_prune(
        PruneRequest(
            model=ModelOptions(str(folder / "tiny.pt"), arch=ARCH, input_size=(3, 8, 8)),
            data=DataOptions(parse_data_spec("synthetic"), folder, batch_size=4, batches=1),
            sparsity=0.5,
            steps=1,
            output=folder / "pruned.safetensors",
            storage="sparse",  # the lying_sparse cases edit its bitmask encoding
        )
    )
    (folder / "pruned.report.json").unlink()


def lying_sparse(edit: Callable[[dict[str, torch.Tensor], dict], None]) -> Callable[[Path], None]:
    """A sparse checkpoint (lie.safetensors) whose encoded features.3.weight was edited to lie."""

    def setup(folder: Path) -> None:
        tiny_checkpoint(folder)
        path = folder / "pruned.safetensors"
        tensors = load_file(path)
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        document = json.loads(metadata["snipit"])
        edit(tensors, document)
        metadata["snipit"] = json.dumps(document)
        save_file(tensors, str(folder / "lie.safetensors"), metadata=metadata)
        path.unlink()

    return setup


def longer_mask(tensors: dict[str, torch.Tensor], _doc: dict) -> None:
    key = "features.3.weight.__bitmask"
    tensors[key] = torch.cat([tensors[key], torch.zeros(1, dtype=torch.uint8)])


def fewer_values(tensors: dict[str, torch.Tensor], _doc: dict) -> None:
    tensors["features.3.weight.__values"] = tensors["features.3.weight.__values"][:-1]


def unknown_encoding(_tensors: dict[str, torch.Tensor], doc: dict) -> None:
    doc["storage"]["encoding"] = "zstd-v7"


def malicious_pickle(folder: Path) -> None:
    class Exploit:
        def __reduce__(self):
            return (Path.touch, (folder / "pwned",))

    torch.save({"state_dict": Exploit()}, folder / "evil.pt")


def raw_safetensors(header: bytes, payload: bytes = b"", length: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + payload


def lying_header(folder: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000, 1000], "data_offsets": [0, 4_000_000]}})
    (folder / "lying.safetensors").write_bytes(raw_safetensors(header.encode(), b"\0" * 16))


def wrong_dtype(folder: Path) -> None:
    header = json.dumps({"w": {"dtype": "Q99", "shape": [2], "data_offsets": [0, 8]}})
    (folder / "dtype.safetensors").write_bytes(raw_safetensors(header.encode(), b"\0" * 8))


def huge_header(folder: Path) -> None:
    (folder / "huge.safetensors").write_bytes(raw_safetensors(b"{}", length=2**62))


def not_json_header(folder: Path) -> None:
    (folder / "garbage.safetensors").write_bytes(raw_safetensors(b"{not json at all"))


def truncated(folder: Path) -> None:
    tiny_checkpoint(folder)
    data = (folder / "pruned.safetensors").read_bytes()
    (folder / "pruned.safetensors").unlink()
    (folder / "cut.safetensors").write_bytes(data[: len(data) // 2])


def tensors_only(folder: Path) -> None:
    save_file({"w": torch.zeros(2, 2)}, str(folder / "plain.safetensors"))


def existing_output(folder: Path) -> None:
    tiny_state_dict(folder / "tiny.pt")
    (folder / "out.safetensors").write_bytes(b"precious")


def mnist(n: int) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        write_learnable_mnist(folder / "mnist", n)

    return setup


def image_folder_with_corrupt_file(folder: Path) -> None:
    for cls in ("a", "b"):
        (folder / "imgs" / cls).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "imgs" / cls / "ok.png")
    (folder / "imgs" / "b" / "broken.png").write_bytes(b"\x89PNG not really")


def odd_images(folder: Path) -> None:
    for cls in ("a", "b", "c"):
        (folder / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((12, 10), 40 * i, np.uint8)).save(folder / "imgs" / cls / f"{i}.png")


def malicious_cifar(folder: Path) -> None:
    class Exploit:
        def __reduce__(self):
            return (Path.touch, (folder / "pwned",))

    (folder / "cifar-10-batches-py").mkdir()
    batch = {"data": Exploit(), "labels": [0]}
    (folder / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))


def checkpoint_and_mnist(folder: Path) -> None:
    tiny_checkpoint(folder)
    write_learnable_mnist(folder / "mnist", 20)


def with_tiny(extra: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        tiny_state_dict(folder / "tiny.pt")
        extra(folder)

    return setup


TINY = ("prune", "tiny.pt", "--arch", ARCH, "--input-size", "3,8,8", *FAST)

CATALOG = [
    # ---- untrusted files
    Case("pickle-needs-flag", ("prune", "evil.pt", "--arch", ARCH), "--trust-pickle", setup=malicious_pickle),
    Case("safetensors-truncated", ("prune", "cut.safetensors"), "cannot read", setup=truncated),
    Case("safetensors-lying-sizes", ("prune", "lying.safetensors"), "cannot read", setup=lying_header),
    Case("safetensors-wrong-dtype", ("prune", "dtype.safetensors"), "cannot read", setup=wrong_dtype),
    Case("safetensors-huge-header", ("prune", "huge.safetensors"), "cannot read", setup=huge_header),
    Case("safetensors-not-json", ("report", "garbage.safetensors"), "cannot read", setup=not_json_header),
    Case("safetensors-no-metadata", ("prune", "plain.safetensors"), "--arch", setup=tensors_only),
    Case(
        "sparse-mask-length-lie",
        ("report", "lie.safetensors"),
        "lie.safetensors is corrupt: tensor features.3.weight: bit mask has 37 uint8 elements, shape "
        "[8, 4, 3, 3] needs 36 uint8",
        setup=lying_sparse(longer_mask),
    ),
    Case(
        "sparse-popcount-lie",
        ("prune", "lie.safetensors", *FAST),
        "is corrupt: tensor features.3.weight: bit mask marks",
        setup=lying_sparse(fewer_values),
    ),
    Case(
        "sparse-unknown-encoding",
        ("convert", "lie.safetensors", "out.safetensors", "--storage", "dense"),
        "is corrupt: unknown storage encoding 'zstd-v7'",
        setup=lying_sparse(unknown_encoding),
    ),
    Case(
        "cifar-pickle-with-code",
        (*TINY, "--data", "cifar10", "--split", "test", "--data-root", "."),
        "refusing to load",
        setup=with_tiny(malicious_cifar),
    ),  # fmt: skip
    # ---- outputs
    Case("output-exists", (*TINY, "-o", "out.safetensors"), "--force", setup=existing_output),
    Case(
        "output-is-input",
        ("prune", "pruned.safetensors", "--sparsity", "0.9", *FAST, "-o", "pruned.safetensors", "--force"),
        "refusing to write over the input",
        setup=tiny_checkpoint,
    ),  # fmt: skip
    Case(
        "convert-output-is-input",
        ("convert", "pruned.safetensors", "pruned.safetensors", "--storage", "dense", "--force"),
        "refusing to write over the input",
        setup=tiny_checkpoint,
    ),
    Case(
        "convert-output-exists",
        ("convert", "pruned.safetensors", "out.safetensors", "--storage", "dense"),
        "--force",
        setup=lambda f: (tiny_checkpoint(f), (f / "out.safetensors").write_bytes(b"precious")),
    ),
    Case(
        "convert-a-state-dict",
        ("convert", "tiny.pt", "tiny.safetensors", "--storage", "sparse"),
        "convert reads .safetensors files",
        setup=with_tiny(lambda _: None),
    ),
    Case("convert-storage-missing", ("convert", "a.safetensors", "b.safetensors"), "--storage"),
    Case(
        "output-folder-missing",
        (*TINY, "-o", "nowhere/out.safetensors"),
        "does not exist",
        setup=with_tiny(lambda _: None),
    ),  # fmt: skip
    Case(
        "output-wrong-suffix",
        (*TINY, "-o", "out.pt"),
        "must end in .safetensors",
        setup=with_tiny(lambda _: None),
    ),
    Case(
        "report-is-output",
        (*TINY, "-o", "a.safetensors", "--report", "a.safetensors"),
        "different files",
        setup=with_tiny(lambda _: None),
    ),  # fmt: skip
    Case(
        "train-output-is-input",
        (
            "train",
            "pruned.safetensors",
            "--data",
            "mnist",
            "--data-root",
            "mnist",
            "--split",
            "test",
            "-o",
            "pruned.safetensors",
            "--force",
        ),
        "refusing to write over the input",
        setup=checkpoint_and_mnist,
    ),  # fmt: skip
    # ---- numerics
    Case(
        "nan-weights",
        (*TINY,),
        "loss is nan on calibration batch 1",
        setup=lambda f: tiny_state_dict(f / "tiny.pt", head__weight=float("nan")),
    ),  # fmt: skip
    Case(
        "no-autograd",
        ("prune", "tiny.pt", "--arch", "tiny_models:DetachedCNN", "--input-size", "3,8,8", *FAST),
        "does not depend on any prunable weight",
        setup=with_tiny(lambda _: None),
    ),  # fmt: skip
    Case(
        "all-zero-gradients",
        ("prune", "tiny.pt", "--arch", "tiny_models:ZeroOutputCNN", "--input-size", "3,8,8", *FAST),
        "every snip-it score is zero",
        setup=with_tiny(lambda _: None),
    ),  # fmt: skip
    Case(
        "collapse-guard-cannot-hold",
        (*TINY, "--sparsity", "0.999"),
        "--allow-collapse",
        setup=with_tiny(lambda _: None),
    ),  # fmt: skip
    Case(
        "training-diverges",
        (
            "train",
            "snipit:lenet300-100",
            "--data",
            "mnist",
            "--data-root",
            "mnist",
            "--split",
            "test",
            "--holdout",
            "0.5",
            "--lr",
            "1e30",
            "--epochs",
            "1",
            "--batch-size",
            "16",
        ),
        "lower --lr",
        setup=mnist(200),
    ),  # fmt: skip
    # ---- data
    Case(
        "dataset-missing",
        (*TINY, "--data", "mnist", "--data-root", "empty"),
        "no mnist train split",
        setup=with_tiny(lambda f: (f / "empty").mkdir()),
    ),  # fmt: skip
    Case(
        "labels-outside-classes",
        (*TINY, "--data", "mnist", "--data-root", "mnist", "--split", "test"),
        "outside the model's 5 classes",
        setup=with_tiny(mnist(20)),
    ),  # fmt: skip
    Case(
        "corrupt-image",
        (*TINY, "--data", "imgs"),
        "broken.png",
        setup=with_tiny(image_folder_with_corrupt_file),
    ),
    Case(
        "unknown-data-spec",
        (*TINY, "--data", "imagenet-21k"),
        "unknown --data",
        setup=with_tiny(lambda _: None),
    ),
    Case("train-on-synthetic", ("train", "snipit:lenet300-100"), "needs a dataset"),
    # ---- models
    Case("unknown-timm", ("prune", "timm:resnet181"), "did you mean"),
    Case("unknown-torchvision", ("prune", "torchvision:resnet188"), "did you mean"),
    Case("unknown-snipit-model", ("prune", "snipit:lenet5"), "unknown snipit model"),
    Case(
        "state-dict-mismatch",
        ("prune", "tiny.pt", "--arch", "tiny_models:TinyMLP"),
        "does not fit the architecture",
        setup=with_tiny(lambda _: None),
    ),  # fmt: skip
    Case(
        "state-dict-shapes",
        ("prune", "tiny.pt", "--arch", ARCH, "--arch-kwargs", '{"num_classes": 10}'),
        "shape mismatch (file vs model): head.weight (5, 8) vs (10, 8)",
        setup=with_tiny(lambda _: None),
    ),
    Case(
        "nothing-prunable",
        (*TINY, "--exclude", "*"),
        "no prunable Conv/Linear layer",
        setup=with_tiny(lambda _: None),
    ),
    Case("no-such-file", ("prune", "missing.pt"), "no such file"),
    Case("folder-as-model", ("prune", "."), "is a folder"),
    # ---- options
    Case(
        "sparsity-out-of-range",
        (*TINY, "--sparsity", "1.5"),
        "strictly between 0 and 1",
        setup=with_tiny(lambda _: None),
    ),  # fmt: skip
    Case(
        "sparsity-not-a-number",
        (*TINY, "--sparsity", "abc"),
        "Invalid value for '--sparsity'",
        setup=with_tiny(lambda _: None),
    ),
    Case(
        "bad-input-size",
        ("prune", "tiny.pt", "--arch", ARCH, "--input-size", "3,x"),
        "--input-size",
        setup=with_tiny(lambda _: None),
    ),  # fmt: skip
    Case(
        "bad-arch-kwargs",
        ("prune", "tiny.pt", "--arch", ARCH, "--arch-kwargs", "{bad"),
        "--arch-kwargs",
        setup=with_tiny(lambda _: None),
    ),  # fmt: skip
    Case("no-gpu", (*TINY, "--device", "cuda"), "no CUDA GPU", setup=with_tiny(lambda _: None)),
    Case("unknown-method", (*TINY, "--method", "obd"), "unknown method", setup=with_tiny(lambda _: None)),
    Case(
        "resume-not-a-train-checkpoint",
        (
            "train",
            "pruned.safetensors",
            "--resume",
            "--data",
            "mnist",
            "--data-root",
            "mnist",
            "--split",
            "test",
        ),
        "--resume needs a checkpoint written by snipit train",
        setup=checkpoint_and_mnist,
    ),  # fmt: skip
]


@pytest.mark.parametrize("case", CATALOG, ids=[c.id for c in CATALOG])
def test_bad_input(tmp_path, monkeypatch, capsys, case: Case):
    case.setup(tmp_path)
    before = listing(tmp_path)
    code, stdout, stderr = run_snipit(case.args, monkeypatch, capsys)
    assert code == case.code, stderr
    lines = stderr.strip().splitlines()
    # one error line, last; before it at most the log lines of pruning steps already finished
    assert lines[-1].startswith("error: ") and all(line.startswith("step ") for line in lines[:-1]), stderr
    assert case.fragment in lines[-1]
    assert "Traceback" not in stderr and stdout == ""
    assert listing(tmp_path) == before
    assert not (tmp_path / "pwned").exists()


def test_catalog_is_big_enough():
    assert len(CATALOG) >= 25


def test_a_failed_write_keeps_the_old_file(cli, tmp_path, monkeypatch):
    """A full disk (simulated: the writer fails with ENOSPC) leaves the file being replaced intact."""
    existing_output(tmp_path)
    before = listing(tmp_path)

    def full_disk(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "out.safetensors")

    monkeypatch.setattr("snipit_cli.models.checkpoint.save_file", full_disk)
    result = cli(*TINY, "-o", "out.safetensors", "--force")
    assert result.exit_code == 2
    *steps, last = result.stderr.strip().splitlines()
    assert "No space left on device" in last and all(line.startswith("step ") for line in steps)
    assert listing(tmp_path) == before


def test_a_small_dataset_is_used_whole_and_said(cli, tmp_path):
    write_learnable_mnist(tmp_path / "mnist", 6)
    result = cli(
        "prune",
        "snipit:lenet300-100",
        "--data",
        "mnist",
        "--data-root",
        "mnist",
        "--split",
        "test",
        "--batches",
        "5",
        "--batch-size",
        "4",
        "-o",
        "o.safetensors",
    )
    assert result.exit_code == 0, result.stderr
    assert "has only 6 samples" in result.stderr and "using all 6 (2 batches)" in result.stderr
    assert (tmp_path / "o.safetensors").exists()


def test_images_of_another_size_and_channels_are_adapted(cli, tmp_path):
    odd_images(tmp_path)  # 12x10 grey images for a 3x8x8 RGB model
    tiny_state_dict(tmp_path / "tiny.pt")
    result = cli(
        "prune", "tiny.pt", "--arch", ARCH, "--input-size", "3,8,8", *FAST, "--data", "imgs", "--json"
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sparsity"]["achieved"] == pytest.approx(0.9, abs=0.01)


def test_collapse_guard_keeps_every_layer_and_says_so(cli, tmp_path):
    """Magnitude at 0.99 on LeNet-300-100 at init empties fc1 (its init is the smallest): the guard
    keeps 0.1% of it and names it; --allow-collapse lets it go."""
    guarded = cli("prune", "snipit:lenet300-100", "--method", "magnitude", "--sparsity", "0.995", "--json")
    assert guarded.exit_code == 0, guarded.stderr
    report = json.loads(guarded.stdout)
    assert report["pruning"]["collapse"]["held"] == ["fc1"] and "--allow-collapse" in guarded.stderr
    fc1 = next(r for r in report["layers"] if r["name"] == "fc1")
    assert fc1["nonzero"] == 236  # ceil(0.001 * 235,200)
    free = cli(
        "prune",
        "snipit:lenet300-100",
        "--method",
        "magnitude",
        "--sparsity",
        "0.995",
        "--allow-collapse",
        "--json",
        "-o",
        "free.safetensors",
    )
    fc1 = next(r for r in json.loads(free.stdout)["layers"] if r["name"] == "fc1")
    assert fc1["nonzero"] == 0
    for doc in (report, json.loads(free.stdout)):
        assert doc["params"]["prunable_nonzero"] == round(0.005 * doc["params"]["prunable"])


def test_internal_failure_is_exit_1_with_one_line_and_debug_shows_the_traceback(cli, tmp_path, monkeypatch):
    tiny_state_dict(tmp_path / "tiny.pt")

    def boom(*_args, **_kwargs):
        raise RuntimeError("something no one expected")

    monkeypatch.setattr("snipit_cli.workflows.documents.layer_rows", boom)
    result = cli(*TINY)
    assert result.exit_code == 1
    *steps, last = result.stderr.strip().splitlines()
    assert last.startswith("internal error: RuntimeError: something no one expected")
    assert all(line.startswith("step ") for line in steps)
    with pytest.raises(RuntimeError):
        cli(*TINY, "--debug")
