"""What the pruning loop needs from its peers when several processes score together.

A base module (not in ``pruning/``): criteria, both engines, ``parallel`` and the CLI's error
boundary all speak this protocol, and none of them should import pruning to do so.

A single process is its own world (:class:`LocalSync`: every operation is the identity). Under
``torchrun`` the same loop gets a :class:`~snipit_cli.parallel.ProcessGroupSync`, which sums
gradients over the ranks, hands everyone rank 0's masks and turns an error on one rank into the
same error on all of them. The algorithm code only ever sees this protocol, never
``torch.distributed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from snipit_cli.errors import SnipitError

if TYPE_CHECKING:  # annotations only: the CLI's error boundary imports this module at start-up
    import torch


class Sync(Protocol):
    """Collective operations over the processes that score one model together."""

    rank: int
    world_size: int

    def sum(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Element-wise sums over all ranks (the same result on every rank)."""

    def broadcast(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """Rank 0's tensors, on every rank."""

    def agree(self, error: BaseException | None) -> None:
        """Called by every rank at the same point: if any rank failed, raise on all of them."""

    def gather_int(self, value: int) -> list[int]:
        """One integer from each rank, in rank order."""


class LocalSync:
    """A world of one process: nothing to exchange."""

    rank = 0
    world_size = 1

    def sum(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return tensors

    def broadcast(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return tensors

    def agree(self, error: BaseException | None) -> None:
        if error is not None:
            raise error

    def gather_int(self, value: int) -> list[int]:
        return [value]


LOCAL = LocalSync()

#: Attribute set on an exception once every rank knows of it (rank 0 reports it for all).
AGREED = "snipit_agreed"


class PeerError(SnipitError):
    """Another rank failed; this rank stops with that rank's message and exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def scored_together(sync: Sync, work, *args):
    """Run ``work(*args)`` on every rank, then make sure all ranks succeeded before going on.

    An error on any rank is raised on every rank (the failing one re-raises its own exception,
    the others a :class:`PeerError` with its message), so no rank is left waiting in a
    collective for a peer that has stopped.
    """
    try:
        result, error = work(*args), None
    except Exception as exc:  # noqa: BLE001 (re-raised below, on every rank)
        result, error = None, exc
    sync.agree(error)
    return result
