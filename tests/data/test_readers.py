"""Readers of the real on-disk formats: CIFAR pickles, MNIST idx files, image folders."""

from __future__ import annotations

import builtins
import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from snipit_cli.data.build import DataOptions, dataset_input_spec, open_dataset
from snipit_cli.data.readers import read_dataset
from snipit_cli.data.readers.base import IMAGENET_STATS
from snipit_cli.data.readers.cifar import read_cifar
from snipit_cli.data.readers.folders import ImageFolderImages, image_folder_split
from snipit_cli.data.readers.idx import read_mnist
from snipit_cli.data.specs import DataSpec
from snipit_cli.errors import DataError, UsageError

# ---------------------------------------------------------------- CIFAR


def test_cifar10_test_split_decodes_images_and_labels(tmp_path: Path, make_cifar) -> None:
    written = make_cifar("cifar10", splits=("test",), per_file=3)["test"]

    ds = read_dataset("cifar10", tmp_path, "test", download=False)

    assert len(ds) == 3
    image, label = ds[1]
    assert image.dtype == torch.uint8 and image.shape == (3, 32, 32)
    assert isinstance(label, int) and label == written.labels[1]
    expected = torch.from_numpy(written.images.reshape(3, 3, 32, 32))
    assert torch.equal(torch.stack([ds[i][0] for i in range(3)]), expected)
    assert [ds[i][1] for i in range(3)] == written.labels
    assert (ds.info.channels, ds.info.size, ds.info.num_classes) == (3, (32, 32), 10)


def test_cifar_layout_is_red_green_blue_planes_row_major(tmp_path: Path, cifar_batch_writer) -> None:
    row = np.zeros(3072, dtype=np.uint8)
    row[0 * 1024 + 0 * 32 + 1] = 200  # red, row 0, column 1
    row[1 * 1024 + 2 * 32 + 0] = 100  # green, row 2, column 0
    row[2 * 1024 + 31 * 32 + 31] = 50  # blue, last pixel
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    cifar_batch_writer(folder / "test_batch", row[None, :], [7], "labels")

    image, label = read_cifar("cifar10", tmp_path, "test", download=False)[0]

    assert label == 7
    assert image[0, 0, 1] == 200 and image[1, 2, 0] == 100 and image[2, 31, 31] == 50
    assert int(image.sum()) == 350


def test_cifar10_train_split_concatenates_the_five_batches(tmp_path: Path, make_cifar) -> None:
    written = make_cifar("cifar10", splits=("train",), per_file=2)["train"]

    ds = read_cifar("cifar10", tmp_path, "train", download=False)

    assert len(ds) == 10
    assert torch.equal(ds.images, torch.from_numpy(written.images.reshape(10, 3, 32, 32)))
    assert ds.labels.tolist() == written.labels


def test_cifar100_reads_fine_labels(tmp_path: Path, make_cifar) -> None:
    written = make_cifar("cifar100", splits=("test",), per_file=4, seed=3)["test"]

    ds = read_dataset("cifar100", tmp_path, "test", download=False)

    assert ds.labels.tolist() == written.labels
    assert torch.equal(ds.images, torch.from_numpy(written.images.reshape(4, 3, 32, 32)))
    assert ds.info.num_classes == 100


def test_cifar_root_may_be_the_batches_folder_itself(tmp_path: Path, make_cifar) -> None:
    written = make_cifar("cifar10")["test"]

    ds = read_cifar("cifar10", tmp_path / "cifar-10-batches-py", "test", download=False)

    assert ds.labels.tolist() == written.labels


