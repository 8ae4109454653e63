"""Calibration batches: seeded synthetic data, seeded random subsets of a dataset, and
``calibration_data`` shaping real data for a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from snipit_cli.data.build import DataOptions, calibration_data, open_dataset
from snipit_cli.data.calibration import DatasetData, SyntheticData
from snipit_cli.data.specs import parse_data_spec
from snipit_cli.errors import DataError, UsageError
from snipit_cli.models.input_spec import InputSpec

CPU = torch.device("cpu")


class IndexImages(Dataset):
    """Sample ``i``: a 1x2x2 image filled with ``i``, label ``i % classes + shift``; reads are logged."""

    def __init__(self, n: int, classes: int = 10, shift: int = 0):
        self.n, self.classes, self.shift, self.reads = n, classes, shift, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads.append(i)
        return torch.full((1, 2, 2), i, dtype=torch.uint8), i % self.classes + self.shift


def to_float(image: torch.Tensor) -> torch.Tensor:
    return image.float()


def dataset_data(dataset: Dataset, batch_size: int, n_batches: int, seed: int = 0, **kw):
    return DatasetData(
        spec="test-data",
        batch_size=batch_size,
        n_batches=n_batches,
        seed=seed,
        dataset=dataset,
        transform=to_float,
        **kw,
    )


def step_indices(data: DatasetData, step: int) -> list[int]:
    """Which samples a step used, read back from the images (pixel value = index)."""
    return [int(v) for x, _ in data.batches(step) for v in x[:, 0, 0, 0]]


# ---------------------------------------------------------------- SyntheticData


def synthetic(seed: int = 0, num_classes: int = 10) -> SyntheticData:
    return SyntheticData(
        spec="synthetic", batch_size=4, n_batches=3, seed=seed, size=(3, 8, 8), num_classes=num_classes
    )


def test_synthetic_batches_have_the_model_shape_and_label_range() -> None:
    batches = list(synthetic(num_classes=3).batches(0))

    assert len(batches) == 3
    for x, y in batches:
        assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32
        assert y.shape == (4,) and y.dtype == torch.int64
    labels = torch.cat([y for _, y in batches])
    assert labels.min() >= 0 and labels.max() < 3
    assert synthetic().describe() == {"data": "synthetic", "batches": 3, "batch_size": 4, "samples": 12}


def test_synthetic_same_seed_and_step_is_bit_identical() -> None:
    first, second = list(synthetic(seed=7).batches(2)), list(synthetic(seed=7).batches(2))

    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second, strict=True)
    )
    assert len(first) == len(second) == 3


def test_synthetic_differs_by_seed_by_step_and_by_batch() -> None:
    base = list(synthetic(seed=0).batches(0))
    other_seed = list(synthetic(seed=1).batches(0))
    other_step = list(synthetic(seed=0).batches(1))

    assert not torch.equal(base[0][0], other_seed[0][0])
    assert not torch.equal(base[0][0], other_step[0][0])
    assert not torch.equal(base[0][0], base[1][0])


def test_batch_counts_must_be_positive() -> None:
    with pytest.raises(UsageError, match="--batches and --batch-size"):
        SyntheticData(spec="synthetic", batch_size=0, n_batches=1, seed=0)
    with pytest.raises(UsageError, match="--batches and --batch-size"):
        dataset_data(IndexImages(4), batch_size=1, n_batches=0)


# ---------------------------------------------------------------- DatasetData


def test_each_step_reads_exactly_batches_times_batch_size_samples() -> None:
    dataset = IndexImages(50)
    data = dataset_data(dataset, batch_size=4, n_batches=3)

    batches = list(data.batches(0))

    assert [tuple(x.shape) for x, _ in batches] == [(4, 1, 2, 2)] * 3
    assert len(dataset.reads) == 12 and len(set(dataset.reads)) == 12  # nothing else is read
    indices = [int(v) for x, _ in batches for v in x[:, 0, 0, 0]]
    assert indices == dataset.reads
    assert [int(v) for _, y in batches for v in y] == [i % 10 for i in indices]
    assert data.samples_per_step == 12 and data.notes == []


def test_subset_is_random_and_reproducible_per_seed_and_step() -> None:
    dataset = IndexImages(50)
    data = dataset_data(dataset, batch_size=4, n_batches=3, seed=5)

    step0 = step_indices(data, 0)

    assert step0 != list(range(12))  # a random subset, not the first samples
    assert step_indices(dataset_data(dataset, 4, 3, seed=5), 0) == step0  # same seed and step
    assert set(step_indices(data, 1)) != set(step0)  # another step, another subset
    assert set(step_indices(dataset_data(dataset, 4, 3, seed=6), 0)) != set(step0)


def test_small_dataset_uses_what_exists_and_says_so() -> None:
    dataset = IndexImages(5)

    data = dataset_data(dataset, batch_size=2, n_batches=4)

    assert data.n_batches == 3 and data.samples_per_step == 5
    assert len(data.notes) == 1
    note = data.notes[0]
    assert "only 5 samples" in note and "= 8" in note and "(3 batches)" in note
    batches = list(data.batches(0))
    assert [len(y) for _, y in batches] == [2, 2, 1]
    assert sorted(int(v) for x, _ in batches for v in x[:, 0, 0, 0]) == [0, 1, 2, 3, 4]
    assert data.describe()["batches"] == 3 and data.describe()["samples"] == 5


def test_dataset_of_exactly_the_wanted_size_adds_no_note() -> None:
    data = dataset_data(IndexImages(8), batch_size=2, n_batches=4)

    assert data.notes == [] and data.n_batches == 4


def test_empty_dataset_is_a_data_error() -> None:
    with pytest.raises(DataError, match="empty"):
        dataset_data(IndexImages(0), batch_size=2, n_batches=1)


@pytest.mark.parametrize(
    ("classes", "shift", "bad"),
    [(11, 0, 10), (10, -1, -1)],
    ids=["label equal to the class count", "negative label"],
)
def test_label_outside_the_model_classes_names_the_class_count(classes: int, shift: int, bad: int) -> None:
    dataset = IndexImages(24, classes=classes, shift=shift)
    data = dataset_data(dataset, batch_size=24, n_batches=1, num_classes=10)

    with pytest.raises(DataError) as info:
        list(data.batches(0))

    assert f"label {bad} " in str(info.value) and "10 classes" in str(info.value)


def test_labels_within_classes_pass_the_check() -> None:
    data = dataset_data(IndexImages(24, classes=10), batch_size=24, n_batches=1, num_classes=10)

    (x, y), *rest = list(data.batches(0))

    assert rest == [] and sorted(y.tolist()) == sorted(i % 10 for i in range(24))


# ---------------------------------------------------------------- calibration_data


@pytest.fixture
def constant_mnist(tmp_path: Path, idx_writer) -> Path:
    """MNIST test split of 10 constant images: image ``i`` has label ``i`` and value ``25 i``."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    labels = np.arange(10, dtype=np.uint8)
    images = np.broadcast_to((25 * labels)[:, None, None], (10, 28, 28)).copy()
    (raw / "t10k-images-idx3-ubyte").write_bytes(idx_writer(images, 0x00000803))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(idx_writer(labels, 0x00000801))
    return tmp_path


