"""Types two layers share only to name what they hand each other.

A base module, so the data readers, metrics, training and the criteria can say "a batch" without
importing one another (``Batch`` used to live in ``criteria/``, and data, metrics and training
imported criteria just for it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import torch

#: One (inputs, labels) batch on the model's device.
Batch = tuple[torch.Tensor, torch.Tensor]

#: Calibration data for one scoring round: ``batches_for_step(i)`` yields that round's batches.
BatchSource = Callable[[int], Iterable[Batch]]


class Calibration(Protocol):
    """What the structured pass reads of calibration data (``data.calibration`` implements it)."""

    #: Batches this process reads per round (its shard under ``torchrun``).
    local_batches: int

    def batches(self, step: int) -> Iterable[Batch]:
        """The batches of scoring round ``step``."""
        ...
