"""``snipit train`` as a library call: train or fine-tune a dense, masked or slim model, and
optionally prune it while it trains (the paper's Algorithm 1), then write a checkpoint.

Pruned weights stay exactly zero (masks are re-applied after every optimizer step); slim models
keep their shapes; SNAP-it during training shrinks the model between epochs and the optimizer
state follows the surgery. Training state (optimizer moments, step, history) goes to a
safetensors side file so ``--resume`` continues where a run stopped: the checkpoint's ``training``
block records the data, optimizer and pruning options, which a resumed run reuses.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

import snipit_cli
from snipit_cli.criteria import create_criterion
from snipit_cli.data.build import (
    DataOptions,
    applied_input_spec,
    dataset_input_spec,
    model_transform,
    open_dataset,
    same_images,
)
from snipit_cli.data.calibration import DatasetData
from snipit_cli.data.specs import DataSpec, parse_data_spec
from snipit_cli.data.training import EpochData, holdout_split, model_inputs
from snipit_cli.errors import DataError, ModelError, UsageError
from snipit_cli.fileio import check_writable, write_all_atomic
from snipit_cli.metrics.accuracy import evaluate
from snipit_cli.metrics.macs import count_macs
from snipit_cli.metrics.sparsity import count_params, layer_rows, param_totals
from snipit_cli.models.arch import ArchSpec
from snipit_cli.models.checkpoint import Storage, checkpoint_writer
from snipit_cli.models.dtypes import SUPPORTED_TEXT, unsupported
from snipit_cli.models.input_spec import InputSpec, probe_num_classes
from snipit_cli.models.loading import LoadedModel
from snipit_cli.pruning.engine import MIN_LAYER_DENSITY, current_masks, prune
from snipit_cli.pruning.masks import apply_masks, count_kept
from snipit_cli.pruning.schedule import schedule_for
from snipit_cli.pruning.structured.options import StructuredOptions
from snipit_cli.pruning.structured.slim import count_units, kept_indices, slim_model
from snipit_cli.pruning.targets import check_exclude, prunable_weights
from snipit_cli.training.loop import EpochProgress, NullEpochProgress, train_epoch
from snipit_cli.training.optim import (
    OptimizerOptions,
    load_state_by_name,
    lr_at,
    make_optimizer,
    slice_state,
    state_by_name,
)
from snipit_cli.workflows.prune import (
    DEFAULT_METHOD,
    RUN_ONLY_KEYS,
    ModelOptions,
    load,
    model_document,
    resolve_device,
    resolve_input_spec,
    resolve_storage,
)

STATE_KEY = "snipit_train_state"


@dataclass
class PruneWhileTraining:
    """``--prune-method``: step k_i of the method's schedule at epochs D, D+F, D+2F, ...

    F = 0 runs every step at epoch D, back to back: with D = 0 that is pruning at initialisation.
    """

    method: str | None = None
    sparsity: float = 0.9
    delay: int = 0
    freq: int = 1
    steps: int | None = None
    structured: StructuredOptions | None = None
    batches: int = 5
    allow_collapse: bool = False

    def __post_init__(self) -> None:
        if self.delay < 0 or self.freq < 0:
            raise UsageError("--prune-delay and --prune-freq must be 0 or more")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> PruneWhileTraining:
        """The options as ``asdict`` wrote them into a checkpoint's pruning record."""
        structured = doc.get("structured")
        return cls(**{**doc, "structured": StructuredOptions(**structured) if structured else None})


