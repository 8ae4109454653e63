"""Sparse tensor storage: a packed bit mask plus the kept values, as two ordinary tensors.

A pruned weight is mostly exact zeros; storing it as ``name.__bitmask`` (uint8, one bit per
element, MSB first like ``numpy.packbits``) and ``name.__values`` (the nonzero elements in the
tensor's own dtype, in row-major order) takes about ``(1 - sparsity) * bits + 1`` bits per
weight. The mask comes from the bit pattern, not ``!= 0``, so -0.0 and NaN survive bit for bit;
decoding writes the kept values back over +0.0 and gives the identical tensor.

Pure torch: no files. Callers record :func:`encode`'s document next to the tensors (snipit keeps
it in the safetensors metadata) and pass it back to :func:`decode`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from snipit_cli.models.dtypes import FLOAT_DTYPES, SUPPORTED_TEXT

ENCODING = "bitmask-v1"
DENSE = "dense"
MASK_SUFFIX = ".__bitmask"
VALUES_SUFFIX = ".__values"
#: A header entry for the second tensor plus its shape/dtype record in the metadata, roughly;
#: a tensor is encoded only if that saves more than this, so sparse is never larger than dense.
ENTRY_OVERHEAD = 256

_INT_OF_WIDTH = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
_BIT_WEIGHTS = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8)  # MSB first
_SHIFTS = torch.arange(7, -1, -1, dtype=torch.uint8)


class CorruptEncoding(ValueError):
    """A stored encoding that cannot decode to the tensor it claims; the message names it."""


def nonzero_bits(t: torch.Tensor) -> torch.Tensor:
    """Flat bool mask of elements whose bit pattern is not all zero (so -0.0 and NaN count)."""
    flat = t.contiguous().reshape(-1)
    return flat.view(_INT_OF_WIDTH[flat.element_size()]) != 0


def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """Bool vector -> uint8 bytes, element i in bit ``7 - i % 8`` of byte ``i // 8``; pad bits 0."""
    padded = torch.zeros(math.ceil(mask.numel() / 8) * 8, dtype=torch.uint8)
    padded[: mask.numel()] = mask.reshape(-1)
    return (padded.view(-1, 8) * _BIT_WEIGHTS).sum(1, dtype=torch.uint8)


