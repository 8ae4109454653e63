"""A bound on what building a model may allocate, checked before each tensor is allocated.

A checkpoint's metadata says how to rebuild its model (arch kwargs, slim shapes); a lying one
(``{"width": 100000}``, shapes ``[1e7, 1e7]``) would make the build allocate terabytes. The
rebuilt model must match the file's tensors anyway, so the file bounds it: while the model is
built, every tensor factory call (``torch.empty``, ``zeros``, ``randn``... as torch's own
``torch.device`` context intercepts them) is first run on the ``meta`` device, which gives its
exact size without allocating, and refused once the total would pass the budget. This works
for models that cannot be built on ``meta`` as a whole (torchvision's RegNets read tensor
values in ``__init__``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors

from snipit_cli.errors import ModelError
from snipit_cli.models.storage import MASK_SUFFIX, VALUES_SUFFIX

#: A model may allocate this many times the file's elements while it is built (tied weights are
#: built twice then shared, init temporaries), plus ``SLACK`` elements.
FACTOR = 2
SLACK = 1 << 22
#: A slim checkpoint's dense model is built first: it may be this many times the file (removing
#: 95% of every layer's channels leaves about 1/400 of the weights), or ``DENSE_FLOOR`` elements.
DENSE_FACTOR = 1000
DENSE_FLOOR = 1 << 28


class BudgetExceeded(ModelError):
    """Building the model would allocate more than the file can fill."""


def file_elements(path: Path) -> int:
    """Elements the file's tensors decode to, from the header alone (no tensor data is read).

    A bitmask-encoded tensor counts eight elements per mask byte (its values are within them):
    decoding refuses a recorded shape the mask does not cover.
    """
    total = 0
    try:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
                numel = math.prod(f.get_slice(name).get_shape())
                if name.endswith(MASK_SUFFIX):
                    total += 8 * numel
                elif not name.endswith(VALUES_SUFFIX):
                    total += numel
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"cannot read {path} as safetensors: {exc}") from exc
    return total


def build_budget(elements: int, slim: bool) -> int:
    """What building the (dense, when ``slim``) model for a file of ``elements`` may allocate."""
    if slim:
        return max(DENSE_FACTOR * elements, DENSE_FLOOR)
    return FACTOR * elements + SLACK


class _Budget(TorchFunctionMode):
    def __init__(self, limit: int, what: str, fix: str) -> None:
        super().__init__()
        self.limit, self.what, self.fix, self.used = limit, what, fix, 0
        self.constructors = _device_constructors()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.constructors:
            probe = func(*args, **{**kwargs, "device": "meta"})
            self.used += probe.numel() if isinstance(probe, torch.Tensor) else 0
            if self.used > self.limit:
                limit = f"{self.limit:,} elements"
                raise BudgetExceeded(f"{self.what} would allocate more than {limit}; {self.fix}")
        return func(*args, **kwargs)


@contextmanager
def allocation_budget(limit: int, what: str, fix: str) -> Iterator[None]:
    """Raise :class:`BudgetExceeded` before a tensor factory call would take the total of
    elements allocated inside the block past ``limit``; the error is ``what``, the limit, ``fix``."""
    with _Budget(limit, what, fix):
        yield
