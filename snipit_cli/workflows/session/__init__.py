"""What every command needs, written once: the model, its device, its input, the data, the outputs.

``prune``, ``train`` and ``report``/``compare`` build their run the same way: :func:`load` the
model, do their own checks (outputs, ``--exclude``, ``--resume``) while nothing is expensive yet,
then :func:`open_session` opens the data, settles the input size and moves the model to its device.
The ``training_*`` modules add what the two commands that train share (``train`` and
``prune --finetune-epochs``): the training and test sets, the checkpoint and its state side file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from snipit_cli.criteria import Criterion, UnitCriterion, create_criterion
from snipit_cli.data.build import DataOptions, applied_input_spec, dataset_input_spec, open_dataset
from snipit_cli.errors import ModelError, UsageError
from snipit_cli.fileio import check_writable
from snipit_cli.models.encodings import OutputFormat
from snipit_cli.models.input_spec import InputSpec, Size, library_input_spec, probe_num_classes
from snipit_cli.models.loading import LoadedModel, resolve_model

#: Report keys that describe the run rather than the checkpoint; the metadata omits them.
RUN_ONLY_KEYS = ("params", "layers", "output", "report", "device", "notes", "seconds", "storage")

#: The criterion of ``--method``/``--prune-method`` when none is named, by what is pruned.
DEFAULT_METHOD = {"weights": "snip-it", "units": "snap-it"}


@dataclass
class ModelOptions:
    """How to find the model: the MODEL argument and the options that qualify it."""

    spec: str
    arch: str | None = None
    arch_kwargs: dict[str, Any] | None = None
    num_classes: int | None = None
    pretrained: bool = False
    trust_pickle: bool = False
    input_size: Size | None = None


@dataclass(frozen=True)
class Session:
    """A command's model, ready to run: on its device, its input settled, its data opened."""

    loaded: LoadedModel
    model: nn.Module  # loaded.model, on ``device``
    device: torch.device
    input_spec: InputSpec  # with the mean/std the data transform applies, when data was opened
    num_classes: int
    dataset: Dataset | None  # None: synthetic data, or none asked for


def load(options: ModelOptions, *, name_in_errors: bool = False) -> LoadedModel:
    """Resolve the model options into a loaded model. ``name_in_errors`` prefixes a load error with
    the model's spec, for commands that load several (``compare``) and must say which failed."""
    try:
        return resolve_model(
            options.spec,
            arch=options.arch,
            arch_kwargs=options.arch_kwargs,
            num_classes=options.num_classes,
            pretrained=options.pretrained,
            trust_pickle=options.trust_pickle,
        )
    except ModelError as exc:
        if not name_in_errors:
            raise
        raise ModelError(f"cannot load {options.spec}: {exc}") from exc


def open_session(
    loaded: LoadedModel, *, device: torch.device, data: DataOptions | None, input_size: Size | None
) -> Session:
    """Open ``data`` (None: no dataset), settle the input spec, move the model to ``device`` and
    probe it once: a wrong input size or a model that is not a classifier fails here, before any
    work. The input spec records the normalisation the data really gets (--mean/--std included)."""
    dataset = open_dataset(data) if data is not None else None
    model_input = resolve_input_spec(input_size, loaded, dataset_input_spec(dataset))
    model = loaded.model.to(device)
    num_classes = probe_num_classes(model, model_input.size, device)
    if dataset is not None:
        model_input = applied_input_spec(data, dataset, model_input)
    return Session(loaded, model, device, model_input, num_classes, dataset)


def pruning_criterion(method: str | None, structured: bool) -> Criterion | UnitCriterion:
    """The criterion a run prunes with: ``method``, else snip-it (snap-it with --structured)."""
    level = "units" if structured else "weights"
    return create_criterion(method or DEFAULT_METHOD[level], level)


def model_document(loaded: LoadedModel, model_input: InputSpec, num_classes: int, pretrained: bool) -> dict:
    """How to rebuild the model and feed it: the ``model`` block of every checkpoint's metadata."""
    return {
        "source": loaded.source,
        "arch": loaded.arch.to_json() if loaded.arch else None,
        "input_size": list(model_input.size),
        "input_size_from": model_input.source,
        "mean": list(model_input.mean) if model_input.mean else None,
        "std": list(model_input.std) if model_input.std else None,
        "num_classes": num_classes,
        "pretrained": pretrained,
    }


