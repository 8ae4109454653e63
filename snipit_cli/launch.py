"""Where this process sits in a ``torchrun`` launch, read from the environment torchrun sets.

Its own module, free of torch: the CLI's error boundary asks for the rank (who prints an error)
before any command has imported torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from snipit_cli.errors import UsageError


@dataclass(frozen=True)
class Launch:
    """Where this process sits in a ``torchrun`` launch (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched() -> Launch:
    """Read the launch from the environment torchrun sets; no process group is started."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise UsageError("RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them)") from None
    return Launch(rank, world, local)