def test_cifar_only_the_split_read_must_exist(tmp_path: Path, make_cifar) -> None:
    make_cifar("cifar10", splits=("test",))
    assert len(read_cifar("cifar10", tmp_path, "test", download=False)) == 3

    with pytest.raises(DataError) as info:
        read_cifar("cifar10", tmp_path, "train", download=False)

    message = str(info.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "--download" in message
    assert "data_batch_1" in message and "data_batch_5" in message


def test_cifar_missing_batch_is_named(tmp_path: Path, make_cifar) -> None:
    make_cifar("cifar10", splits=("train",), per_file=1)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()

    with pytest.raises(DataError, match="missing data_batch_3\\)"):
        read_cifar("cifar10", tmp_path, "train", download=False)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_missing_folder_names_it_and_download(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataError) as info:
        read_dataset(name, tmp_path, "test", download=False)

    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    assert str(tmp_path / folder) in str(info.value)
    assert "--download" in str(info.value)


class _CreatesFile:
    """Unpickling this opens (creates) a file: a stand-in for code execution."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (builtins.open, (str(self.path), "w"))


class _RunsShell:
    """Unpickling this runs a shell command that creates a file."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch '{self.path}'",))


@pytest.mark.parametrize("payload", [_CreatesFile, _RunsShell], ids=["open", "os.system"])
def test_cifar_pickle_with_code_is_refused_without_running_it(tmp_path: Path, payload) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    batch = {"data": np.zeros((1, 3072), np.uint8), "labels": payload(marker)}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))

    with pytest.raises(DataError, match="refusing to load") as info:
        read_cifar("cifar10", tmp_path, "test", download=False)

    assert str(folder / "test_batch") in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "protocol",
    [
        2,
        4,
        5,  # numpy arrays go through numpy._core.numeric._frombuffer (Python 3.14's default)
    ],
)
def test_cifar_batches_written_with_any_pickle_protocol_are_read(
    tmp_path: Path, cifar_batch_writer, protocol: int
) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    cifar_batch_writer(folder / "test_batch", data, [3, 4], "labels", protocol=protocol)

    ds = read_cifar("cifar10", tmp_path, "test", download=False)

    assert torch.equal(ds.images, torch.from_numpy(data.reshape(2, 3, 32, 32)))
    assert ds.labels.tolist() == [3, 4]


def test_cifar_batch_of_wrong_size_is_a_data_error(tmp_path: Path, cifar_batch_writer) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    cifar_batch_writer(folder / "test_batch", np.zeros((2, 3000), np.uint8), [0, 1], "labels")

    with pytest.raises(DataError, match="test_batch is not a valid cifar10 batch"):
        read_cifar("cifar10", tmp_path, "test", download=False)


def test_cifar100_batch_without_fine_labels_is_a_data_error(tmp_path: Path, cifar_batch_writer) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    # A CIFAR-10 style batch put where CIFAR-100 is expected.
    cifar_batch_writer(folder / "test", np.zeros((1, 3072), np.uint8), [0], "labels")

    with pytest.raises(DataError, match="fine_labels"):
        read_cifar("cifar100", tmp_path, "test", download=False)


def test_cifar_file_that_is_not_a_pickle_is_a_data_error(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(b"this is not a pickle")

    with pytest.raises(DataError, match="is not a valid CIFAR batch"):
        read_cifar("cifar10", tmp_path, "test", download=False)


def test_cifar_pickle_that_is_not_a_dict_is_a_data_error(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3], protocol=2))

    with pytest.raises(DataError, match="test_batch"):
        read_cifar("cifar10", tmp_path, "test", download=False)


def test_cifar_labels_and_images_must_match_in_number(tmp_path: Path, cifar_batch_writer) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    cifar_batch_writer(folder / "test_batch", np.zeros((2, 3072), np.uint8), [0, 1, 2], "labels")

    with pytest.raises(DataError, match="test_batch"):
        read_cifar("cifar10", tmp_path, "test", download=False)


# ---------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_mnist_test_split_reads_idx_files(tmp_path: Path, make_mnist, gz: bool) -> None:
    written = make_mnist(tmp_path / "MNIST" / "raw", prefix="t10k", n=4, gz=gz)

    ds = read_dataset("mnist", tmp_path, "test", download=False)

    assert len(ds) == 4
    image, label = ds[2]
    assert image.dtype == torch.uint8 and image.shape == (1, 28, 28)
    assert label == written.labels[2]
    assert torch.equal(ds.images, torch.from_numpy(written.images).unsqueeze(1))
    assert ds.labels.tolist() == written.labels
    assert (ds.info.channels, ds.info.size, ds.info.num_classes) == (1, (28, 28), 10)