def checkpoint_output(given: Path | None, loaded: LoadedModel, verb: str) -> Path:
    """``-o/--output``, by default ``<model>-<verb>.safetensors``: snipit writes safetensors only."""
    output = given or Path(f"{loaded.name}-{verb}.safetensors")
    if output.suffix != ".safetensors":
        raise UsageError(
            f"-o/--output must end in .safetensors, got {output}; for a hub-style folder write "
            f"-o {output}/ or pass --format hf"
        )
    return output


def output_folder(
    given: Path | None, loaded: LoadedModel, verb: str, format: OutputFormat | None
) -> Path | None:
    """The hub-style folder to write, if any: ``--format hf`` (default ``<model>-<verb>/``), or an
    ``-o`` that names an existing folder (the CLI passes ``-o DIR/`` as ``--format hf``)."""
    names_folder = given is not None and given.is_dir() and given.suffix != ".safetensors"
    if format == "safetensors" or (format is None and not names_folder):
        return None  # a folder named *.safetensors is refused as a file target ("name a file")
    folder = given or Path(f"{loaded.name}-{verb}")
    if folder.suffix == ".safetensors":
        raise UsageError(
            f"--format hf writes a folder, but -o names a .safetensors file ({folder}); "
            f"pass -o {folder.with_suffix('')}/ or drop --format hf"
        )
    return folder


def claim_folder(folder: Path, *, force: bool, inputs: Sequence[Path | None] = ()) -> None:
    """Check a hub-style output folder before any work (see ``fileio.check_writable``)."""
    check_writable(folder, force, tuple(p for p in inputs if p is not None), folder=True)


def claim_outputs(outputs: Sequence[Path], *, force: bool, inputs: Sequence[Path | None] = ()) -> None:
    """Check every output before any work: writable, none of the input files, not there unless --force."""
    read = tuple(p for p in inputs if p is not None)
    for path in outputs:
        check_writable(path, force, read)


def resolve_input_spec(explicit: Size | None, loaded: LoadedModel, from_data: InputSpec | None) -> InputSpec:
    """Input size by precedence: --input-size, checkpoint metadata, model library, dataset (whose
    size is ``()`` when its images disagree); mean/std the model's, else the dataset's — what the
    data transform applies unless --mean/--std say otherwise, so the record shows them."""
    recorded = (loaded.metadata or {}).get("model") or {}
    known = library_input_spec(loaded.model, loaded.arch)
    if recorded.get("input_size"):
        mean, std = recorded.get("mean"), recorded.get("std")
        known = InputSpec(
            tuple(recorded["input_size"]),
            tuple(mean) if mean else None,
            tuple(std) if std else None,
            "checkpoint metadata",
        )
    stats = next((s for s in (known, from_data) if s is not None and s.mean and s.std), None)
    mean, std = (stats.mean, stats.std) if stats else (None, None)
    if explicit is not None:
        return InputSpec(explicit, mean, std, "--input-size")
    if known is not None:
        return InputSpec(known.size, mean, std, known.source)
    if from_data is not None and from_data.size:
        return from_data
    why = f" ({from_data.source})" if from_data is not None else ""
    raise ModelError(
        f"cannot tell what input size this model takes{why}; pass --input-size C,H,W (e.g. 3,32,32)"
    )


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; anything but ``cpu``, ``cuda`` or an existing ``cuda:N``
    is a usage error (torch would accept ``meta``, ``mps``, ``xla``... and fail later, mid-run).

    On CUDA, cuDNN is put in deterministic mode so the same seed gives the same masks.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index not in (None, 0)):
        raise UsageError(f"--device {name} is not supported; snipit runs on auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UsageError(
                f"--device {name} asked for, but this machine has {count} CUDA GPU(s): cuda:0 to "
                f"cuda:{count - 1}"
            )
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return device
