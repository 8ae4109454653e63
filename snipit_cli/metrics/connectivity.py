"""Disconnection, SNIP's known failure: units left without inputs or outputs, and whether any
input-to-output path survives, read from the zeros of the weights as they are.

Two views, because neither is enough alone. The per-layer counts are exact and cheap but local:
a unit with no incoming weight still outputs its bias, and a unit can keep weights on both sides
yet sit on a path that is cut further on. The functional check sees the whole model: a layer whose
weights are all zero outputs its bias whatever the input, so once every path is cut every output
is the same bitwise for different inputs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from snipit_cli.layers import prunable_layers

#: Random inputs the path check compares; each is its own forward, so the kernels run the same
#: shapes in the same order and a cut model gives bitwise-equal outputs.
PATH_PROBES = 2
PATH_SEED = 0


@dataclass(frozen=True)
class LayerConnectivity:
    """One Conv/Linear layer. ``units``: its output channels/features. ``no_incoming``: output
    units whose every weight in this layer is zero (they output their bias alone).
    ``unused_inputs``: input channels/features it reads through zero weights only (upstream units
    with no outgoing weight into this layer; a unit feeding several layers, e.g. a residual
    stream, is counted once per layer that ignores it)."""

    name: str
    units: int
    no_incoming: int
    unused_inputs: int

    @property
    def cut(self) -> bool:
        """No output unit of the layer has an input: its output is constant."""
        return self.units > 0 and self.no_incoming == self.units


@dataclass(frozen=True)
class Connectivity:
    """Per-layer counts, their sums, ``layers_cut`` (layers with every unit without inputs) and
    ``path``: whether the output still depends on the input (None when the forward failed)."""

    layers: list[LayerConnectivity]
    path: bool | None

    @property
    def units(self) -> int:
        return sum(layer.units for layer in self.layers)

    @property
    def no_incoming(self) -> int:
        return sum(layer.no_incoming for layer in self.layers)

    @property
    def unused_inputs(self) -> int:
        return sum(layer.unused_inputs for layer in self.layers)

    @property
    def layers_cut(self) -> int:
        return sum(layer.cut for layer in self.layers)


def connectivity(
    model: nn.Module, input_size: Sequence[int], device: torch.device | str = "cpu"
) -> Connectivity:
    """Disconnection of every Conv/Linear layer of ``model`` and the path check at ``input_size``
    (C, H, W without the batch)."""
    layers = [layer_connectivity(name, m) for name, m in prunable_layers(model).items()]
    return Connectivity(layers, input_reaches_output(model, input_size, device))


def layer_connectivity(name: str, layer: nn.Module) -> LayerConnectivity:
    """Counts of one layer. Conv weights are (out, in/groups, k...): input channel ``g*(in/groups)+j``
    is read by the group-``g`` output units through column ``j``. Transposed convs store
    (in, out/groups, k...), the mirror image."""
    dead_rows, dead_columns = _zero_rows_and_columns(layer.weight.detach(), getattr(layer, "groups", 1))
    if isinstance(layer, nn.modules.conv._ConvTransposeNd):
        dead_inputs, dead_outputs = dead_rows, dead_columns
    else:
        dead_outputs, dead_inputs = dead_rows, dead_columns
    return LayerConnectivity(name, dead_outputs.numel(), int(dead_outputs.sum()), int(dead_inputs.sum()))


def _zero_rows_and_columns(weight: torch.Tensor, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For a weight (rows, columns/groups, ...): which rows are all zero, and which of the
    ``columns`` (group-major) are zero for every row of their group."""
    rows, per_group = weight.shape[0], weight.shape[1]
    live = weight.ne(0).reshape(rows, per_group, -1).any(dim=2)  # (rows, columns per group)
    dead_rows = ~live.any(dim=1)
    dead_columns = ~live.reshape(groups, rows // groups, per_group).any(dim=1).reshape(-1)
    return dead_rows, dead_columns


def input_reaches_output(
    model: nn.Module, input_size: Sequence[int], device: torch.device | str = "cpu"
) -> bool | None:
    """True when the outputs differ between :data:`PATH_PROBES` random inputs (seeded, without
    touching the global RNG), in eval mode; None when the forward fails or returns no tensor.

    Its limits: a model whose output ignores its input by design reads as cut, and a nondeterministic
    kernel (some GPU ones) can make a cut model's outputs differ, so it reads as connected."""
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(PATH_SEED)
    probes = [torch.randn(1, *input_size, generator=generator) for _ in range(PATH_PROBES)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=_cuda_devices(device)):
            outputs = [list(_tensors(model(x.to(device, dtype)))) for x in probes]
    except Exception:  # a report must not fail on the check; the MAC count names real problems
        return None
    finally:
        model.train(was_training)
    if not outputs[0]:
        return None
    return any(not _same(a, b) for other in outputs[1:] for a, b in zip(outputs[0], other, strict=False))


def _cuda_devices(device: torch.device | str) -> list[int]:
    """The CUDA device whose RNG the forward could use (fork_rng forks none for the CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _tensors(output: Any) -> Iterator[torch.Tensor]:
    """The tensors of a forward's result: a tensor, or those in nested tuples/lists/dicts."""
    if isinstance(output, torch.Tensor):
        yield output
    elif isinstance(output, dict):
        for value in output.values():
            yield from _tensors(value)
    elif isinstance(output, list | tuple):
        for value in output:
            yield from _tensors(value)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equal, NaN equal to NaN (a model that outputs NaN for every input is still cut)."""
    if a.shape != b.shape:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True))
    return torch.equal(a, b)