@dataclass
class TrainRequest:
    """Everything ``snipit train`` needs, parsed and typed."""

    model: ModelOptions
    data: DataOptions  # split/batch size of the training data; .batches = calibration batches
    epochs: int
    optimizer: OptimizerOptions = field(default_factory=OptimizerOptions)
    test_split: str | None = "test"  # of test_data if given, else of data; None: no evaluation
    holdout: float | None = None
    test_data: DataSpec | None = None
    prune: PruneWhileTraining | None = None
    exclude: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "auto"
    output: Path | None = None
    force: bool = False
    resume: bool = False
    checkpoint_every: int = 0  # 0: only at the end, so an interrupted run leaves no output
    storage: Storage | None = None  # default: sparse when the model has pruned (zero) weights
    # Options the user set; with --resume the others come from the checkpoint. None: all of them.
    given: frozenset[str] | None = None
    # prune --finetune-epochs: with no test split apart from the training images, train unevaluated
    # (saying so in a note) rather than refuse.
    lenient_test: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--epochs must be at least 1, got {self.epochs}")
        if self.checkpoint_every < 0:
            raise UsageError("--checkpoint-every must be 0 (only at the end) or more")
        if self.test_data is not None and self.holdout is not None:
            raise UsageError("--test-data and --holdout both say what to evaluate on; pass one of them")
        if self.test_data is not None and self.test_split is None:
            raise UsageError("--test-data is evaluated on its --test-split; drop --test-split none")


@dataclass
class TrainOutcome:
    model: nn.Module
    report: dict[str, Any]


