"""What ``--structured`` adds to a run: what ``--sparsity`` counts, the per-group floor, rounding.

``TARGETS`` is the one declaration of the structured targets: the CLI builds its choice from it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from snipit_cli.errors import UsageError

if TYPE_CHECKING:  # the CLI parses these options before it imports torch
    import torch

#: What ``--sparsity`` counts under ``--structured``: units, parameters or MACs removed, or the
#: measured forward latency of the slim model (on the run's device, at ``latency_batch``).
TARGETS = ("nodes", "params", "macs", "latency")


@dataclass
class StructuredOptions:
    """What ``--structured`` adds: what --sparsity counts, the per-group floor, the rounding."""

    target: str = "nodes"
    min_keep: float = 0.05
    round_to: int | str = 1  # or "auto": :func:`kernel_multiple` of the run's device
    #: Batch size the latency target is measured at (``--latency-batch``).
    latency_batch: int = 1

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UsageError(f"--target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.latency_batch < 1:
            raise UsageError(f"--latency-batch must be 1 or more, got {self.latency_batch}")
        if self.round_to != AUTO and (not isinstance(self.round_to, int) or self.round_to < 1):
            raise UsageError(
                f"--round-to must be a whole number of channels, 1 or more, or auto; got {self.round_to}"
            )
        if not 0.0 <= self.min_keep < 1.0:
            raise UsageError(f"--min-keep is a fraction of each group's units in [0, 1), got {self.min_keep}")

    def resolved(self, device: torch.device) -> tuple[StructuredOptions, str | None]:
        """These options with ``--round-to auto`` made the device's multiple, and the note that
        says so (None when the multiple was given)."""
        if self.round_to != AUTO:
            return self, None
        multiple, why = kernel_multiple(device)
        return replace(self, round_to=multiple), f"--round-to auto: {multiple} on {device} ({why})"


AUTO = "auto"


def kernel_multiple(device: torch.device) -> tuple[int, str]:
    """The channel multiple the device's convolution kernels compute in, and why.

    Measured on this project's AVX-512 CPU (``benchmarks/kernel_widths.py``): a 3x3 convolution of
    16k channels runs at 1.7x the throughput of 16k+1 (NCHW) and 1.5x (channels-last), rising
    with the remainder, with no step at multiples of 8: oneDNN's AVX-512 kernels block channels
    by 16, its AVX2 kernels by 8. CUDA's tensor cores want multiples of 8 (NVIDIA's guidance for
    16-bit types; not measured here). Deterministic, unlike timing at run time, so the same seed
    still gives the same slim model on the same kind of machine.
    """
    import torch

    if device.type == "cuda":
        return 8, "tensor-core kernels work on multiples of 8 channels"
    if device.type == "cpu":
        capability = torch.backends.cpu.get_cpu_capability()
        if capability.startswith("AVX512"):
            return 16, f"this CPU's {capability} kernels compute 16 channels at a time"
        if capability == "AVX2":
            return 8, "this CPU's AVX2 kernels compute 8 channels at a time"
        return 1, f"no known channel blocking for {capability} kernels"
    return 1, f"no known channel blocking on {device.type}"
