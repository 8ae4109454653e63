"""Multiply-accumulates of one forward pass, counted by ``torch.utils.flop_counter``.

PyTorch's own counter is used (rather than a hook-based counter such as thop/ptflops) because it
sees every matmul/conv the dispatcher runs, whatever module wraps it: attention written with
``F.scaled_dot_product_attention``, einsums and functional convs are counted too. It reports
FLOPs as 2 per multiply-add; MACs are half of that. Elementwise ops (bias, norms, activations)
are not counted, as in the MAC figures papers quote.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_macs(model: nn.Module, input_size: tuple[int, ...], device: torch.device | str = "cpu") -> int:
    """MACs of ``model`` on one input of shape ``input_size`` (C, H, W), in eval mode."""
    return macs_by_module(model, input_size, device)[""]


def _count(model: nn.Module, input_size, device, *, grad: bool) -> FlopCounterMode:
    with torch.set_grad_enabled(grad), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_size, device=device))
    return counter


def macs_by_module(
    model: nn.Module, input_size: tuple[int, ...], device: torch.device | str = "cpu"
) -> dict[str, int]:
    """MACs per module name (``""`` is the whole model; parents include their children)."""
    was_training = model.training
    model.eval()
    try:
        counter = _count(model, input_size, device, grad=False)
    except AssertionError:
        # torch's module tracker asserts on a Parameter passed as a module input under no_grad
        # (PiT hands its cls_token to its transformer stage); with grad it takes the leaf's hook.
        counter = _count(model, input_size, device, grad=True)
    finally:
        model.train(was_training)
    per_module = {"": counter.get_total_flops() // 2}
    for key, counts in counter.get_flop_counts().items():
        _, dot, name = key.partition(".")  # keys are "<RootClass>.<qualified name>"
        if dot:
            per_module[name] = sum(counts.values()) // 2
    return per_module
