"""``snipit prune`` as a library call: spec -> model + data -> scores -> masks -> checkpoint + report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import snipit_cli
from snipit_cli.criteria import create_criterion
from snipit_cli.data.build import DataOptions, calibration_data, dataset_input_spec, open_dataset
from snipit_cli.errors import ModelError, UsageError
from snipit_cli.fileio import check_writable, write_text_atomic
from snipit_cli.metrics.sparsity import layer_rows, param_totals
from snipit_cli.models.checkpoint import save_checkpoint
from snipit_cli.models.input_spec import InputSpec, Size, library_input_spec, probe_num_classes
from snipit_cli.models.loading import LoadedModel, resolve_model
from snipit_cli.pruning.engine import Progress, prune, schedule_for
from snipit_cli.pruning.targets import prunable_weights


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


@dataclass
class PruneRequest:
    """Everything ``snipit prune`` needs, already parsed and typed."""

    model: ModelOptions
    data: DataOptions
    method: str = "snip-it"
    sparsity: float = 0.9
    steps: int = 5
    exclude: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    output: Path | None = None
    report: Path | None = None
    force: bool = False


def run_prune(request: PruneRequest, progress: Progress | None = None) -> dict[str, Any]:
    """Prune, write the checkpoint and the report; return the report document."""
    started = time.perf_counter()
    criterion = create_criterion(request.method)
    schedule = schedule_for(criterion, request.sparsity, request.steps)
    torch.manual_seed(request.seed)  # model initialisation is part of what --seed fixes
    loaded = load(request.model)
    output, report_path = output_paths(request, loaded)
    device = resolve_device(request.device)

    dataset = open_dataset(request.data)
    model_input = resolve_input_spec(request.model.input_size, loaded, dataset_input_spec(dataset))
    model = loaded.model.to(device)
    num_classes = probe_num_classes(model, model_input.size, device)
    data = calibration_data(request.data, dataset, model_input, num_classes, device)
    weights = prunable_weights(model, request.exclude)

    result = prune(model, weights, criterion, data.batches, schedule, data.n_batches, request.seed, progress)
    model.to("cpu")

    document = {
        "snipit_version": snipit_cli.__version__,
        "model": {
            "source": loaded.source,
            "arch": loaded.arch.to_json() if loaded.arch else None,
            "input_size": list(model_input.size),
            "input_size_from": model_input.source,
            "mean": list(model_input.mean) if model_input.mean else None,
            "std": list(model_input.std) if model_input.std else None,
            "num_classes": num_classes,
            "pretrained": request.model.pretrained,
        },
        "method": criterion.name,
        "structured": False,
        "schedule": result.schedule,
        "sparsity": {"target": request.sparsity, "achieved": result.achieved_sparsity},
        "exclude": list(request.exclude),
        "seed": request.seed,
        "calibration": _calibration_doc(data.describe(), request.data, criterion.needs_data, len(schedule)),
    }
    save_checkpoint(model, output, document)
    rows = layer_rows(model, request.exclude)
    report = {
        **document,
        "params": param_totals(model, rows),
        "layers": rows,
        "output": str(output),
        "report": str(report_path),
        "device": str(device),
        "notes": data.notes,
        "seconds": round(time.perf_counter() - started, 3),
    }
    write_text_atomic(report_path, json.dumps(report, indent=2) + "\n")
    return report


def load(options: ModelOptions) -> LoadedModel:
    """Resolve the model options into a loaded model."""
    return resolve_model(
        options.spec,
        arch=options.arch,
        arch_kwargs=options.arch_kwargs,
        num_classes=options.num_classes,
        pretrained=options.pretrained,
        trust_pickle=options.trust_pickle,
    )


def output_paths(request: PruneRequest, loaded: LoadedModel) -> tuple[Path, Path]:
    """Checkpoint and report paths, checked before any work is done."""
    output = request.output or Path(f"{loaded.name}-pruned.safetensors")
    if output.suffix != ".safetensors":
        raise UsageError(f"-o/--output must end in .safetensors, got {output}")
    report = request.report or output.with_name(f"{output.stem}.report.json")
    inputs = (loaded.path,) if loaded.path else ()
    if report.resolve() == output.resolve():
        raise UsageError("--report and -o/--output must be different files")
    for path in (output, report):
        check_writable(path, request.force, inputs)
    return output, report


def resolve_input_spec(explicit: Size | None, loaded: LoadedModel, from_data: InputSpec | None) -> InputSpec:
    """Input size by precedence: --input-size, checkpoint metadata, model library, dataset."""
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
    if explicit is not None:
        base = known or from_data
        return InputSpec(explicit, base.mean if base else None, base.std if base else None, "--input-size")
    if known is not None:
        return known
    if from_data is not None:
        return from_data
    raise ModelError("cannot tell what input size this model takes; pass --input-size C,H,W (e.g. 3,32,32)")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an unavailable device is a usage error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA GPU is available; use --device cpu")
    return device


def _calibration_doc(
    described: dict[str, Any], options: DataOptions, needs_data: bool, n_steps: int
) -> dict[str, Any]:
    steps_read = n_steps if needs_data else 0
    return {
        **described,
        "split": options.split if options.spec.kind != "synthetic" else None,
        "seed": options.seed,
        "scoring_rounds": steps_read,
        "passes": steps_read * described["batches"],
        "samples_read": steps_read * described["samples"],
    }