def test_mnist_train_split_uses_train_prefix(tmp_path: Path, make_mnist) -> None:
    make_mnist(tmp_path / "MNIST" / "raw", prefix="t10k", n=2, seed=0)
    train = make_mnist(tmp_path / "MNIST" / "raw", prefix="train", n=3, seed=1)

    ds = read_mnist("mnist", tmp_path, "train", download=False)

    assert torch.equal(ds.images[:, 0], torch.from_numpy(train.images))


def test_fashionmnist_reads_its_own_folder(tmp_path: Path, make_mnist) -> None:
    written = make_mnist(tmp_path / "FashionMNIST" / "raw", n=3, gz=False)

    ds = read_dataset("fashionmnist", tmp_path, "test", download=False)

    assert ds.labels.tolist() == written.labels
    assert ds.info.name == "fashionmnist"
    with pytest.raises(DataError, match="MNIST"):
        read_dataset("mnist", tmp_path, "test", download=False)


@pytest.mark.parametrize("root_at", ["raw folder", "dataset folder"])
def test_mnist_root_may_point_into_the_layout(tmp_path: Path, make_mnist, root_at: str) -> None:
    written = make_mnist(tmp_path / "MNIST" / "raw", n=2)
    root = tmp_path / "MNIST" / "raw" if root_at == "raw folder" else tmp_path / "MNIST"

    ds = read_mnist("mnist", root, "test", download=False)

    assert torch.equal(ds.images[:, 0], torch.from_numpy(written.images))


def test_mnist_only_test_split_present(tmp_path: Path, make_mnist) -> None:
    make_mnist(tmp_path / "MNIST" / "raw", prefix="t10k", n=2)
    assert len(read_mnist("mnist", tmp_path, "test", download=False)) == 2

    with pytest.raises(DataError) as info:
        read_mnist("mnist", tmp_path, "train", download=False)

    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "--download" in message


def test_mnist_missing_names_folder_and_download(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        read_dataset("fashionmnist", tmp_path, "test", download=False)

    assert str(tmp_path / "FashionMNIST" / "raw") in str(info.value)
    assert "--download" in str(info.value)


def test_mnist_images_without_labels_is_missing(tmp_path: Path, make_mnist) -> None:
    make_mnist(tmp_path / "MNIST" / "raw", n=2)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()

    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        read_mnist("mnist", tmp_path, "test", download=False)


def _truncated(idx_writer) -> bytes:
    full = idx_writer(np.zeros((4, 28, 28), np.uint8), 0x00000803)
    return full[: 16 + 2 * 28 * 28]  # header says 4 images, payload holds 2


CORRUPT_IMAGES = {
    "truncated": lambda w: _truncated(w),
    "garbage": lambda w: b"certainly not an idx file",
    "empty": lambda w: b"",
    "labels instead of images": lambda w: w(np.zeros(4, np.uint8), 0x00000801),
}


@pytest.mark.parametrize("kind", list(CORRUPT_IMAGES))
def test_mnist_corrupt_idx_is_a_data_error_naming_the_file(
    tmp_path: Path, make_mnist, idx_writer, kind: str
) -> None:
    raw = tmp_path / "MNIST" / "raw"
    make_mnist(raw, n=4, gz=False)
    bad = raw / "t10k-images-idx3-ubyte"
    bad.write_bytes(CORRUPT_IMAGES[kind](idx_writer))

    with pytest.raises(DataError, match="is not a valid idx file") as info:
        read_mnist("mnist", tmp_path, "test", download=False)

    assert str(bad) in str(info.value)


@pytest.mark.parametrize("kind", ["not gzip", "cut-off gzip"])
def test_mnist_corrupt_gzip_is_a_data_error(tmp_path: Path, make_mnist, idx_writer, kind: str) -> None:
    raw = tmp_path / "MNIST" / "raw"
    make_mnist(raw, n=4, gz=True)
    bad = raw / "t10k-labels-idx1-ubyte.gz"
    plain = idx_writer(np.zeros(4, np.uint8), 0x00000801)
    bad.write_bytes(plain if kind == "not gzip" else gzip.compress(plain)[:-12])

    with pytest.raises(DataError, match="is not a valid idx file") as info:
        read_mnist("mnist", tmp_path, "test", download=False)

    assert str(bad) in str(info.value)


@pytest.mark.parametrize(
    "magic",
    [
        pytest.param(0x00000903, id="int8 payload"),  # torchvision raises TypeError
        pytest.param(0x00000A03, id="unknown type code 0x0A"),  # torchvision raises KeyError
    ],
)
def test_mnist_idx_of_another_type_is_a_data_error(
    tmp_path: Path, make_mnist, idx_writer, magic: int
) -> None:
    raw = tmp_path / "MNIST" / "raw"
    make_mnist(raw, n=2, gz=False)
    bad = raw / "t10k-images-idx3-ubyte"
    bad.write_bytes(idx_writer(np.zeros((2, 28, 28), np.uint8), magic))

    with pytest.raises(DataError, match="is not a valid idx file") as info:
        read_mnist("mnist", tmp_path, "test", download=False)

    assert str(bad) in str(info.value)


def test_mnist_image_and_label_counts_must_match(tmp_path: Path, make_mnist, idx_writer) -> None:
    raw = tmp_path / "MNIST" / "raw"
    make_mnist(raw, n=3, gz=False)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_writer(np.zeros(5, np.uint8), 0x00000801))

    with pytest.raises(DataError, match="do not match"):
        read_mnist("mnist", tmp_path, "test", download=False)


