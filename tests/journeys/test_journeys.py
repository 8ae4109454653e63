# ruff: noqa: E501  (JOURNEYS is keyed by the commands exactly as users are shown them)
"""The user's path: every command the README and the ``--help`` epilogs show, run as written
through the installed ``snipit`` script (and torchrun) in a subprocess, on real-format data.

Commands are shrunk only by appending options (input size, batches, epochs, repeats), which
override the ones written, and by pointing ``/data/...`` at the workspace. A command shown to
users that has no entry in ``JOURNEYS`` fails :func:`test_every_shown_command_has_a_journey`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
from journeys.commands import all_commands, readme_python_blocks
from journeys.workspace import write_datasets, write_user_files

BIN = Path(sysconfig.get_path("scripts"))
PRUNE = "--batches 1 --batch-size 4 --steps 1"
R18 = "--num-classes 10 --input-size 3,16,16"
LATENCY = "--repeats 2 --warmup 0 --latency-batch 1"
L5 = "--epochs 2 --prune-delay 1 --prune-freq 0 --steps 1 --prune-batches 1"
TORCHRUN_2 = ("--nproc-per-node 4", "--standalone --nproc-per-node 2")


@dataclass(frozen=True)
class Journey:
    extra: str = ""  # appended options
    needs: tuple[str, ...] = ()  # checkpoints in work/ it reads (see PRODUCTS)
    replace: tuple[tuple[str, str], ...] = ()  # text replaced, e.g. /data/val -> the workspace


#: Checkpoints the journeys read, made the way a user makes them: command, then what it needs.
PRODUCTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pruned.safetensors": (f"snipit prune timm:resnet18 {R18} --method magnitude -o pruned.safetensors", ()),
    "a.safetensors": (
        f"snipit prune timm:resnet18 {R18} --method magnitude --sparsity 0.5 -o a.safetensors",
        (),
    ),
    "b.safetensors": (
        f"snipit prune timm:resnet18 {R18} --method random --sparsity 0.8 -o b.safetensors",
        (),
    ),
    "slim.safetensors": (
        f"snipit prune timm:resnet18 {R18} --structured --method l1 --sparsity 0.5 -o slim.safetensors",
        (),
    ),
    "pruned-dense.safetensors": (
        "snipit convert pruned.safetensors pruned-dense.safetensors --storage dense",
        ("pruned.safetensors",),
    ),
    "small.safetensors": (
        "snipit train snipit:small-cnn --arch-kwargs '{\"width\": 4}' --data mnist --epochs 1 -o small.safetensors",
        (),
    ),
    "finetuned.safetensors": (
        "snipit train pruned.safetensors --data cifar10 --epochs 1 -o finetuned.safetensors",
        ("pruned.safetensors",),
    ),
    "l5.safetensors": (
        "snipit train snipit:lenet5-caffe --data mnist --data-root ../shared/data/mnist --split test "
        "--holdout 0.2 --epochs 1 --method snip-it --sparsity 0.98 --prune-freq 0 --steps 1 "
        "-o l5.safetensors",
        (),
    ),
    "resnet18-pruned.safetensors": (
        f"snipit prune timm:resnet18 --num-classes 10 --input-size 3,32,32 {PRUNE} -o resnet18-pruned.safetensors",
        (),
    ),
    "resnet18-pruned": (  # a hub-style folder
        f"snipit prune timm:resnet18 --num-classes 10 --input-size 3,32,32 {PRUNE} -o resnet18-pruned/",
        (),
    ),
}

# fmt: off
JOURNEYS: dict[str, Journey] = {
    # README: set-up (the main job)
    "snipit prune timm:resnet18 --num-classes 10 --input-size 3,32,32 --sparsity 0.9 -o resnet18-pruned.safetensors":
        Journey(PRUNE),
    # README: structured
    "snipit prune timm:resnet50 --structured --sparsity 0.5 -o slim.safetensors":
        Journey(f"--input-size 3,32,32 {PRUNE}"),
    "snipit prune timm:resnet18 --structured --target macs --sparsity 0.6 --input-size 3,32,32":
        Journey(f"--input-size 3,16,16 {PRUNE}"),
    "snipit prune model.pt --arch mynet:Net --input-size 3,32,32 --structured --method l1 --sparsity 0.3":
        Journey(),
    # README: hub-style folders
    "snipit prune timm:resnet18 --num-classes 10 --input-size 3,32,32 --sparsity 0.9 -o resnet18-pruned/":
        Journey(PRUNE),
    "snipit report resnet18-pruned --json | jq .sparsity": Journey(needs=("resnet18-pruned",)),
    # README: sparse storage
    "snipit convert pruned.safetensors pruned-dense.safetensors --storage dense":
        Journey(needs=("pruned.safetensors",)),
    "snipit convert pruned-dense.safetensors pruned.safetensors --storage sparse --force":
        Journey(needs=("pruned.safetensors", "pruned-dense.safetensors")),
    # README: config files
    "snipit prune --config sample_configs/resnet18-snipit-quick.toml":
        Journey(f"--input-size 3,16,16 {PRUNE}"),
    "snipit prune --config sample_configs/mobilenetv3-snip-oneshot.toml --sparsity 0.7":
        Journey("--input-size 3,32,32 --batches 1 --batch-size 2"),
    # README: torchrun
    "torchrun --nproc-per-node 4 -m snipit_cli prune timm:resnet50 --data imagefolder:/data/val --batches 64 "
    "-o r50.safetensors":
        Journey("--input-size 3,32,32 --batches 2 --batch-size 2 --steps 1", replace=(TORCHRUN_2,)),
    "torchrun --nproc-per-node 4 $(which snipit) prune timm:resnet50 --data imagefolder:/data/val --batches 64":
        Journey("--input-size 3,32,32 --batches 2 --batch-size 2 --steps 1", replace=(TORCHRUN_2,)),
    "torchrun --standalone --nproc-per-node 2 -m snipit_cli prune snipit:lenet300-100 --device cpu --batches 8":
        Journey("--batch-size 4 --steps 1"),
    # README and epilog: export
    "snipit export slim.safetensors -o slim.onnx": Journey("--repeats 2 --warmup 0", needs=("slim.safetensors",)),
    "snipit export timm:resnet18 --num-classes 10 --input-size 3,32,32 -o resnet18.onnx --json":
        Journey("--repeats 2 --warmup 0"),
    # README: report and compare
    "snipit report slim.safetensors": Journey(needs=("slim.safetensors",)),
    "snipit report pruned.safetensors --json | jq .sparsity": Journey(needs=("pruned.safetensors",)),
    "snipit report slim.safetensors --plot layers.png": Journey(needs=("slim.safetensors",)),
    "snipit compare timm:resnet18 slim.safetensors --latency --json":
        Journey(LATENCY, needs=("slim.safetensors",)),
    "snipit compare timm:resnet18 a.safetensors b.safetensors --data cifar10 --eval --eval-batches 20 --latency "
    "--plot cmp.png":
        Journey(LATENCY, needs=("a.safetensors", "b.safetensors")),
    # README and epilog: train
    "snipit train pruned.safetensors --data cifar10 --epochs 30 -o finetuned.safetensors":
        Journey("--epochs 1", needs=("pruned.safetensors",)),
    "snipit train snipit:lenet5-caffe --data mnist --data-root ../shared/data/mnist --split test --holdout 0.2 "
    "--epochs 20 --method snip-it --sparsity 0.98 --prune-delay 2 --prune-freq 2 -o l5.safetensors":
        Journey(L5),
    "snipit train small.safetensors --method snap-it --structured --sparsity 0.5 --data mnist --epochs 8":
        Journey("--epochs 1 --prune-freq 0 --steps 1 --batches 1 --batch-size 8", needs=("small.safetensors",)),
    "snipit train l5.safetensors --resume --epochs 30 -o l5-30.safetensors":
        Journey("--epochs 2", needs=("l5.safetensors",)),
    "snipit train snipit:lenet5-caffe --data mnist --data-root ../shared/data/mnist --split test --holdout 0.2 "
    "--epochs 20 --method snip-it --sparsity 0.98 --prune-delay 2 --prune-freq 2":
        Journey(L5),
    "snipit train snipit:small-cnn --arch-kwargs '{\"in_chans\": 3}' --input-size 3,32,32 --data imagefolder:../shared/data/cifar10-train-jpg/train --test-data imagefolder:../shared/data/cifar10-test-jpg/test --epochs 5 -o cifar-cnn.safetensors":
        Journey("--arch-kwargs '{\"in_chans\": 3, \"width\": 4}' --epochs 1 --batch-size 8"),
    "snipit train finetuned.safetensors --resume --epochs 40 -o finetuned-40.safetensors":
        Journey("--epochs 2", needs=("finetuned.safetensors",)),
    # epilog: prune
    "snipit prune timm:resnet18 --input-size 3,32,32 --sparsity 0.9": Journey(PRUNE),
    "snipit prune model.pt --arch mynet.py:Net --data cifar10 --data-root ~/data --sparsity 0.95": Journey(PRUNE),
    "snipit prune torchvision:mobilenet_v3_small --method snip --json | jq .sparsity":
        Journey("--input-size 3,32,32 --batches 1 --batch-size 2"),
}
# fmt: on


def _env(root: Path) -> dict[str, str]:
    path = [str(root / "work"), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {
        **os.environ,
        "HOME": str(root / "home"),
        "SNIPIT_DATA": str(root / "data-root"),
        "PYTHONPATH": os.pathsep.join(path),  # `--arch mynet:Net` imports the user's module
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "HF_HUB_OFFLINE": "1",
        "GLOO_SOCKET_IFNAME": "lo",
        "NO_COLOR": "1",
    }


def _run(command: str, root: Path) -> subprocess.CompletedProcess:
    """Through bash, as typed in a terminal (``$(which snipit)``, ``~``, quotes), in ``work/``."""
    return subprocess.run(
        ["bash", "-c", command], cwd=root / "work", env=_env(root), capture_output=True, text=True,
        timeout=300, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _check_ran(command: str, proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Datasets and user files, written once; products are added as journeys need them."""
    root = tmp_path_factory.mktemp("journeys")
    write_datasets(root)
    write_user_files(root / "work")
    return root