@dataclass
class _Run:
    """Mutable state of one training run."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    weights: dict[str, nn.Parameter]
    masks: dict[str, torch.Tensor]
    step: int = 0
    epochs_done: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    pruning: dict[str, Any] | None = None
    slim: dict[str, Any] | None = None


def state_path(checkpoint: Path) -> Path:
    """Where the training state of ``checkpoint`` lives: ``<stem>.train-state.safetensors``."""
    return checkpoint.with_name(f"{checkpoint.stem}.train-state.safetensors")


def run_train(
    request: TrainRequest,
    progress: EpochProgress | None = None,
    loaded: LoadedModel | None = None,
) -> TrainOutcome:
    """Train, writing the checkpoint every ``checkpoint_every`` epochs and at the end.

    ``loaded`` lets ``snipit prune --finetune-epochs`` hand over the model it just pruned.
    """
    started = time.perf_counter()
    progress = progress or NullEpochProgress()
    torch.manual_seed(request.seed)
    loaded = loaded or load(request.model)
    output, state_file = _output_paths(request, loaded)
    resumed = _read_resume(request, loaded)
    if resumed:
        request = _resumed_request(request, resumed, loaded.source)
    check_exclude(loaded.model, request.exclude)
    device = resolve_device(request.device)

    if request.data.spec.kind == "synthetic":
        raise UsageError("snipit train needs a dataset: pass --data mnist|cifar10|...|imagefolder:PATH")
    dataset = open_dataset(request.data)
    model_input = resolve_input_spec(request.model.input_size, loaded, dataset_input_spec(dataset))
    model = loaded.model.to(device)
    num_classes = probe_num_classes(model, model_input.size, device)
    model_input = applied_input_spec(request.data, dataset, model_input)
    train_data, test_data, data_doc, notes = _datasets(request, dataset, model_input, num_classes, device)

    weights = prunable_weights(model, request.exclude)
    masks = current_masks(weights)
    run = _Run(model, make_optimizer(model, request.optimizer), weights, masks)
    metadata = {k: v for k, v in (loaded.metadata or {}).items() if k not in RUN_ONLY_KEYS}
    run.slim = metadata.get("slim")
    if resumed:
        _restore(run, resumed, loaded.path)
    pruner = _Pruner(request, loaded, model_input, train_data, device, run) if request.prune else None
    total_steps = request.epochs * train_data.n_batches

    for epoch in range(run.epochs_done, request.epochs):
        epoch_started = time.perf_counter()
        if pruner is not None:
            pruner.maybe_prune(epoch)
        progress.start_epoch(epoch, request.epochs, train_data.n_batches)
        trained = train_epoch(
            run.model,
            batches=train_data.batches(epoch),
            optimizer=run.optimizer,
            lr_for_step=lambda step: lr_at(request.optimizer, step, total_steps),
            first_step=run.step,
            weights=run.weights,
            masks=run.masks,
            progress=progress,
        )
        run.step = int(trained["steps"])
        run.epochs_done = epoch + 1
        record = _epoch_record(run, epoch, trained, test_data, request, total_steps, epoch_started)
        run.history.append(record)
        progress.end_epoch(record)
        last = run.epochs_done == request.epochs
        if last or (request.checkpoint_every and run.epochs_done % request.checkpoint_every == 0):
            document = _document(metadata, loaded, model_input, num_classes, request, run, data_doc)
            _write(output, state_file, run, document, request.storage)
    run.model.to("cpu").eval()

    document = _document(metadata, loaded, model_input, num_classes, request, run, data_doc)
    rows = layer_rows(run.model, request.exclude)
    report = {
        **document,
        "params": param_totals(run.model, rows),
        "output": str(output),
        "state": str(state_file),
        "device": str(device),
        "storage": resolve_storage(request.storage, run.model),
        "notes": notes,
        "seconds": round(time.perf_counter() - started, 3),
    }
    return TrainOutcome(run.model, report)


def finetune(
    pruned: nn.Module, report: dict[str, Any], request: TrainRequest, progress: EpochProgress | None = None
) -> TrainOutcome:
    """``snipit prune --finetune-epochs``: train the model prune just wrote, in memory, and replace
    its checkpoint with the fine-tuned one (the pruned checkpoint stays if training fails)."""
    arch = (report.get("model") or {}).get("arch")
    metadata = {k: v for k, v in report.items() if k not in RUN_ONLY_KEYS}
    loaded = LoadedModel(
        pruned, report["model"]["source"], ArchSpec.from_json(arch) if arch else None, metadata
    )
    return run_train(replace(request, force=True), progress, loaded)


# ---------------------------------------------------------------- data


def _datasets(request, dataset, model_input: InputSpec, num_classes: int, device):
    """Training and evaluation sets as model inputs, how they were made (for the record and for
    --resume), and notes."""
    transform = model_transform(request.data, dataset, model_input)
    train = model_inputs(dataset, transform)
    test, notes = None, []
    doc = _data_record(request)
    test_spec = request.test_data or request.data.spec
    if request.holdout is not None:
        train, test = holdout_split(train, request.holdout, request.data.seed)
        doc["test"] = f"{request.holdout} of {request.data.split}, held out (seed {request.data.seed})"
    elif request.test_split:
        opened = _open_test(request, dataset, notes)
        if opened is not None:
            test = model_inputs(opened, transform)
            of = f" of {request.test_data}" if request.test_data else ""
            doc["test"] = f"{request.test_split} split{of}"
    doc["train_samples"] = len(train)
    doc["test_samples"] = len(test) if test is not None else 0
    common = dict(batch_size=request.data.batch_size, seed=request.data.seed, device=device)
    common.update(num_classes=num_classes, workers=request.data.workers)
    train_data = EpochData(train, shuffle=True, name=str(request.data.spec), **common)
    test_data = EpochData(test, shuffle=False, name=str(test_spec), **common) if test is not None else None
    return train_data, test_data, doc, notes


def _open_test(request: TrainRequest, trained_on, notes: list[str]):
    """The evaluation set: --test-split of --test-data (else of --data), never the training images.

    With ``lenient_test`` a missing or same-as-training split leaves the run unevaluated, with a note.
    """
    spec, split = request.test_data or request.data.spec, request.test_split
    assert split is not None
    try:
        test = open_dataset(replace(request.data, spec=spec, split=split))
    except DataError as exc:
        if request.lenient_test:
            notes.append(f"not evaluated: {exc}")
            return None
        hint = "" if request.test_data else "; to evaluate on other data pass --test-data SPEC, --holdout F"
        raise DataError(f"{exc}{hint}{' or --test-split none' if hint else ''}") from exc
    if same_images(test, trained_on):
        problem = f"evaluating on the {split} split of {spec} would reuse the training images"
        if spec.kind == "imagefolder":
            problem += ": a folder without train/ and test/ (or val/) sub-folders is a single split"
        else:
            problem += f" ({test.origin[0]})"
        if request.lenient_test:
            notes.append(f"not evaluated: {problem}")
            return None
        raise UsageError(f"{problem}; pass --test-data SPEC, --holdout F or --test-split none")
    trained_classes, test_classes = getattr(trained_on, "classes", None), getattr(test, "classes", None)
    if trained_classes and test_classes and trained_classes != test_classes:
        raise DataError(
            f"the class folders of {spec} ({split}) differ from those trained on: "
            f"{', '.join(test_classes[:5])} vs {', '.join(trained_classes[:5])}; labels would not match"
        )
    return test


def _spec_text(spec: DataSpec) -> str:
    """A data spec as recorded: image folders by absolute path, so --resume finds them anywhere."""
    return f"imagefolder:{spec.path.resolve()}" if spec.kind == "imagefolder" and spec.path else str(spec)


def _data_record(request: TrainRequest) -> dict[str, Any]:
    """The data options of a run, as the checkpoint records them (what --resume reuses)."""
    data = request.data
    return {
        "data": _spec_text(data.spec),
        "split": data.split,
        "data_root": str(data.root.expanduser().resolve()),
        "batch_size": data.batch_size,
        "holdout": request.holdout,
        "test_split": request.test_split,
        "test_data": _spec_text(request.test_data) if request.test_data else None,
    }


# ---------------------------------------------------------------- resume

#: Options a resumed run must share with the recorded one: they decide what it trains on (and the
#: optimizer state fits one optimizer). The other recorded options are defaults the user may override.
FIXED_ON_RESUME = {"data": "--data", "split": "--split", "holdout": "--holdout", "seed": "--seed"}
FIXED_ON_RESUME |= {"optimizer": "--optimizer", "prune": "--prune-method and its options"}
FIXED_ON_RESUME |= {"exclude": "--exclude"}
_DATA_KEYS = ("data", "split", "data_root", "batch_size", "holdout", "test_split", "test_data")


def _options_view(request: TrainRequest) -> dict[str, Any]:
    """The resumable options of a request, in the record's JSON terms."""
    optimizer = request.optimizer
    return {
        **_data_record(request),
        "seed": request.seed,
        "exclude": list(request.exclude),
        "optimizer": optimizer.name,
        "lr": optimizer.base_lr,
        "momentum": optimizer.momentum,
        "weight_decay": optimizer.weight_decay,
        "lr_schedule": optimizer.lr_schedule,
        "prune": asdict(request.prune) if request.prune else None,
    }