def mnist_options(root: Path, **kw) -> DataOptions:
    return DataOptions(parse_data_spec("mnist"), root, split="test", batch_size=4, batches=2, **kw)


def test_mnist_for_a_three_channel_16px_model(constant_mnist: Path) -> None:
    options = mnist_options(constant_mnist)
    dataset = open_dataset(options)

    data = calibration_data(options, dataset, InputSpec((3, 16, 16)), 10, CPU)

    assert isinstance(data, DatasetData)
    batches = list(data.batches(0))
    assert len(batches) == 2
    for x, y in batches:
        assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
        # grey -> 3 channels, resized (constant stays constant), MNIST's own mean/std
        value = (25 * y.float() / 255 - 0.1307) / 0.3081
        torch.testing.assert_close(x, value[:, None, None, None].expand_as(x), rtol=0, atol=1e-5)
    assert data.describe() == {"data": "mnist", "batches": 2, "batch_size": 4, "samples": 8}


def test_mnist_random_images_give_three_identical_channels(tmp_path: Path, make_mnist) -> None:
    make_mnist(tmp_path / "MNIST" / "raw", n=6)
    options = mnist_options(tmp_path)

    data = calibration_data(options, open_dataset(options), InputSpec((3, 16, 16)), 10, CPU)

    x, _ = next(iter(data.batches(0)))
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    assert x[:, 0].flatten(1).std(dim=1).min() > 0.1  # random pixels: no image is flat


