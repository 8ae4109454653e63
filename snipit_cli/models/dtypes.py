"""Which tensor dtypes snipit can prune and train, checked by name before anything is loaded.

torch's ``load_state_dict`` copies whatever it is given into the model's tensors: a complex
weight loses its imaginary part (with a warning nobody sees), an int8 weight becomes floats of
the wrong scale, a float8/float4 weight fails inside the copy. Scores, masks and optimizers need
real floating weights, so only the four dtypes every CPU kernel has are taken for them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from snipit_cli.errors import ModelError

#: Floating dtypes of weights and float buffers (running statistics).
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
SUPPORTED_TEXT = "float32, float16, bfloat16 or float64"


def unsupported(t: torch.Tensor, expected: torch.Tensor | None = None) -> str | None:
    """Why ``t`` cannot be loaded where ``expected`` is (None: it can).

    Floating tensors must be one of :data:`FLOAT_DTYPES`; complex ones never are; integer and
    bool tensors are fine as integer buffers (``num_batches_tracked``), not for a float tensor.
    """
    name = str(t.dtype).removeprefix("torch.")
    if t.is_complex():
        return f"is {name} (complex): loading it would drop its imaginary part"
    if t.is_floating_point() and t.dtype not in FLOAT_DTYPES:
        return f"is {name}, which snipit cannot prune or train"
    if expected is not None and expected.is_floating_point() and not t.is_floating_point():
        return f"is {name}, where the model holds {str(expected.dtype).removeprefix('torch.')}"
    return None


def check_dtypes(
    tensors: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor], what: str
) -> None:
    """Refuse the first tensor of ``tensors`` whose dtype cannot be used, naming it and the dtype."""
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            continue
        problem = unsupported(t, expected.get(name))
        if problem:
            raise ModelError(f"{what}: tensor {name} {problem}; snipit takes {SUPPORTED_TEXT} weights")
