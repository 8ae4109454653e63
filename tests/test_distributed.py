"""Data-parallel scoring: ``torchrun`` with 2 gloo processes on loopback against one process.

The launches are real: torch's own launcher (``python -m torch.distributed.run``) starts two
``snipit`` processes that rendezvous on 127.0.0.1 and sum their gradients over gloo. The masks
must equal the single-process masks up to ties broken by float summation order; the stated
tolerance is 99.99% agreement for weights and exact agreement for the structured unit choice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch
from mnist_files import write_learnable_mnist
from PIL import Image

from snipit_cli import load_model
from snipit_cli.cli.app import main
from snipit_cli.errors import DataError, NumericsError
from snipit_cli.models.checkpoint import read_tensors
from snipit_cli.parallel import MESSAGE_BYTES, decode_failure, encode_failure

SNIPIT = Path(sysconfig.get_path("scripts")) / "snipit"
MASK_AGREEMENT = 0.9999  # weights whose kept/pruned state may differ only through summation order
MNIST = ("--data", "mnist", "--data-root", "data", "--split", "test")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK"}}
    return {**env, "GLOO_SOCKET_IFNAME": "lo", "NO_COLOR": "1", **extra}


def torchrun(cwd: Path, *args: str, script: bool = False) -> subprocess.CompletedProcess:
    """Two processes on one machine through torch's launcher, rendezvous on loopback."""
    target = [str(SNIPIT)] if script else ["-m", "snipit_cli"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return subprocess.run(
        [*launcher, *target, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300
    )


def single(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snipit_cli", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    write_learnable_mnist(tmp_path / "data", 96)
    return tmp_path


def _masks(path: Path) -> dict[str, torch.Tensor]:
    return {k: t != 0 for k, t in read_tensors(path).items() if k.endswith("weight") and t.dim() > 1}


def _outputs(path: Path, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return load_model(path).eval()(x)


def test_two_gloo_ranks_prune_like_one_process(mnist_dir: Path) -> None:
    args = (
        "prune",
        "snipit:lenet300-100",
        *MNIST,
        "--sparsity",
        "0.95",
        "--batches",
        "4",
        "--batch-size",
        "16",
    )
    one = single(mnist_dir, *args, "-o", "one.safetensors", "--json")
    assert one.returncode == 0, one.stderr
    before = set(os.listdir(mnist_dir))

    two = torchrun(mnist_dir, *args, "-o", "two.safetensors", "--json")

    assert two.returncode == 0, two.stderr
    assert set(os.listdir(mnist_dir)) - before == {
        "two.safetensors",
        "two.report.json",
    }  # rank 0 alone writes
    report = json.loads(two.stdout)  # one JSON document: rank 1 printed nothing
    assert [line for line in two.stderr.splitlines() if line.startswith("step 7/7")] == [
        "step 7/7: sparsity 0.9500, kept 13,310 of 266,200"
    ]  # rank 0's progress only
    calibration = report["pruning"]["calibration"]
    assert calibration["world_size"] == 2 and calibration["backend"] == "gloo"
    assert calibration["samples_per_rank"] == [7 * 2 * 16, 7 * 2 * 16]
    assert (
        sum(calibration["samples_per_rank"])
        == json.loads(one.stdout)["pruning"]["calibration"]["samples_read"]
    )
    assert json.loads(one.stdout)["pruning"]["calibration"]["samples_per_rank"] == [7 * 4 * 16]

    masks_one, masks_two = _masks(mnist_dir / "one.safetensors"), _masks(mnist_dir / "two.safetensors")
    total = sum(m.numel() for m in masks_one.values())
    same = sum(int((masks_one[k] == masks_two[k]).sum()) for k in masks_one)
    assert same / total >= MASK_AGREEMENT
    assert sum(int(m.sum()) for m in masks_two.values()) == sum(int(m.sum()) for m in masks_one.values())
    x = torch.rand(8, 1, 28, 28)
    torch.testing.assert_close(
        _outputs(mnist_dir / "two.safetensors", x), _outputs(mnist_dir / "one.safetensors", x)
    )


def test_two_gloo_ranks_remove_the_same_channels_through_the_snipit_script(mnist_dir: Path) -> None:
    args = (
        "prune", "snipit:small-cnn", "--arch-kwargs", '{"width": 4}', *MNIST, "--structured",
        "--sparsity", "0.5", "--batches", "2", "--batch-size", "16",
    )  # fmt: skip
    one = single(mnist_dir, *args, "-o", "one.safetensors", "--json")
    assert one.returncode == 0, one.stderr

    two = torchrun(mnist_dir, *args, "-o", "two.safetensors", "--json", script=True)

    assert two.returncode == 0, two.stderr
    a, b = read_tensors(mnist_dir / "one.safetensors"), read_tensors(mnist_dir / "two.safetensors")
    assert {k: t.shape for k, t in a.items()} == {k: t.shape for k, t in b.items()}
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same units removed: the same slim tensors
    assert json.loads(two.stdout)["nodes"] == json.loads(one.stdout)["nodes"]
    # BatchNorm recalibrated on the same 2 batches, one per rank, the averages combined: equal above
    assert json.loads(two.stdout)["pruning"]["recalibration"]["batches_read"] == [1, 1]
    assert json.loads(one.stdout)["pruning"]["recalibration"]["batches_read"] == [2]
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(_outputs(mnist_dir / "two.safetensors", x), _outputs(mnist_dir / "one.safetensors", x))


def test_an_error_on_one_rank_stops_both_with_its_message_once(tmp_path: Path) -> None:
    for c in ("a", "b"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    (tmp_path / "imgs" / "b" / "3.png").write_bytes(b"not a png")  # read by one rank only
    before = sorted(p.name for p in tmp_path.iterdir())

    run = torchrun(
        tmp_path, "prune", "snipit:small-cnn", "--arch-kwargs", '{"width": 4, "in_chans": 3}',
        "--num-classes", "2", "--input-size", "3,8,8", "--data", "imgs", "--batches", "2",
        "--batch-size", "4", "-o", "out.safetensors",
    )  # fmt: skip

    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot decode image imgs/b/3.png" in errors[0], run.stderr
    # The failing rank exits with snipit's code; its peer exits too (with the same code, or by
    # torchrun's SIGTERM when the launcher sees the first exit first), so the launch ends, no hang.
    assert "exitcode  : 2" in run.stderr
    assert run.stdout == "" and sorted(p.name for p in tmp_path.iterdir()) == before


# ------------------------------------------------------------- the agreement itself, 2 gloo processes


def _agree_worker(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    from snipit_cli.errors import DataError
    from snipit_cli.parallel import ProcessGroupSync
    from snipit_cli.sync import PeerError

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        sync = ProcessGroupSync(rank, 2, "gloo", torch.device("cpu"))
        summed = sync.sum([torch.full((3,), rank + 1.0), torch.tensor([rank], dtype=torch.int64)])
        shared = sync.broadcast([torch.tensor([rank == 0, rank == 1])])
        outcome = [summed[0].tolist(), summed[1].tolist(), shared[0].tolist(), sync.gather_int(10 + rank)]
        sync.agree(None)  # nobody failed: every rank goes on
        try:
            sync.agree(DataError("shard of rank 1 is broken") if rank == 1 else None)
            outcome.append("went on")
        except PeerError as exc:
            outcome.append(("peer", str(exc), exc.exit_code))
        except DataError as exc:
            outcome.append(("own", str(exc)))
        results.put((rank, outcome))
    finally:
        dist.destroy_process_group()


def test_ranks_sum_share_and_agree_on_errors() -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_agree_worker, args=(r, port, results)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)

    for rank in (0, 1):
        summed, ints, shared, gathered, agreed = got[rank]
        assert summed == [3.0, 3.0, 3.0] and ints == [1] and shared == [True, False] and gathered == [10, 11]
    assert got[1][4] == ("own", "shard of rank 1 is broken")
    assert got[0][4] == ("peer", "rank 1: shard of rank 1 is broken", 2)


# ------------------------------------------------------------- launch checks, no process group


def _launched_as(monkeypatch, rank: int, world_size: int) -> None:
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setenv("WORLD_SIZE", str(world_size))


def _main(monkeypatch, args: list[str]) -> int:
    monkeypatch.setattr(sys, "argv", ["snipit", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code


@pytest.mark.parametrize("rank", [0, 1])
def test_an_option_error_is_printed_by_rank_0_only(monkeypatch, tmp_path, capsys, rank) -> None:
    monkeypatch.chdir(tmp_path)
    _launched_as(monkeypatch, rank, 2)

    code = _main(monkeypatch, ["prune", "snipit:lenet300-100", "--finetune-epochs", "1"])

    err = capsys.readouterr().err
    assert code == 2
    if rank == 0:
        assert err.startswith("error: --finetune-epochs runs in one process") and err.count("\n") == 1
    else:
        assert err == ""
    assert list(tmp_path.iterdir()) == []


def test_an_error_every_rank_meets_is_printed_once(tmp_path: Path) -> None:
    run = torchrun(tmp_path, "prune", "snipit:lenet300-100", "--batches", "1", "-o", "out.safetensors")

    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode != 0 and run.stdout == "" and list(tmp_path.iterdir()) == []
    assert errors == [
        "error: 1 calibration batches cannot be shared by 2 processes; pass --batches 2 or more (or launch "
        "fewer processes)"
    ]


def test_train_under_torchrun_is_refused_with_what_to_do(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    _launched_as(monkeypatch, 0, 2)

    code = _main(monkeypatch, ["train", "snipit:lenet300-100", "--data", "mnist", "--data-root", "x"])

    assert code == 2 and "launch it without torchrun" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error, expected",
    [
        (None, None),
        (DataError("shard broken"), (2, "shard broken")),
        (RuntimeError("boom"), (1, "internal error: RuntimeError: boom")),
        (DataError(""), (2, "")),  # an empty message still encodes
        (NumericsError("é" * 5000), (2, ("é" * 2048))),  # cut at 4 KiB, on a character boundary here
    ],
)
def test_a_rank_outcome_travels_as_fixed_size_bytes(error, expected) -> None:
    record = encode_failure(error)

    assert record.dtype == torch.uint8 and record.numel() == MESSAGE_BYTES + 8
    assert decode_failure(record) == expected