def _recorded_view(training: dict[str, Any]) -> dict[str, Any]:
    """The same options as the checkpoint's training block recorded them (older files: fewer)."""
    view = {k: v for k, v in (training.get("data") or {}).items() if k in _DATA_KEYS}
    optimizer = training.get("optimizer") or {}
    view |= {k: optimizer[k] for k in ("lr", "momentum", "weight_decay", "lr_schedule") if k in optimizer}
    if "name" in optimizer:
        view["optimizer"] = optimizer["name"]
    view |= {k: training[k] for k in ("seed", "exclude") if k in training}
    pruning = training.get("pruning") or {}
    if "options" in pruning:
        view["prune"] = pruning["options"]
    return view


def _resumed_request(request: TrainRequest, training: dict[str, Any], source: str) -> TrainRequest:
    """``request`` with the options the user did not set taken from the record; refuses a set one
    that would change what the run trains on."""
    current, recorded = _options_view(request), _recorded_view(training)
    given = set(current) if request.given is None else set(request.given)
    for name, flag in FIXED_ON_RESUME.items():
        if name not in given or name not in recorded:
            continue
        if _comparable(name, current[name]) != _comparable(name, recorded[name]):
            raise UsageError(
                f"{source} was trained with {flag} {_shown(recorded[name])}, not {_shown(current[name])}; "
                f"--resume continues that run: drop {flag.split()[0]} (or train afresh without --resume)"
            )
    take = {name: value for name, value in recorded.items() if name not in given}
    return _with_options(request, take)


def _comparable(name: str, value: Any) -> Any:
    if name == "data" and value is not None:
        return _spec_text(parse_data_spec(value))
    return json.loads(json.dumps(value))  # tuples and lists alike, as the record has them


def _shown(value: Any) -> str:
    return "none" if value is None else str(value) if not isinstance(value, dict) else json.dumps(value)


