"""What ``--structured`` adds to a run: what ``--sparsity`` counts, the per-group floor, rounding.

``TARGETS`` is the one declaration of the structured targets: the CLI builds its choice from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from snipit_cli.errors import UsageError

#: What ``--sparsity`` counts under ``--structured``: units, parameters or MACs removed, or the
#: measured forward latency of the slim model (on the run's device, at ``latency_batch``).
TARGETS = ("nodes", "params", "macs", "latency")


@dataclass
class StructuredOptions:
    """What ``--structured`` adds: what --sparsity counts, the per-group floor, the rounding."""

    target: str = "nodes"
    min_keep: float = 0.05
    round_to: int = 1
    #: Batch size the latency target is measured at (``--latency-batch``).
    latency_batch: int = 1

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise UsageError(f"--target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if self.latency_batch < 1:
            raise UsageError(f"--latency-batch must be 1 or more, got {self.latency_batch}")
        if self.round_to < 1:
            raise UsageError(f"--round-to must be 1 or more, got {self.round_to}")
        if not 0.0 <= self.min_keep < 1.0:
            raise UsageError(f"--min-keep is a fraction of each group's units in [0, 1), got {self.min_keep}")