# ---------------------------------------------------------------- image folders


def test_image_folder_labels_follow_sorted_class_names(image_folder) -> None:
    root, pixels = image_folder

    ds = read_dataset("imagefolder", root, "train", download=False, path=root)

    assert ds.folder.classes == ["ant", "cat", "dog"]
    assert ds.info.num_classes == 3 and ds.info.channels == 3
    assert ds.info.size == (10, 12)  # every image is 12 wide, 10 high (read from the PNG headers)
    assert [ds[i][1] for i in range(len(ds))] == [0, 0, 1, 2]
    ant_rgb, ant_grey, cat, dog = (ds[i][0] for i in range(4))
    for image, name in ((ant_rgb, "ant/0.png"), (cat, "cat/0.png"), (dog, "dog/0.png")):
        assert image.dtype == torch.uint8 and image.shape == (3, 10, 12)
        assert torch.equal(image, torch.from_numpy(pixels[name]).permute(2, 0, 1)), name


def test_image_folder_greyscale_png_becomes_three_equal_channels(image_folder) -> None:
    root, pixels = image_folder

    image, label = ImageFolderImages(root)[1]  # ant/1.png, saved as mode "L"

    assert label == 0
    assert image.shape == (3, 10, 12)
    grey = torch.from_numpy(pixels["ant/1.png"])
    assert all(torch.equal(image[c], grey) for c in range(3))


def test_image_folder_corrupt_file_names_it_when_read(image_folder) -> None:
    root, _ = image_folder
    bad = root / "cat" / "1.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 64, dtype=np.uint8).tobytes())
    ds = ImageFolderImages(root)  # decoding is lazy: the folder still opens
    assert ds.folder.samples[3] == (str(bad), 1)

    with pytest.raises(DataError) as info:
        ds[3]

    assert str(bad) in str(info.value)
    assert ds[2][1] == 1  # the good cat image still reads


def test_image_folder_truncated_png_is_a_data_error(image_folder) -> None:
    root, _ = image_folder
    path = root / "dog" / "0.png"
    path.write_bytes(path.read_bytes()[:60])

    with pytest.raises(DataError, match="dog"):
        ImageFolderImages(root)[3]


def test_image_folder_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderImages(tmp_path / "nope")