def _with_options(request: TrainRequest, values: dict[str, Any]) -> TrainRequest:
    """``request`` with recorded option values (``_options_view`` names) put in."""
    data, optimizer = request.data, request.optimizer
    data = replace(
        data,
        spec=parse_data_spec(values["data"]) if "data" in values else data.spec,
        split=values.get("split", data.split),
        root=Path(values["data_root"]) if "data_root" in values else data.root,
        batch_size=values.get("batch_size", data.batch_size),
        seed=values.get("seed", data.seed),
    )
    optimizer = replace(
        optimizer,
        name=values.get("optimizer", optimizer.name),
        lr=values.get("lr", optimizer.lr),
        momentum=values.get("momentum", optimizer.momentum),
        weight_decay=values.get("weight_decay", optimizer.weight_decay),
        lr_schedule=values.get("lr_schedule", optimizer.lr_schedule),
    )
    test_data = values.get("test_data", _spec_text(request.test_data) if request.test_data else None)
    prune = values.get("prune", asdict(request.prune) if request.prune else None)
    return replace(
        request,
        data=data,
        optimizer=optimizer,
        holdout=values.get("holdout", request.holdout),
        test_split=values.get("test_split", request.test_split),
        test_data=parse_data_spec(test_data) if test_data else None,
        seed=values.get("seed", request.seed),
        exclude=list(values.get("exclude", request.exclude)),
        prune=PruneWhileTraining.from_json(prune) if prune else None,
    )


# ---------------------------------------------------------------- pruning while training


class _Pruner:
    """Prunes step i of the schedule at epoch ``delay + i * freq`` (before that epoch trains)."""

    def __init__(self, request: TrainRequest, loaded, model_input, train_data: EpochData, device, run: _Run):
        options = request.prune
        assert options is not None
        self.request, self.loaded, self.size, self.run = request, loaded, model_input.size, run
        self.options = options
        level = "units" if options.structured else "weights"
        self.criterion = create_criterion(options.method or DEFAULT_METHOD[level], level)
        self.schedule = schedule_for(self.criterion, options.sparsity, options.steps)
        self.epochs = [options.delay + i * options.freq for i in range(len(self.schedule))]
        if self.epochs[-1] >= request.epochs:
            raise UsageError(
                f"{len(self.schedule)} pruning steps at --prune-delay {options.delay} and --prune-freq "
                f"{options.freq} end at epoch {self.epochs[-1] + 1}, past --epochs {request.epochs}; "
                "train longer or prune more often"
            )
        self.calibration = DatasetData(
            spec=f"{request.data.spec} ({request.data.split}, training data)",
            batch_size=request.data.batch_size,
            n_batches=options.batches,
            seed=request.data.seed,
            device=device,
            dataset=train_data.dataset,
            transform=_identity,
            num_classes=train_data.num_classes,
        )
        self.done = run.pruning["events"] if run.pruning else []
        self.held: list[str] = run.pruning.get("collapse_held", []) if run.pruning else []
        self.dense_amount = run.pruning["dense_amount"] if run.pruning else self._amount()
        # Units per group before the first event: --min-keep is a share of these at every event.
        self.dense_units: dict[str, int] = (run.pruning or {}).get("dense_units") or {}
        run.pruning = self._doc()

    def maybe_prune(self, epoch: int) -> None:
        """Run the schedule's steps due at ``epoch`` that have not run yet (all of them with F = 0)."""
        for step, due in enumerate(self.epochs):
            if due != epoch or step < len(self.done):
                continue
            fraction = self.schedule[step]
            if self.options.structured:
                achieved = self._prune_units(fraction, step)
            else:
                achieved = self._prune_weights(fraction, step)
            self.done.append({"epoch": epoch, "step": step, "target": fraction, "achieved": achieved})
        self.run.pruning = self._doc()

    def _prune_weights(self, fraction: float, step: int) -> float:
        run = self.run
        result = prune(
            run.model,
            weights=run.weights,
            criterion=self.criterion,
            batches_for_step=lambda _: self.calibration.batches(step),
            schedule=[fraction],
            n_batches=self.calibration.n_batches,
            seed=self.request.seed + step,
            input_size=self.size,
            min_layer_density=None if self.options.allow_collapse else MIN_LAYER_DENSITY,
        )
        self.held += [n for n in result.held_layers if n not in self.held]
        run.masks = result.masks
        _reset_pruned_state(run)
        return result.achieved_sparsity

    def _prune_units(self, fraction: float, step: int) -> float:
        """Slim the model to ``fraction`` of the dense model's units (params, MACs), in place."""
        run, options = self.run, self.options
        assert options.structured is not None
        now = self._amount()
        relative = 1 - (1 - fraction) * self.dense_amount / now
        if relative <= 0:
            return 1 - now / self.dense_amount
        state = state_by_name(run.model, run.optimizer)
        outcome = slim_model(
            run.model,
            arch=self.loaded.arch,
            criterion=self.criterion,
            data=_OneStep(self.calibration, step),
            schedule=[relative],
            size=self.size,
            options=options.structured,
            exclude=self.request.exclude,
            seed=self.request.seed + step,
            dense_units=self.dense_units,
        )
        self.dense_units = {**outcome.group_sizes, **self.dense_units}  # the first width seen stays
        kept = kept_indices(outcome, self.size, self.request.exclude)
        shapes = {n: p.shape for n, p in run.model.named_parameters()}
        run.optimizer = make_optimizer(run.model, self.request.optimizer)
        load_state_by_name(run.model, run.optimizer, slice_state(state, kept, shapes))
        run.weights = prunable_weights(run.model, self.request.exclude)
        run.masks = current_masks(run.weights)
        run.slim = outcome.record
        return 1 - self._amount() / self.dense_amount

    def _amount(self) -> float:
        """What --sparsity counts, in the model as it is now."""
        if not self.options.structured:
            return float(sum(w.numel() for w in self.run.weights.values()))
        target = self.options.structured.target
        if target == "params":
            return float(count_params(self.run.model))
        if target == "macs":
            return float(count_macs(self.run.model, self.size))
        return float(count_units(self.run.model, self.size, self.request.exclude))

    def _doc(self) -> dict[str, Any]:
        return {
            "method": self.criterion.name,
            "structured": self.options.structured is not None,
            "of": self.options.structured.target if self.options.structured else "weights",
            "sparsity": self.options.sparsity,
            "schedule": self.schedule,
            "epochs": self.epochs,
            "events": self.done,
            "dense_amount": self.dense_amount,
            "dense_units": self.dense_units,
            "collapse_held": self.held,
            "calibration": {"batches": self.options.batches, "batch_size": self.request.data.batch_size},
            "options": asdict(self.options),
        }