def test_mean_and_std_options_override_the_model_and_dataset(constant_mnist: Path) -> None:
    options = mnist_options(constant_mnist, mean=(0.5,), std=(0.25,))
    model_input = InputSpec((3, 16, 16), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

    data = calibration_data(options, open_dataset(options), model_input, 10, CPU)

    x, y = next(iter(data.batches(0)))
    value = (25 * y.float() / 255 - 0.5) / 0.25
    torch.testing.assert_close(x, value[:, None, None, None].expand_as(x), rtol=0, atol=1e-5)


def test_model_normalisation_wins_over_the_dataset_customary_one(constant_mnist: Path) -> None:
    options = mnist_options(constant_mnist)
    model_input = InputSpec((1, 28, 28), mean=(0.0,), std=(1.0,))

    data = calibration_data(options, open_dataset(options), model_input, 10, CPU)

    x, y = next(iter(data.batches(0)))
    assert x.shape == (4, 1, 28, 28)
    value = 25 * y.float() / 255
    torch.testing.assert_close(x, value[:, None, None, None].expand_as(x), rtol=0, atol=1e-6)


def test_mean_with_wrong_channel_count_is_a_usage_error(constant_mnist: Path) -> None:
    options = mnist_options(constant_mnist, mean=(0.1, 0.2))

    with pytest.raises(UsageError, match="--mean"):
        calibration_data(options, open_dataset(options), InputSpec((3, 16, 16)), 10, CPU)


def test_mnist_labels_beyond_a_five_class_model_are_a_data_error(constant_mnist: Path) -> None:
    options = DataOptions(parse_data_spec("mnist"), constant_mnist, split="test", batch_size=10)

    data = calibration_data(options, open_dataset(options), InputSpec((1, 28, 28)), 5, CPU)

    with pytest.raises(DataError, match="5 classes"):
        list(data.batches(0))


def test_image_folder_for_a_grey_8px_model(image_folder) -> None:
    root, _ = image_folder
    options = DataOptions(parse_data_spec(f"imagefolder:{root}"), root, batch_size=2, batches=2)

    data = calibration_data(options, open_dataset(options), InputSpec((1, 8, 8)), 3, CPU)

    shapes = [tuple(x.shape) for x, _ in data.batches(0)]
    assert shapes == [(2, 1, 8, 8), (2, 1, 8, 8)]


def test_synthetic_spec_gives_synthetic_data_of_the_model_shape(tmp_path: Path) -> None:
    options = DataOptions(parse_data_spec("synthetic"), tmp_path, batch_size=2, batches=1, seed=3)

    data = calibration_data(options, open_dataset(options), InputSpec((1, 12, 12)), 4, CPU)

    assert isinstance(data, SyntheticData)
    x, y = next(iter(data.batches(0)))
    assert x.shape == (2, 1, 12, 12) and int(y.max()) < 4


# ---------------------------------------------------------------- shards under torchrun


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_read_disjoint_shards_that_together_are_the_single_process_batches(world_size) -> None:
    single = [x for x, _ in dataset_data(IndexImages(50), batch_size=4, n_batches=5, seed=3).batches(1)]
    datasets = [IndexImages(50) for _ in range(world_size)]
    shards = [
        [x for x, _ in dataset_data(d, 4, 5, seed=3, rank=r, world_size=world_size).batches(1)]
        for r, d in enumerate(datasets)
    ]

    for r, (shard, dataset) in enumerate(zip(shards, datasets, strict=True)):
        assert len(shard) == len(range(r, 5, world_size))
        assert all(torch.equal(a, single[i]) for a, i in zip(shard, range(r, 5, world_size), strict=True))
        assert sorted(dataset.reads) == sorted(int(v) for x in shard for v in x[:, 0, 0, 0])  # only its shard
    assert sum(len(d.reads) for d in datasets) == 20


def test_a_short_last_batch_stays_with_the_rank_that_would_have_read_it() -> None:
    ranks = [dataset_data(IndexImages(7), 2, 4, rank=r, world_size=2) for r in range(2)]

    assert [[len(y) for _, y in data.batches(0)] for data in ranks] == [[2, 2], [2, 1]]


@pytest.mark.parametrize("world_size", [2, 4])
def test_synthetic_shards_are_the_single_process_batches_dealt_out(world_size) -> None:
    def data(rank=0, world=1):
        return SyntheticData(
            spec="synthetic", batch_size=3, n_batches=5, seed=1, size=(1, 4, 4), rank=rank, world_size=world
        )

    single = list(data().batches(2))
    for r in range(world_size):
        shard = list(data(r, world_size).batches(2))
        expected = [single[i] for i in range(r, 5, world_size)]
        assert len(shard) == len(expected) == data(r, world_size).local_batches
        assert all(
            torch.equal(x, ex) and torch.equal(y, ey)
            for (x, y), (ex, ey) in zip(shard, expected, strict=True)
        )