def test_image_folder_without_class_folders(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.txt").write_text("no images here")

    with pytest.raises(DataError, match="is not an image folder"):
        ImageFolderImages(tmp_path / "flat")


def test_read_dataset_unknown_kind(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no reader"):
        read_dataset("svhn", tmp_path, "test", download=False)


# ---------------------------------------------------------------- build.open_dataset


def test_data_options_reject_unknown_split_and_counts(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--split"):
        DataOptions(DataSpec("mnist"), tmp_path, split="val")
    with pytest.raises(UsageError, match="--batches and --batch-size"):
        DataOptions(DataSpec("mnist"), tmp_path, batches=0)


def test_open_dataset_synthetic_is_none_and_has_no_input_spec(tmp_path: Path) -> None:
    dataset = open_dataset(DataOptions(DataSpec("synthetic"), tmp_path))

    assert dataset is None
    assert dataset_input_spec(dataset) is None


def test_dataset_input_spec_is_the_native_shape(tmp_path: Path, make_mnist, image_folder) -> None:
    make_mnist(tmp_path / "MNIST" / "raw", n=2)
    mnist = open_dataset(DataOptions(DataSpec("mnist"), tmp_path, split="test"))
    root, _ = image_folder
    folder = open_dataset(DataOptions(DataSpec("imagefolder", root), tmp_path))

    spec = dataset_input_spec(mnist)
    images = dataset_input_spec(folder)

    assert spec.size == (1, 28, 28) and spec.source == "mnist native size"
    assert spec.mean == (0.1307,) and spec.std == (0.3081,)
    assert images.size == (3, 10, 12) and images.source == "image folder (10x12 images)"
    assert (images.mean, images.std) == IMAGENET_STATS


def test_image_folder_of_mixed_sizes_has_no_size_and_says_why(image_folder) -> None:
    root, _ = image_folder
    Image.fromarray(np.zeros((7, 9, 3), np.uint8)).save(root / "cat" / "small.png")

    spec = dataset_input_spec(ImageFolderImages(root))

    assert spec.size == ()
    assert spec.source.endswith("its images differ in size (7x9, 10x12, height x width)")


def test_image_folder_splits_follow_the_imagenet_layout(tmp_path: Path) -> None:
    for split in ("train", "val"):
        (tmp_path / "ds" / split / "a").mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "ds" / split / "a" / "0.png")

    assert image_folder_split(tmp_path / "ds", "train") == tmp_path / "ds" / "train"
    assert image_folder_split(tmp_path / "ds", "test") == tmp_path / "ds" / "val"  # no test/: val/
    (tmp_path / "ds" / "test").mkdir()
    assert image_folder_split(tmp_path / "ds", "test") == tmp_path / "ds" / "test"
    assert image_folder_split(tmp_path / "ds" / "train", "test") == tmp_path / "ds" / "train"  # no splits
    ds = read_dataset("imagefolder", tmp_path, "train", download=False, path=tmp_path / "ds")
    assert ds.origin == (str((tmp_path / "ds" / "train").resolve()),) and ds.folder.classes == ["a"]


def test_image_folder_without_the_split_asked_for(tmp_path: Path) -> None:
    (tmp_path / "ds" / "test" / "a").mkdir(parents=True)

    with pytest.raises(DataError, match=r"no train split in image folder .*ds: it has test/ but no train/"):
        image_folder_split(tmp_path / "ds", "train")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_reader_agrees_with_torchvisions_own_loader(
    tmp_path: Path, make_cifar, monkeypatch, name
) -> None:
    """Cross-check against torchvision's CIFAR classes (md5 check off: the files are ours)."""
    import torchvision.datasets as tvd

    make_cifar(name, splits=("test",), per_file=4)
    tv_class = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *args, **kwargs: True)
    reference = tv_class(str(tmp_path), train=False)
    ours = read_cifar(name, tmp_path, "test", download=False)
    assert len(ours) == len(reference) == 4
    for i in range(4):
        image, label = ours[i]
        ref_image, ref_label = reference[i]
        assert torch.equal(image.permute(1, 2, 0), torch.from_numpy(np.asarray(ref_image)))
        assert label == ref_label
