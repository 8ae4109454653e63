"""Hostile dataset files (issue 15, classes 10, 11 and 14): a PNG header claiming 30000x30000, a
symlink loop in an image folder, CIFAR batches crafted from pickle opcodes that only use the
unpickler's allowed callables, and a gzip bomb in MNIST. Each ends in one line naming the file
(or, for the loop, a finite scan), exit 2, nothing written, and bounded memory."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from console import listing, run_snipit
from PIL import Image
from tiny_models import TinyCNN

ARCH = "tiny_models:TinyCNN"
FAST = ("--batches", "1", "--batch-size", "2", "--steps", "1")
TESTS = Path(__file__).resolve().parents[1]
#: Code under test in a child process: $PYTHONPATH when set, else this checkout.
CODE = os.environ.get("PYTHONPATH") or str(TESTS.parent)


def refused(folder: Path, monkeypatch, capsys, data_args: tuple[str, ...], size: str = "3,8,8") -> str:
    """Prune a tiny state_dict on ``data_args``; assert one error line, exit 2, folder unchanged."""
    torch.manual_seed(0)
    torch.save(TinyCNN().state_dict(), folder / "tiny.pt")
    before = listing(folder)
    args = ("prune", "tiny.pt", "--arch", ARCH, "--input-size", size, *FAST, *data_args)
    code, stdout, stderr = run_snipit(args, monkeypatch, capsys)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    assert stdout == "" and "Traceback" not in stderr and "internal error" not in stderr
    assert listing(folder) == before
    return lines[0]


# ---------------------------------------------------------------- image folders (class 10)


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` RGB pixels (valid CRCs, no pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def small_image_folder(root: Path) -> None:
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.fromarray(np.full((8, 8, 3), 60, np.uint8)).save(root / cls / "ok.png")


@pytest.mark.parametrize(
    ("side", "limit"),
    [(30000, "exceeds limit of 178956970 pixels"), (10000, "exceeds limit of 89478485 pixels")],
    ids=["over twice PIL's limit (DecompressionBombError)", "over PIL's limit (DecompressionBombWarning)"],
)
def test_a_png_claiming_a_huge_size_is_named_as_a_decompression_bomb(
    tmp_path, monkeypatch, capsys, side, limit
):
    small_image_folder(tmp_path / "imgs")
    bomb = tmp_path / "imgs" / "b" / "huge.png"
    bomb.write_bytes(png_header(side, side))
    line = refused(tmp_path, monkeypatch, capsys, ("--data", "imgs"))
    assert line == (
        f"error: image {Path('imgs/b/huge.png')} is refused as a decompression bomb: Image size "
        f"({side * side} pixels) {limit}; remove or replace the file"
    )


def test_a_decompression_bomb_read_as_a_sample_is_named_too(tmp_path):
    """Past the header sample (more files than it reads), decoding the file names it the same way."""
    from snipit_cli.data.readers.folders import ImageFolderImages
    from snipit_cli.errors import DataError

    small_image_folder(tmp_path / "imgs")
    dataset = ImageFolderImages(tmp_path / "imgs")
    (tmp_path / "imgs" / "b" / "ok.png").write_bytes(png_header(30000, 30000))  # replaced after the scan
    with pytest.raises(DataError, match=r"ok\.png is refused as a decompression bomb"):
        dataset[1]


def test_a_symlink_loop_in_an_image_folder_is_scanned_once(tmp_path):
    """Two links to their own parent made torchvision's walk visit 2**40 folders: it never ended.
    Run as a real process with a timeout; each real folder is read once, the run succeeds."""
    small_image_folder(tmp_path / "imgs")
    for name in ("up", "up2"):
        os.symlink("..", tmp_path / "imgs" / "a" / name)
    os.symlink(tmp_path / "imgs" / "a", tmp_path / "imgs" / "b" / "side")  # b also reads a's folder
    torch.manual_seed(0)
    torch.save(TinyCNN().state_dict(), tmp_path / "tiny.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([CODE, str(TESTS)])}
    args = (
        "prune",
        "tiny.pt",
        "--arch",
        ARCH,
        "--input-size",
        "3,8,8",
        "--steps",
        "1",
        "--data",
        "imgs",
        "--json",
    )
    done = subprocess.run(
        [sys.executable, "-m", "snipit_cli", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pruning"]["calibration"]["samples"] == 3  # a/ok, b/ok, b/side/ok

    from snipit_cli.data.readers.folders import ImageFolderImages

    samples = [
        (str(Path(p).relative_to(tmp_path)), label)
        for p, label in ImageFolderImages(tmp_path / "imgs").folder.samples
    ]
    assert samples == [("imgs/a/ok.png", 0), ("imgs/b/ok.png", 1), ("imgs/b/side/ok.png", 1)]


# ---------------------------------------------------------------- CIFAR batches (class 11)

PROTO, STOP, MARK, EMPTY_DICT, EMPTY_LIST = b"\x80\x02", b".", b"(", b"}", b"]"
TUPLE1, TUPLE2, TUPLE3, REDUCE, SETITEMS, APPEND = b"\x85", b"\x86", b"\x87", b"R", b"u", b"a"


def text(value: str) -> bytes:
    raw = value.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw  # BINUNICODE


def long(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1


def glob(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()  # GLOBAL


def batch(data: bytes, labels: bytes = EMPTY_LIST + b"K\x00" + APPEND) -> bytes:
    """A pickled ``{"data": <data>, "labels": <labels>}`` written opcode by opcode."""
    return PROTO + EMPTY_DICT + MARK + text("data") + data + text("labels") + labels + SETITEMS + STOP


CRAFTED = {
    "bytearray(2**62)": (batch(glob("builtins", "bytearray") + long(2**62) + TUPLE1 + REDUCE), "bytearray"),
    "APPEND on a dict": (batch(EMPTY_DICT + b"K\x01" + APPEND), "'dict' object has no attribute 'append'"),
    "unknown codec": (
        batch(glob("_codecs", "encode") + text("abc") + text("no-such-codec") + TUPLE2 + REDUCE),
        "codec 'no-such-codec' is refused",
    ),
    "ndarray of 2**40 elements": (
        batch(
            glob("numpy._core.multiarray", "_reconstruct")
            + glob("numpy", "ndarray")
            + long(2**40)
            + TUPLE1
            + b"C\x01b"
            + TUPLE3
            + REDUCE
        ),
        "an array of shape (1099511627776,) is larger than the file",
    ),  # fmt: skip
    "ndarray called directly": (
        batch(glob("numpy", "ndarray") + long(2**40) + TUPLE1 + TUPLE1 + REDUCE),
        "'object' object is not callable",
    ),
    "truncated": (batch(glob("builtins", "bytearray"))[:-4], "is not a valid CIFAR batch"),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_a_crafted_cifar_batch_is_a_data_error_naming_the_file(tmp_path, monkeypatch, capsys, name):
    content, fragment = CRAFTED[name]
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(content)
    line = refused(
        tmp_path, monkeypatch, capsys, ("--data", "cifar10", "--data-root", ".", "--split", "test")
    )
    assert line.startswith(f"error: {Path('cifar-10-batches-py/test_batch')} is not a valid CIFAR batch")
    assert fragment in line


@pytest.mark.parametrize(
    ("batch_dict", "fragment"),
    [
        (
            {"data": np.zeros((1, 3072), np.uint8), "labels": [2**70]},
            f"label 0 is {2**70}, not a class index",
        ),
        (
            {"data": np.zeros((2, 3072), np.uint8), "labels": [3, -1]},
            "label 1 is -1, not a class index from 0 to 9",
        ),
        ({"data": np.zeros((1, 3072), np.uint8), "labels": ["7"]}, "label 0 is '7'"),
        ({"data": np.zeros((1, 3072), np.uint8), "labels": 5}, "'labels' is a int, not a list of labels"),
        ({"data": [[0] * 3072] * 1000, "labels": [0] * 1000}, "'data' is a list, not uint8 rows of 3072"),
        (
            {"data": np.zeros((1, 3072), np.float32), "labels": [0]},
            "'data' is a float32 array of shape (1, 3072)",
        ),
        ({"labels": [0]}, "no 'data' entry"),
    ],
    ids=[
        "label 2**70",
        "negative label",
        "string label",
        "labels not a list",
        "rows by reference",
        "float data",
        "no data",
    ],
)
def test_what_the_unpickler_built_is_checked_before_use(tmp_path, monkeypatch, capsys, batch_dict, fragment):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(batch_dict, protocol=2))
    line = refused(
        tmp_path, monkeypatch, capsys, ("--data", "cifar10", "--data-root", ".", "--split", "test")
    )
    assert line.startswith(f"error: {Path('cifar-10-batches-py/test_batch')} is not a valid cifar10 batch")
    assert fragment in line


# ---------------------------------------------------------------- MNIST idx (class 14)


def write_gz_idx(path: Path, header: bytes, payload_bytes: int) -> None:
    """A gzipped idx file: ``header`` then ``payload_bytes`` zeros, written streaming (1 MiB chunks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    chunk = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(header)
        for start in range(0, payload_bytes, len(chunk)):
            f.write(chunk[: min(len(chunk), payload_bytes - start)])


PEAK = """
import resource, sys
from pathlib import Path
from snipit_cli.data.readers.idx import read_mnist
from snipit_cli.errors import DataError
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    read_mnist("mnist", Path(sys.argv[1]), "test", download=False)
except DataError as exc:
    print(exc)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""


MIB = 1 << 20


@pytest.mark.parametrize(
    ("count", "payload", "fragment", "bound"),
    [
        (10000, 256 * MIB, "it goes on after its header's 10000x28x28 (7,840,000 bytes) payload", 7_840_001),
        (400_000, 256 * MIB, "it ends early after its header's 400000x28x28", 313_600_001),
        (2_000_000, MIB, "declares 2000000x28x28 = 1,568,000,000 bytes, more than the 784,000,000", 0),
        (2**32 - 1, 0, "more than the 784,000,000 of a million 28x28 images", 0),
    ],
    ids=["honest count, 256 MiB of zeros", "313 MB count, 256 MiB", "count over the bound", "count 2**32-1"],
)
def test_a_gzip_bomb_in_mnist_costs_no_more_than_its_header_claims(tmp_path, count, payload, fragment, bound):
    """Measured in a fresh process: the read adds at most the header's declared payload (one
    buffer, plus the decompressor's few MB) to peak memory, never the bomb's 256 MiB, nothing at
    all when the header declares more than the bound, and it writes no temp file."""
    raw = tmp_path / "data" / "MNIST" / "raw"
    write_gz_idx(raw / "t10k-images-idx3-ubyte.gz", struct.pack(">IIII", 0x803, count, 28, 28), payload)
    write_gz_idx(raw / "t10k-labels-idx1-ubyte.gz", struct.pack(">II", 0x801, 10000), 10000)
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "PYTHONPATH": CODE, "TMPDIR": str(tmp_path / "tmp")}
    done = subprocess.run(
        [sys.executable, "-c", PEAK, str(tmp_path / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    message, added = done.stdout.strip().splitlines()
    assert message.startswith(f"{raw / 't10k-images-idx3-ubyte.gz'} is not a valid idx file: ")
    assert fragment in message
    assert int(added) < bound + 8 * MIB
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_gzip_bomb_in_mnist_is_one_line_through_the_cli(tmp_path, monkeypatch, capsys):
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    write_gz_idx(raw / "t10k-images-idx3-ubyte.gz", struct.pack(">IIII", 0x803, 4, 28, 28), 8 << 20)
    write_gz_idx(raw / "t10k-labels-idx1-ubyte.gz", struct.pack(">II", 0x801, 4), 4)
    args = ("--data", "mnist", "--data-root", "mnist", "--split", "test")
    line = refused(tmp_path, monkeypatch, capsys, args, size="1,28,28")
    assert line == (
        f"error: {Path('mnist/MNIST/raw/t10k-images-idx3-ubyte.gz')} is not a valid idx file: it goes on "
        "after its header's 4x28x28 (3,136 bytes) payload (read 3,136+)"
    )


def test_idx_files_read_streaming_match_torchvisions_reader(tmp_path):
    """The bounded reader gives torchvision's tensors for a real (plain) idx file of each kind."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    from snipit_cli.data.readers.idx import read_idx

    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8), rng.integers(0, 10, 5, dtype=np.uint8)
    (tmp_path / "i").write_bytes(struct.pack(">IIII", 0x803, 5, 28, 28) + images.tobytes())
    (tmp_path / "l").write_bytes(struct.pack(">II", 0x801, 5) + labels.tobytes())
    assert torch.equal(read_idx(tmp_path / "i", dims=3), read_image_file(str(tmp_path / "i")))
    assert torch.equal(read_idx(tmp_path / "l", dims=1), read_label_file(str(tmp_path / "l")))
