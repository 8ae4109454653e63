"""``snipit train --method``: prune while training (the paper's Algorithm 1).

Step i of the method's schedule runs at epoch ``delay + i * freq``, before that epoch trains, on
calibration batches of the training data. The pruner owns its record (events done, layers the
collapse guard held, the dense model's amounts) and the slim record of the last surgery; it never
changes its caller's state, but returns the state to train on: the masks after an unstructured
step, and after SNAP-it the slimmed model's new optimizer (its state sliced to the kept units),
weights and masks.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

import torch

from snipit_cli.data.build import DataOptions
from snipit_cli.data.calibration import DatasetData
from snipit_cli.data.training import EpochData
from snipit_cli.errors import UsageError
from snipit_cli.metrics.macs import count_macs
from snipit_cli.metrics.sparsity import count_params
from snipit_cli.models.arch import ArchSpec
from snipit_cli.models.input_spec import Size
from snipit_cli.pruning.engine import MIN_LAYER_DENSITY, current_masks, prune
from snipit_cli.pruning.masks import apply_masks
from snipit_cli.pruning.schedule import schedule_for
from snipit_cli.pruning.structured.slim import count_units, kept_indices, slim_model
from snipit_cli.pruning.targets import prunable_weights
from snipit_cli.training.fit import TrainState
from snipit_cli.training.optim import (
    OptimizerOptions,
    load_state_by_name,
    make_optimizer,
    slice_state,
    state_by_name,
)
from snipit_cli.workflows.session import pruning_criterion
from snipit_cli.workflows.train.request import PruneWhileTraining


class Pruner:
    """Prunes step i of the schedule at epoch ``delay + i * freq`` (before that epoch trains)."""

    def __init__(
        self,
        options: PruneWhileTraining,
        *,
        state: TrainState,
        epochs: int,
        train_data: EpochData,
        data: DataOptions,
        device: torch.device,
        arch: ArchSpec | None,
        size: Size,
        exclude: list[str],
        seed: int,
        optimizer: OptimizerOptions,
        recorded: dict[str, Any] | None = None,
        slim: dict[str, Any] | None = None,
    ):
        """``recorded``: the pruning record of the run being resumed; ``slim``: the input's."""
        self.options, self.arch, self.size, self.exclude = options, arch, size, exclude
        self.seed, self.optimizer, self.slim, self.batch_size = seed, optimizer, slim, data.batch_size
        self.criterion = pruning_criterion(options.method, options.structured is not None)
        self.schedule = schedule_for(self.criterion, options.sparsity, options.steps)
        self.epochs = [options.delay + i * options.freq for i in range(len(self.schedule))]
        if self.epochs[-1] >= epochs:
            raise UsageError(
                f"{len(self.schedule)} pruning steps at --prune-delay {options.delay} and --prune-freq "
                f"{options.freq} end at epoch {self.epochs[-1] + 1}, past --epochs {epochs}; "
                "train longer or prune more often"
            )
        self.calibration = DatasetData(
            spec=f"{data.spec} ({data.split}, training data)",
            batch_size=data.batch_size,
            n_batches=options.batches,
            seed=data.seed,
            device=device,
            dataset=train_data.dataset,
            transform=_identity,
            num_classes=train_data.num_classes,
        )
        recorded = recorded or {}
        self.done: list[dict[str, Any]] = list(recorded.get("events", []))
        self.held: list[str] = list(recorded.get("collapse_held", []))
        self.dense_amount = recorded["dense_amount"] if recorded else self._amount(state)
        # Units per group before the first event: --min-keep is a share of these at every event.
        self.dense_units: dict[str, int] = recorded.get("dense_units") or {}

    def maybe_prune(self, epoch: int, state: TrainState) -> TrainState:
        """Run the schedule's steps due at ``epoch`` that have not run yet (all of them with F = 0);
        return the state to train on."""
        for step, due in enumerate(self.epochs):
            if due != epoch or step < len(self.done):
                continue
            fraction = self.schedule[step]
            if self.options.structured:
                state, achieved = self._prune_units(state, fraction, step)
            else:
                state, achieved = self._prune_weights(state, fraction, step)
            self.done.append({"epoch": epoch, "step": step, "target": fraction, "achieved": achieved})
        return state

    def record(self) -> dict[str, Any]:
        """The ``training.pruning`` block: options, schedule and events so far (what --resume reads)."""
        return {
            "method": self.criterion.name,
            "structured": self.options.structured is not None,
            "of": self.options.structured.target if self.options.structured else "weights",
            "sparsity": self.options.sparsity,
            "schedule": self.schedule,
            "epochs": self.epochs,
            "events": list(self.done),
            "dense_amount": self.dense_amount,
            "dense_units": dict(self.dense_units),
            "collapse_held": list(self.held),
            "calibration": {"batches": self.options.batches, "batch_size": self.batch_size},
            "options": asdict(self.options),
        }

    def _prune_weights(self, state: TrainState, fraction: float, step: int) -> tuple[TrainState, float]:
        result = prune(
            model=state.model,
            weights=dict(state.weights),
            criterion=self.criterion,
            batches_for_step=lambda _: self.calibration.batches(step),
            schedule=[fraction],
            n_batches=self.calibration.n_batches,
            seed=self.seed + step,
            progress=None,
            input_size=self.size,
            min_layer_density=None if self.options.allow_collapse else MIN_LAYER_DENSITY,
        )
        self.held += [n for n in result.held_layers if n not in self.held]
        pruned = replace(state, masks=result.masks)
        _reset_pruned_state(pruned)
        return pruned, result.achieved_sparsity

    def _prune_units(self, state: TrainState, fraction: float, step: int) -> tuple[TrainState, float]:
        """Slim the model to ``fraction`` of the dense model's units (params, MACs), in place."""
        structured = self.options.structured
        assert structured is not None
        now = self._amount(state)
        relative = 1 - (1 - fraction) * self.dense_amount / now
        if relative <= 0:
            return state, 1 - now / self.dense_amount
        moments = state_by_name(state.model, state.optimizer)
        outcome = slim_model(
            model=state.model,
            arch=self.arch,
            criterion=self.criterion,
            data=_OneStep(self.calibration, step),
            schedule=[relative],
            size=self.size,
            options=structured,
            exclude=self.exclude,
            seed=self.seed + step,
            progress=None,
            dense_units=self.dense_units,
        )
        self.dense_units = {**outcome.group_sizes, **self.dense_units}  # the first width seen stays
        self.slim = outcome.record
        kept = kept_indices(outcome, self.size, self.exclude)
        shapes = {n: p.shape for n, p in state.model.named_parameters()}
        optimizer = make_optimizer(state.model, self.optimizer)
        load_state_by_name(state.model, optimizer, slice_state(moments, kept, shapes))
        weights = prunable_weights(state.model, self.exclude)
        slimmed = replace(state, optimizer=optimizer, weights=weights, masks=current_masks(weights))
        return slimmed, 1 - self._amount(slimmed) / self.dense_amount

    def _amount(self, state: TrainState) -> float:
        """What --sparsity counts, in the model as it is now."""
        if not self.options.structured:
            return float(sum(w.numel() for w in state.weights.values()))
        target = self.options.structured.target
        if target == "params":
            return float(count_params(state.model))
        if target == "macs":
            return float(count_macs(state.model, self.size))
        return float(count_units(state.model, self.size, self.exclude))


class _OneStep:
    """Calibration data whose every round reads the batches of one pruning event."""

    def __init__(self, data: DatasetData, step: int):
        self.data, self.step, self.n_batches = data, step, data.n_batches
        self.local_batches = data.local_batches

    def batches(self, _round: int):
        return self.data.batches(self.step)


def _identity(x):
    return x


def _reset_pruned_state(state: TrainState) -> None:
    """Zero the optimizer moments of newly pruned weights: they must not leak into kept ones."""
    for name, w in state.weights.items():
        for value in state.optimizer.state.get(w, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == w.shape:
                value.mul_(state.masks[name].to(value.dtype))
    apply_masks(state.weights, state.masks)
