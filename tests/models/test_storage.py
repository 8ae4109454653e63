"""Bitmask storage: bit-identical round trips, the encode-only-where-it-pays rule, and every lie a
corrupt file can tell ending in a named error instead of a wrong tensor."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from snipit_cli.models.storage import (
    DENSE,
    ENCODING,
    MASK_SUFFIX,
    VALUES_SUFFIX,
    CorruptEncoding,
    decode,
    decode_one,
    dense_nbytes,
    encode,
    encode_tensor,
    pack_bits,
    unpack_bits,
)

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
SHAPES = [(), (1,), (7,), (8,), (9,), (3, 5), (4, 3, 3, 3), (13, 17)]


def bits(t: torch.Tensor) -> bytes:
    """The raw bytes of a tensor: equal bytes, equal tensor (NaN and -0.0 included)."""
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def sparse_tensor(shape, dtype, keep: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g).to(dtype)
    return t * (torch.rand(shape, generator=g) < keep).to(dtype)


def round_trip(t: torch.Tensor) -> torch.Tensor:
    mask, values = encode_tensor(t)
    return decode_one("w", mask, values, {"shape": list(t.shape), "dtype": str(t.dtype)[6:]})


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("keep", [0.0, 0.3, 1.0])
def test_every_tensor_round_trips_bit_identically(dtype, shape, keep):
    t = sparse_tensor(shape, dtype, keep)
    back = round_trip(t)
    assert back.dtype == dtype and back.shape == t.shape
    assert bits(back) == bits(t)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_negative_zero_and_nan_survive(dtype):
    t = torch.tensor([0.0, -0.0, float("nan"), 0.0, float("-inf"), 0.0, -0.0, 1.5, 0.0], dtype=dtype)
    mask, values = encode_tensor(t)
    assert values.numel() == 5  # -0.0 and NaN are kept: their bit pattern is not zero
    assert bits(round_trip(t)) == bits(t)


def test_bit_order_is_msb_first_like_numpy_packbits():
    mask = torch.rand(29, generator=torch.Generator().manual_seed(3)) < 0.5
    assert pack_bits(mask).numpy().tobytes() == np.packbits(mask.numpy()).tobytes()
    assert pack_bits(torch.tensor([True] + [False] * 8)).tolist() == [128, 0]  # pad bits zero
    assert torch.equal(unpack_bits(pack_bits(mask), 29), mask)


def test_encode_keeps_only_what_pays_and_decode_restores_everything():
    pruned = sparse_tensor((64, 32), torch.float32, 0.1)  # 8 KiB dense, ~1 KiB encoded
    tensors = {
        "conv.weight": pruned,
        "bn.weight": torch.randn(64),  # no zeros: dense is smaller
        "half.weight": sparse_tensor((64, 32), torch.float32, 0.99),  # 1% zeros: not worth it
        "small.weight": torch.zeros(8),  # saves 31 bytes, less than a header entry costs
        "bn.num_batches_tracked": torch.tensor(0),  # integer: never encoded
        "idx": torch.zeros(4096, dtype=torch.int64),
    }
    stored, doc = encode(tensors)
    assert doc["encoding"] == ENCODING and list(doc["tensors"]) == ["conv.weight"]
    assert doc["tensors"]["conv.weight"] == {"shape": [64, 32], "dtype": "float32"}
    assert set(stored) == {"conv.weight" + MASK_SUFFIX, "conv.weight" + VALUES_SUFFIX} | (
        tensors.keys() - {"conv.weight"}
    )
    assert stored["conv.weight" + MASK_SUFFIX].numel() == 64 * 32 // 8
    assert dense_nbytes(stored) < dense_nbytes(tensors)
    back = decode(stored, doc)
    assert back.keys() == tensors.keys() and all(bits(back[k]) == bits(tensors[k]) for k in tensors)


def test_nothing_worth_encoding_is_recorded_as_dense():
    stored, doc = encode({"w": torch.randn(100, 100)})
    assert doc == {"encoding": DENSE} and decode(stored, doc).keys() == {"w"}
    assert decode(stored, None)["w"] is stored["w"]


def test_a_name_whose_pair_names_are_taken_stays_dense():
    tensors = {"w": torch.zeros(4096), "w" + VALUES_SUFFIX: torch.randn(3)}
    stored, doc = encode(tensors)
    assert doc == {"encoding": DENSE} and stored.keys() == tensors.keys()


def test_dense_nbytes_counts_a_tied_tensor_once():
    shared = torch.randn(10, 10)
    assert dense_nbytes({"a": shared, "b": shared, "c": torch.zeros(5, dtype=torch.float16)}) == 400 + 10


# ---------------------------------------------------------------- corrupt encodings


def encoded(numel: int = 20) -> tuple[dict[str, torch.Tensor], dict]:
    t = torch.zeros(numel)
    t[[1, 5, 19]] = torch.tensor([1.0, 2.0, 3.0])
    mask, values = encode_tensor(t)
    doc = {"encoding": ENCODING, "tensors": {"w": {"shape": [numel], "dtype": "float32"}}}
    return {"w" + MASK_SUFFIX: mask, "w" + VALUES_SUFFIX: values}, doc


def lie(what: str) -> tuple[dict[str, torch.Tensor], dict]:
    stored, doc = encoded()
    mask, values = stored["w" + MASK_SUFFIX], stored["w" + VALUES_SUFFIX]
    if what == "mask-length":
        stored["w" + MASK_SUFFIX] = torch.cat([mask, torch.zeros(1, dtype=torch.uint8)])
    elif what == "popcount":
        stored["w" + VALUES_SUFFIX] = values[:2]
    elif what == "pad-bits":
        mask[-1] |= 1  # element 23 of 20
    elif what == "values-dtype":
        stored["w" + VALUES_SUFFIX] = values.half()
    elif what == "missing-values":
        del stored["w" + VALUES_SUFFIX]
    elif what == "missing-mask":
        del stored["w" + MASK_SUFFIX]
    elif what == "encoding":
        doc["encoding"] = "bitmask-v9"
    elif what == "shape":
        doc["tensors"]["w"]["shape"] = [4, -5]
    elif what == "dtype":
        doc["tensors"]["w"]["dtype"] = "int32"
    elif what == "both":
        stored["w"] = torch.zeros(20)
    return stored, doc


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("mask-length", "bit mask has 4 uint8 elements, shape [20] needs 3 uint8"),
        ("popcount", "marks 3 kept elements but 2 values are stored"),
        ("pad-bits", "nonzero pad bits"),
        ("values-dtype", "values are float16 with 1 dims, recorded float32"),
        ("missing-values", f"w{VALUES_SUFFIX} is missing"),
        ("missing-mask", f"w{MASK_SUFFIX} is missing"),
        ("encoding", "unknown storage encoding 'bitmask-v9'"),
        ("shape", "recorded shape [4, -5]"),
        ("dtype", "recorded dtype 'int32' is not a float dtype"),
        ("both", "stored both dense and encoded"),
    ],
)
def test_a_lying_encoding_is_an_error_naming_the_tensor(what, message):
    stored, doc = lie(what)
    with pytest.raises(CorruptEncoding) as info:
        decode(stored, doc)
    assert message in str(info.value) and ("w" in str(info.value) or what == "encoding")


def test_the_unmodified_fixture_decodes():
    stored, doc = encoded()
    assert decode(stored, doc)["w"].nonzero().flatten().tolist() == [1, 5, 19]
    assert math.ceil(20 / 8) == stored["w" + MASK_SUFFIX].numel()