class _OneStep:
    """Calibration data whose every round reads the batches of one pruning event."""

    def __init__(self, data: DatasetData, step: int):
        self.data, self.step, self.n_batches = data, step, data.n_batches
        self.local_batches = data.local_batches

    def batches(self, _round: int):
        return self.data.batches(self.step)


def _identity(x):
    return x


def _reset_pruned_state(run: _Run) -> None:
    """Zero the optimizer moments of newly pruned weights: they must not leak into kept ones."""
    for name, w in run.weights.items():
        for value in run.optimizer.state.get(w, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == w.shape:
                value.mul_(run.masks[name].to(value.dtype))
    apply_masks(run.weights, run.masks)


# ---------------------------------------------------------------- records and files


def _epoch_record(run: _Run, epoch, trained, test_data, request, total_steps, started) -> dict[str, Any]:
    evaluated = evaluate(run.model, batches=test_data.batches(0)) if test_data is not None else None
    total = sum(m.numel() for m in run.masks.values())
    return {
        "epoch": epoch + 1,
        "lr": lr_at(request.optimizer, run.step, total_steps),
        "train_loss": trained["loss"],
        "train_top1": trained["top1"],
        "test_top1": evaluated["top1"] if evaluated else None,
        "test_top5": evaluated["top5"] if evaluated else None,
        "test_loss": evaluated["loss"] if evaluated else None,
        "weight_sparsity": (total - count_kept(run.masks)) / total,
        "params": count_params(run.model),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _document(metadata, loaded, model_input, num_classes, request, run: _Run, data_doc) -> dict[str, Any]:
    """The checkpoint's metadata: what the input said, plus the pruning and training done here."""
    doc = dict(metadata)
    doc["snipit_version"] = snipit_cli.__version__
    doc.setdefault("model", model_document(loaded, model_input, num_classes, request.model.pretrained))
    # the normalisation this run applied (an input checkpoint may have recorded none)
    doc["model"] = {**doc["model"], "mean": list(model_input.mean), "std": list(model_input.std)}
    if run.slim:
        doc["slim"] = run.slim
    if run.pruning:
        events = run.pruning["events"]
        doc.update(
            method=run.pruning["method"],
            structured=run.pruning["structured"],
            schedule=run.pruning["schedule"],
            sparsity={
                "target": run.pruning["sparsity"],
                "achieved": events[-1]["achieved"] if events else 0.0,
                "of": run.pruning["of"],
            },
        )
    elif "sparsity" in doc and doc["sparsity"].get("of") == "weights":
        total = sum(m.numel() for m in run.masks.values())
        doc["sparsity"] = {**doc["sparsity"], "achieved": (total - count_kept(run.masks)) / total}
    doc["training"] = {
        "epochs": request.epochs,
        "epochs_done": run.epochs_done,
        "step": run.step,
        "optimizer": asdict(request.optimizer) | {"lr": request.optimizer.base_lr},
        "data": data_doc,
        "seed": request.seed,
        "exclude": list(request.exclude),
        "pruning": run.pruning,
        "history": run.history,
    }
    return doc


def _write(
    output: Path, state_file: Path, run: _Run, document: dict[str, Any], storage: Storage | None
) -> None:
    state = {
        f"{name}/{key}": value.detach().cpu().contiguous()
        for name, entries in state_by_name(run.model, run.optimizer).items()
        for key, value in entries.items()
    }
    meta = {STATE_KEY: json.dumps({"epochs_done": run.epochs_done, "step": run.step})}
    model_device = next(run.model.parameters()).device
    run.model.to("cpu")
    try:
        write_all_atomic(
            {
                output: checkpoint_writer(run.model, document, resolve_storage(storage, run.model)),
                state_file: lambda tmp: save_file(state, str(tmp), metadata=meta),
            }
        )
    finally:
        run.model.to(model_device)


def _output_paths(request: TrainRequest, loaded: LoadedModel) -> tuple[Path, Path]:
    output = request.output or Path(f"{loaded.name}-trained.safetensors")
    if output.suffix != ".safetensors":
        raise UsageError(f"-o/--output must end in .safetensors, got {output}")
    inputs = tuple(p for p in (loaded.path, loaded.path and state_path(loaded.path)) if p)
    for path in (output, state_path(output)):
        check_writable(path, request.force, inputs)
    return output, state_path(output)


def _read_resume(request: TrainRequest, loaded: LoadedModel) -> dict[str, Any] | None:
    """The training block and optimizer state of the checkpoint being resumed."""
    if not request.resume:
        return None
    training = (loaded.metadata or {}).get("training")
    if loaded.path is None or not training:
        raise UsageError(f"--resume needs a checkpoint written by snipit train; {loaded.source} is not one")
    if training["epochs_done"] >= request.epochs:
        raise UsageError(
            f"{loaded.source} already trained {training['epochs_done']} epochs; ask for more with --epochs"
        )
    return training


def _restore(run: _Run, training: dict[str, Any], path: Path | None) -> None:
    run.epochs_done, run.step = training["epochs_done"], training["step"]
    run.history = list(training.get("history") or [])
    run.pruning = training.get("pruning")
    assert path is not None
    side = state_path(path)
    if not side.is_file():
        raise ModelError(
            f"cannot resume: the training state {side} is missing (it is written next to the checkpoint)"
        )
    try:
        with safe_open(str(side), framework="pt") as f:
            state: dict[str, dict[str, torch.Tensor]] = {}
            for key in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
                name, _, entry = key.rpartition("/")
                state.setdefault(name, {})[entry] = f.get_tensor(key)
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read the training state {side}: {exc}") from exc
    # Refused here, by name, rather than by the optimizer's first step mid-training.
    params = dict(run.model.named_parameters())
    for name, entries in state.items():
        for key, value in entries.items():
            problem = unsupported(value, params.get(name) if value.dim() else None)
            if problem:
                raise ModelError(
                    f"cannot resume: {name}/{key} in the training state {side} {problem}; "
                    f"optimizer state is {SUPPORTED_TEXT}"
                )
    load_state_by_name(run.model, run.optimizer, state)
