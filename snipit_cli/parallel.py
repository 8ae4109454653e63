"""Data-parallel scoring under ``torchrun``: torch.distributed's process group, not a home-made one.

torch.distributed is the engine users already launch training with (``torchrun`` sets RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); it brings NCCL for GPUs and gloo for CPUs, and its
collectives give every rank the same reduced bytes. snipit adds only what pruning needs on top:
:class:`ProcessGroupSync` implements :class:`~snipit_cli.sync.Sync`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist

from snipit_cli.errors import SnipitError, UsageError
from snipit_cli.launch import Launch, launched
from snipit_cli.sync import AGREED, LOCAL, PeerError, Sync

#: Bytes of an error message that travel to the other ranks (longer ones are cut).
MESSAGE_BYTES = 4096


def rank_device(device: torch.device, launch: Launch) -> torch.device:
    """Each rank's device: ``cuda`` becomes ``cuda:LOCAL_RANK``; one GPU per process, as NCCL wants."""
    if not launch.distributed or device.type != "cuda":
        return device
    if device.index is not None:
        raise UsageError(
            f"--device {device} under torchrun would put every rank on one GPU; pass --device cuda "
            "(each rank takes cuda:LOCAL_RANK) or auto"
        )
    return torch.device("cuda", launch.local_rank)


@contextmanager
def process_group(device: torch.device, launch: Launch | None = None) -> Iterator[Sync]:
    """The Sync of this launch: a torch.distributed group (NCCL on CUDA, gloo on CPU) under
    torchrun, the local one otherwise. The group is torn down on the way out, even on error."""
    launch = launch or launched()
    if not launch.distributed:
        yield LOCAL
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, rank=launch.rank, world_size=launch.world_size)
    try:
        yield ProcessGroupSync(launch.rank, launch.world_size, backend, device)
    finally:
        dist.destroy_process_group()


class ProcessGroupSync:
    """:class:`Sync` over the default torch.distributed process group."""

    def __init__(self, rank: int, world_size: int, backend: str, device: torch.device):
        self.rank, self.world_size, self.backend = rank, world_size, backend
        # NCCL moves only CUDA tensors; gloo only CPU ones here.
        self.device = device if backend == "nccl" else torch.device("cpu")

    def sum(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """One all-reduce per dtype over the tensors flattened into one buffer (a model has
        hundreds of layers; one collective each would pay the latency hundreds of times)."""
        out: list[torch.Tensor | None] = [None] * len(tensors)
        for dtype in dict.fromkeys(t.dtype for t in tensors):
            chosen = [i for i, t in enumerate(tensors) if t.dtype == dtype]
            flat = torch.cat([tensors[i].detach().reshape(-1).to(self.device) for i in chosen])
            dist.all_reduce(flat)
            for i, part in zip(chosen, _unflatten(flat, [tensors[i] for i in chosen]), strict=True):
                out[i] = part
        return out  # type: ignore[return-value]

    def broadcast(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for t in tensors:
            moved = t.detach().to(self.device, torch.uint8 if t.dtype == torch.bool else t.dtype).contiguous()
            dist.broadcast(moved, src=0)
            out.append(moved.to(t.device, t.dtype))
        return out

    def agree(self, error: BaseException | None) -> None:
        mine = encode_failure(error).to(self.device)
        every = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(every, mine)
        failures = [(rank, decode_failure(t.cpu())) for rank, t in enumerate(every)]
        failed = [(rank, f) for rank, f in failures if f is not None]
        if not failed:
            return
        first, (code, message) = failed[0]
        if first == self.rank and error is not None:
            setattr(error, AGREED, True)
            raise error
        raise PeerError(f"rank {first}: {message}", code)  # rank ``first`` prints it

    def gather_int(self, value: int) -> list[int]:
        mine = torch.tensor([value], dtype=torch.int64, device=self.device)
        every = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(every, mine)
        return [int(t) for t in every]


def _unflatten(flat: torch.Tensor, like: list[torch.Tensor]) -> list[torch.Tensor]:
    """Split ``flat`` back into tensors shaped, typed and placed like ``like``."""
    out, start = [], 0
    for t in like:
        n = t.numel()
        out.append(flat[start : start + n].view(t.shape).to(t.device, t.dtype))
        start += n
    return out


def encode_failure(error: BaseException | None) -> torch.Tensor:
    """A fixed-size byte record of this rank's outcome, so ranks can all-gather it (no pickle):
    byte 0 failed, byte 1 the exit code (1 for an internal error), then the UTF-8 message."""
    record = torch.zeros(MESSAGE_BYTES + 8, dtype=torch.uint8)
    if error is None:
        return record
    record[0] = 1
    record[1] = int(getattr(error, "exit_code", 1)) & 0xFF
    text = _message(error).encode()[:MESSAGE_BYTES]
    record[8 : 8 + len(text)] = torch.tensor(list(text), dtype=torch.uint8)
    return record


def decode_failure(record: torch.Tensor) -> tuple[int, str] | None:
    """(exit code, message) of a failed rank's record; None when that rank succeeded."""
    if not int(record[0]):
        return None
    message = bytes(record[8:].tolist()).rstrip(b"\0").decode(errors="replace")
    return int(record[1]), message


def _message(error: BaseException) -> str:
    if isinstance(error, SnipitError):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"
