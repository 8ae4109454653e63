"""Multiplicative gates, one per unit, as forward hooks on an unmodified model.

A unit's gate multiplies its channels at the *input of every Conv/Linear that consumes them*:
zeroing an input channel of a channel-mixing op is exactly deleting that weight column, whatever
runs upstream (pre-activation norms, concatenations, position embeddings). LayerNorms in a group
take their statistics over the gated channels only, so a zero gate equals removing the channel.
With these rules "slim model == gated original" holds on every architecture snipit tests.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from snipit_cli.pruning.structured.groups import Site, UnitGroup


@contextmanager
def gates_installed(
    model: nn.Module, groups: Sequence[UnitGroup], gates: Sequence[torch.Tensor]
) -> Iterator[None]:
    """Apply ``gates[i]`` (one value per unit of ``groups[i]``) while the context is open."""
    modules = dict(model.named_modules())
    handles = []
    try:
        for name, sites in _by_module(groups, "consumers").items():
            handles.append(modules[name].register_forward_pre_hook(_input_gate(sites, gates)))
        for name, sites in _by_module(groups, "layer_norms").items():
            handles.append(modules[name].register_forward_hook(_masked_layer_norm(sites, gates)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _by_module(groups: Sequence[UnitGroup], kind: str) -> dict[str, list[tuple[int, Site]]]:
    out: dict[str, list[tuple[int, Site]]] = {}
    for g, group in enumerate(groups):
        for site in getattr(group, kind):
            out.setdefault(site.module, []).append((g, site))
    return out


def _channel_multiplier(sites, gates, channels: int, like: torch.Tensor) -> torch.Tensor:
    if len(sites) == 1 and sites[0][1].in_order and sites[0][1].idxs.numel() == channels:  # most: a gather
        g, site = sites[0]
        return gates[g].to(like.device, like.dtype)[site.units.to(like.device)]
    mult = torch.ones(channels, dtype=like.dtype, device=like.device)
    for g, site in sites:
        values = gates[g].to(like.device, like.dtype)[site.units.to(like.device)]
        mult = mult.index_put((site.idxs.to(like.device),), mult[site.idxs.to(like.device)] * values)
    return mult


def _channel_dim(module: nn.Module) -> int:
    if isinstance(module, nn.Linear) or (
        isinstance(module, nn.LayerNorm) and type(module).__name__ != "LayerNorm2d"
    ):
        return -1
    return 1


def _input_gate(sites, gates):
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        dim = _channel_dim(module)
        shape = [1] * x.dim()
        shape[dim] = x.shape[dim]
        return (x * _channel_multiplier(sites, gates, x.shape[dim], x).view(shape), *args[1:])

    return hook


def _masked_layer_norm(sites, gates):
    def hook(module: nn.LayerNorm, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        dim = _channel_dim(module)
        shape = [1] * x.dim()
        shape[dim] = x.shape[dim]
        mask = _channel_multiplier(sites, gates, x.shape[dim], x).view(shape)
        count = mask.sum()
        mean = (x * mask).sum(dim, keepdim=True) / count
        var = ((x - mean) ** 2 * mask).sum(dim, keepdim=True) / count
        y = (x - mean) / torch.sqrt(var + module.eps)
        if module.weight is not None:
            y = y * module.weight.view(shape)
        if module.bias is not None:
            y = y + module.bias.view(shape)
        return y

    return hook