def unpack_bits(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: the first ``n`` bits as a bool vector."""
    return ((packed.reshape(-1, 1) >> _SHIFTS) & 1).reshape(-1)[:n].bool()


def sparse_nbytes(numel: int, nnz: int, itemsize: int) -> int:
    """Bytes of the encoded form: the mask plus the kept values."""
    return math.ceil(numel / 8) + nnz * itemsize


def worth_encoding(t: torch.Tensor, nnz: int) -> bool:
    """Only floating tensors, and only where the two tensors are smaller than the one."""
    dense = t.numel() * t.element_size()
    return t.is_floating_point() and sparse_nbytes(t.numel(), nnz, t.element_size()) + ENTRY_OVERHEAD < dense


def encode(tensors: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Encode every tensor where it pays; return the tensors to store and the storage document.

    A name whose ``.__bitmask``/``.__values`` names are already taken stays dense, so the stored
    names never collide.
    """
    stored: dict[str, torch.Tensor] = {}
    records: dict[str, dict[str, Any]] = {}
    for name, t in tensors.items():
        if not t.is_floating_point() or {name + MASK_SUFFIX, name + VALUES_SUFFIX} & tensors.keys():
            stored[name] = t
            continue
        mask = nonzero_bits(t)
        if not worth_encoding(t, int(mask.sum())):
            stored[name] = t
            continue
        stored[name + MASK_SUFFIX], stored[name + VALUES_SUFFIX] = encode_tensor(t, mask)
        records[name] = {"shape": list(t.shape), "dtype": dtype_name(t.dtype)}
    if not records:
        return stored, {"encoding": DENSE}
    # sorted: the document depends on the tensors, not on the order a reader handed them over
    return stored, {"encoding": ENCODING, "bit_order": "msb-first", "tensors": dict(sorted(records.items()))}


def encode_tensor(t: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One tensor as (packed bit mask, kept values); ``mask`` is :func:`nonzero_bits` if known."""
    mask = nonzero_bits(t) if mask is None else mask
    return pack_bits(mask), t.contiguous().reshape(-1)[mask]


def decode(
    tensors: Mapping[str, torch.Tensor], document: Mapping[str, Any] | None
) -> dict[str, torch.Tensor]:
    """The dense tensors behind ``encode``'s output; raises :class:`CorruptEncoding` on any lie."""
    if document is not None and not isinstance(document, Mapping):
        raise CorruptEncoding(f"storage document is {type(document).__name__}, not an object")
    encoding = (document or {}).get("encoding", DENSE)
    if encoding == DENSE:
        return dict(tensors)
    if encoding != ENCODING:
        raise CorruptEncoding(f"unknown storage encoding {encoding!r} (this snipit reads {ENCODING})")
    records = document.get("tensors")
    if not isinstance(records, Mapping):
        raise CorruptEncoding("storage document lists no tensors")
    out = dict(tensors)
    for name, record in records.items():
        mask, values = out.pop(name + MASK_SUFFIX, None), out.pop(name + VALUES_SUFFIX, None)
        if name in out:
            raise CorruptEncoding(f"tensor {name} is stored both dense and encoded")
        out[name] = decode_one(name, mask, values, record)
    return out


def decode_one(
    name: str, mask: torch.Tensor | None, values: torch.Tensor | None, record: Any
) -> torch.Tensor:
    """One tensor from its mask and values, after checking every claim the pair makes."""
    shape, dtype = _record(name, record)
    if mask is None or values is None:
        missing = MASK_SUFFIX if mask is None else VALUES_SUFFIX
        raise CorruptEncoding(f"tensor {name}: {name}{missing} is missing")
    numel = math.prod(shape)
    if mask.dtype != torch.uint8 or mask.dim() != 1 or mask.numel() != math.ceil(numel / 8):
        raise CorruptEncoding(
            f"tensor {name}: bit mask has {mask.numel()} {dtype_name(mask.dtype)} elements, "
            f"shape {shape} needs {math.ceil(numel / 8)} uint8"
        )
    if values.dtype != dtype or values.dim() != 1:
        raise CorruptEncoding(
            f"tensor {name}: values are {dtype_name(values.dtype)} with {values.dim()} dims, "
            f"recorded {dtype_name(dtype)} in 1 dim"
        )
    bits = unpack_bits(mask, math.ceil(numel / 8) * 8)
    if bits[numel:].any():
        raise CorruptEncoding(f"tensor {name}: bit mask has nonzero pad bits")
    kept = bits[:numel]
    nnz = int(kept.sum())
    if nnz != values.numel():
        raise CorruptEncoding(
            f"tensor {name}: bit mask marks {nnz} kept elements but {values.numel()} values are stored"
        )
    out = torch.zeros(numel, dtype=dtype)
    out[kept] = values
    return out.reshape(shape)


def _record(name: str, record: Any) -> tuple[list[int], torch.dtype]:
    record = record if isinstance(record, Mapping) else {}
    shape, dtype = record.get("shape"), getattr(torch, str(record.get("dtype")), None)
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise CorruptEncoding(f"tensor {name}: recorded shape {shape!r} is not a list of sizes")
    if dtype not in FLOAT_DTYPES:
        raise CorruptEncoding(
            f"tensor {name}: recorded dtype {record.get('dtype')!r} is not a float dtype snipit encodes "
            f"({SUPPORTED_TEXT})"
        )
    return shape, dtype


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``: the name the storage document records."""
    return str(dtype).removeprefix("torch.")


def dense_nbytes(tensors: Mapping[str, torch.Tensor]) -> int:
    """Bytes of the tensors stored densely, each shared (tied) tensor once."""
    seen: set[tuple[int, int, tuple[int, ...], torch.dtype]] = set()
    total = 0
    for t in tensors.values():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.dtype)
        if key in seen and t.numel():
            continue
        seen.add(key)
        total += t.numel() * t.element_size()
    return total
