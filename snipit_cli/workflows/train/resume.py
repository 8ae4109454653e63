"""``snipit train --resume``: the options a resumed run takes from the checkpoint's ``training``
block, the ones it must share with it, and the training state it continues from."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from snipit_cli.data.specs import parse_data_spec
from snipit_cli.errors import UsageError
from snipit_cli.models.loading import LoadedModel
from snipit_cli.training.fit import TrainState
from snipit_cli.training.optim import load_state_by_name
from snipit_cli.workflows.session.training_data import data_record, spec_text
from snipit_cli.workflows.session.training_output import read_state
from snipit_cli.workflows.train.request import PruneWhileTraining, TrainRequest

#: Options a resumed run must share with the recorded one: they decide what it trains on (and the
#: optimizer state fits one optimizer). The other recorded options are defaults the user may override.
FIXED_ON_RESUME = {"data": "--data", "split": "--split", "holdout": "--holdout", "seed": "--seed"}
FIXED_ON_RESUME |= {"optimizer": "--optimizer", "prune": "--method and its options"}
FIXED_ON_RESUME |= {"exclude": "--exclude"}
_DATA_KEYS = ("data", "split", "data_root", "batch_size", "holdout", "test_split", "test_data")


def read_resume(request: TrainRequest, loaded: LoadedModel) -> dict[str, Any] | None:
    """The training block of the checkpoint being resumed (None without --resume)."""
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


def resumed_request(request: TrainRequest, training: dict[str, Any], source: str) -> TrainRequest:
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


def resumed_state(state: TrainState, training: dict[str, Any], checkpoint: Path) -> TrainState:
    """``state`` where the recorded run stopped: its step, epochs and history, and the optimizer
    state of its side file loaded into ``state.optimizer``."""
    load_state_by_name(state.model, state.optimizer, read_state(checkpoint, state.model))
    history = tuple(training.get("history") or [])
    return replace(state, epochs_done=training["epochs_done"], step=training["step"], history=history)


def _options_view(request: TrainRequest) -> dict[str, Any]:
    """The resumable options of a request, in the record's JSON terms."""
    optimizer = request.optimizer
    return {
        **data_record(request.reads),
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


def _comparable(name: str, value: Any) -> Any:
    if name == "data" and value is not None:
        return spec_text(parse_data_spec(value))
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
    test_data = values.get("test_data", spec_text(request.test_data) if request.test_data else None)
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