def _make(name: str, root: Path) -> None:
    if (root / "work" / name).exists():
        return
    command, deps = PRODUCTS[name]
    for dep in deps:
        _make(dep, root)
    _check_ran(command, _run(command, root))


def _copy(workspace: Path, tmp_path: Path, needs: tuple[str, ...]) -> Path:
    """The workspace with only the checkpoints this journey reads, so what it writes is new."""
    for name in needs:
        _make(name, workspace)
    root = tmp_path / "ws"
    shutil.copytree(workspace, root, symlinks=True)
    for name in PRODUCTS.keys() - set(needs):
        product = root / "work" / name
        if product.is_dir():  # a hub-style folder
            shutil.rmtree(product)
        product.unlink(missing_ok=True)
    return root


def _jq(expression: str, stdout: str):
    """``jq .a.b`` on a JSON document (jq need not be installed where the tests run)."""
    value = json.loads(stdout)
    for key in filter(None, expression.split(".")):
        value = value[key]
    return value


@pytest.mark.parametrize("command", all_commands(), ids=all_commands())
def test_shown_command_runs(command: str, workspace: Path, tmp_path: Path) -> None:
    journey = JOURNEYS.get(command)
    if journey is None:
        pytest.fail(f"no journey for the command users are shown: {command!r}; add it to JOURNEYS")
    root = _copy(workspace, tmp_path, journey.needs)
    for old, new in (*journey.replace, ("/data/val", str(root / "images" / "val"))):
        command = command.replace(old, new)
    snipit_part, _, jq = command.partition(" | jq ")
    shrunk = f"{snipit_part} {journey.extra}".strip()
    proc = _run(shrunk, root)
    _check_ran(shrunk, proc)
    args = shlex.split(snipit_part)
    for flag in ("-o", "--output", "--plot"):
        if flag in args:
            written = root / "work" / args[args.index(flag) + 1]
            if written.is_dir():  # -o DIR/: a hub-style folder
                written = written / "model.safetensors"
            assert written.is_file() and written.stat().st_size > 0, f"{written} was not written"
    if jq:
        assert _jq(jq, proc.stdout) is not None
    elif "--json" in args:
        json.loads(proc.stdout)  # exactly one JSON document on stdout


def test_every_shown_command_has_a_journey() -> None:
    shown = set(all_commands())
    assert sorted(shown - JOURNEYS.keys()) == []
    assert sorted(JOURNEYS.keys() - shown) == [], "a journey for a command no longer shown"


@pytest.mark.parametrize("block", readme_python_blocks())
def test_readme_python_runs(block: str, workspace: Path, tmp_path: Path) -> None:
    files = re.findall(r'"([\w.-]+\.safetensors)"', block)
    folders = [n for n in re.findall(r'(?:"local-dir:|load_model\(")([\w.-]+)"', block) if n in PRODUCTS]
    root = _copy(workspace, tmp_path, (*files, *folders))
    loaded = re.findall(r"^(\w+) = (?:snipit_cli\.load_model|timm\.create_model)", block, re.M)
    assert loaded, "a README python block that loads no model"
    code = block + "".join(f"\nassert not {v}.training and {v}(__import__('torch').zeros(1, 3, 32, 32)) is not None"
                           for v in loaded)  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=root / "work", env=_env(root), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
