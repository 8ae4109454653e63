"""The training and test sets of a run that trains (``snipit train``, ``prune --finetune-epochs``),
and the record of how they were made, which the checkpoint keeps and ``--resume`` reuses."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from torch.utils.data import Dataset

from snipit_cli.data.build import DataOptions, model_transform, open_dataset, same_images
from snipit_cli.data.specs import DataSpec
from snipit_cli.data.training import EpochData, holdout_split, model_inputs
from snipit_cli.errors import DataError, UsageError
from snipit_cli.workflows.session import Session


@dataclass(frozen=True)
class TrainingDataOptions:
    """What a run trains on (``data``: spec, split, batch size) and what it is evaluated on."""

    data: DataOptions
    test_split: str | None = "test"  # of test_data if given, else of data; None: no evaluation
    holdout: float | None = None
    test_data: DataSpec | None = None
    # prune --finetune-epochs: with no test split apart from the training images, train unevaluated
    # (saying so in a note) rather than refuse.
    lenient_test: bool = False


@dataclass(frozen=True)
class TrainingSets:
    """Training and evaluation batches, their record (the checkpoint's ``training.data``), notes."""

    train: EpochData
    test: EpochData | None
    record: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def training_sets(options: TrainingDataOptions, session: Session) -> TrainingSets:
    """The session's dataset as training batches, and the test set: --holdout of it, else the
    --test-split of --test-data (else of --data), never the training images."""
    data, dataset = options.data, session.dataset
    transform = model_transform(data, dataset, session.input_spec)
    train = model_inputs(dataset, transform)
    test, notes = None, []
    record = data_record(options)
    test_spec = options.test_data or data.spec
    if options.holdout is not None:
        train, test = holdout_split(train, options.holdout, data.seed)
        record["test"] = f"{options.holdout} of {data.split}, held out (seed {data.seed})"
    elif options.test_split:
        opened, note = _open_test(options, dataset)
        notes += [note] if note else []
        if opened is not None:
            test = model_inputs(opened, transform)
            of = f" of {options.test_data}" if options.test_data else ""
            record["test"] = f"{options.test_split} split{of}"
    record["train_samples"] = len(train)
    record["test_samples"] = len(test) if test is not None else 0
    common = dict(batch_size=data.batch_size, seed=data.seed, device=session.device)
    common.update(num_classes=session.num_classes, workers=data.workers)
    train_data = EpochData(train, shuffle=True, name=str(data.spec), **common)
    test_data = EpochData(test, shuffle=False, name=str(test_spec), **common) if test is not None else None
    return TrainingSets(train_data, test_data, record, notes)


def _open_test(options: TrainingDataOptions, trained_on: Dataset) -> tuple[Dataset | None, str | None]:
    """The evaluation set, or (with ``lenient_test``) none and the note why for a missing or
    same-as-training split."""
    spec, split = options.test_data or options.data.spec, options.test_split
    assert split is not None
    try:
        test = open_dataset(replace(options.data, spec=spec, split=split))
    except DataError as exc:
        if options.lenient_test:
            return None, f"not evaluated: {exc}"
        hint = "" if options.test_data else "; to evaluate on other data pass --test-data SPEC, --holdout F"
        raise DataError(f"{exc}{hint}{' or --test-split none' if hint else ''}") from exc
    if same_images(test, trained_on):
        problem = f"evaluating on the {split} split of {spec} would reuse the training images"
        if spec.kind == "imagefolder":
            problem += ": a folder without train/ and test/ (or val/) sub-folders is a single split"
        else:
            problem += f" ({test.origin[0]})"
        if options.lenient_test:
            return None, f"not evaluated: {problem}"
        raise UsageError(f"{problem}; pass --test-data SPEC, --holdout F or --test-split none")
    trained_classes, test_classes = getattr(trained_on, "classes", None), getattr(test, "classes", None)
    if trained_classes and test_classes and trained_classes != test_classes:
        raise DataError(
            f"the class folders of {spec} ({split}) differ from those trained on: "
            f"{', '.join(test_classes[:5])} vs {', '.join(trained_classes[:5])}; labels would not match"
        )
    return test, None


def spec_text(spec: DataSpec) -> str:
    """A data spec as recorded: image folders by absolute path, so --resume finds them anywhere."""
    return f"imagefolder:{spec.path.resolve()}" if spec.kind == "imagefolder" and spec.path else str(spec)


def data_record(options: TrainingDataOptions) -> dict[str, Any]:
    """The data options of a run, as the checkpoint records them (what --resume reuses)."""
    data = options.data
    return {
        "data": spec_text(data.spec),
        "split": data.split,
        "data_root": str(data.root.expanduser().resolve()),
        "batch_size": data.batch_size,
        "holdout": options.holdout,
        "test_split": options.test_split,
        "test_data": spec_text(options.test_data) if options.test_data else None,
    }


def require_dataset(data: DataOptions) -> None:
    """Training needs real images: synthetic noise has nothing to learn."""
    if data.spec.kind == "synthetic":
        raise UsageError("snipit train needs a dataset: pass --data mnist|cifar10|...|imagefolder:PATH")
