"""The register codec: known vectors, SunSpec sentinels, errors, and round-trip properties."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.field.points import RegType, WordOrder
from edgeagent.field.registers import (
    RegisterDecodeError,
    RegisterEncodeError,
    apply_scale,
    decode,
    encode,
    sentinel_of,
    unscale,
)

BIG, LITTLE = WordOrder.BIG, WordOrder.LITTLE

# (type, bits, signed) for every integer-like type encode/decode handle.
INT_TYPES = {
    RegType.INT16: (16, True), RegType.UINT16: (16, False), RegType.INT32: (32, True),
    RegType.UINT32: (32, False), RegType.INT64: (64, True), RegType.UINT64: (64, False),
    RegType.ACC16: (16, False), RegType.ACC32: (32, False), RegType.ACC64: (64, False),
    RegType.ENUM16: (16, False), RegType.ENUM32: (32, False), RegType.BITFIELD16: (16, False),
    RegType.BITFIELD32: (32, False), RegType.SUNSSF: (16, True), RegType.COUNT: (16, False),
    RegType.PAD: (16, False),
}


# ------------------------------------------------------------------------------------ known vectors
@pytest.mark.parametrize(
    ("words", "rtype", "order", "expected"),
    [
        ([0x3F80, 0x0000], RegType.FLOAT32, BIG, 1.0),
        ([0x0000, 0x3F80], RegType.FLOAT32, LITTLE, 1.0),
        ([0xC120, 0x0000], RegType.FLOAT32, BIG, -10.0),
        ([0xFFFF, 0xFFFE], RegType.INT32, BIG, -2),
        ([0xFFFE, 0xFFFF], RegType.INT32, LITTLE, -2),
        # little word order swaps the words, never the bytes inside them
        ([0x1234, 0x5678], RegType.UINT32, BIG, 0x12345678),
        ([0x5678, 0x1234], RegType.UINT32, LITTLE, 0x12345678),
        ([0x0001, 0x0002, 0x0003, 0x0004], RegType.UINT64, BIG, 0x0001000200030004),
        ([0x0004, 0x0003, 0x0002, 0x0001], RegType.UINT64, LITTLE, 0x0001000200030004),
        ([0xFFFF] * 4, RegType.INT64, BIG, -1),
        ([0xFFFF], RegType.INT16, BIG, -1),
        ([0x7FFF], RegType.INT16, BIG, 32767),
        ([0xFFFE], RegType.SUNSSF, BIG, -2),
        ([0x0002], RegType.SUNSSF, BIG, 2),
        ([0xFFFF], RegType.UINT16, BIG, 65535),
        ([0x0001, 0x86A0], RegType.ACC32, BIG, 100000),
        ([0x8000, 0x0000], RegType.BITFIELD32, BIG, 0x80000000),
        ([0x0003], RegType.ENUM16, LITTLE, 3),  # word order does not matter for one register
    ],
)
def test_known_vectors(words: list[int], rtype: RegType, order: WordOrder, expected: float) -> None:
    assert decode(words, rtype, order) == expected
    assert encode(expected, rtype, order) == words


def test_strings_are_big_endian_per_register_and_lose_trailing_nuls() -> None:
    assert decode([0x5375, 0x6E53], RegType.STRING) == "SunS"
    assert decode([0x4142, 0x4300, 0x0000], RegType.STRING) == "ABC"
    assert decode([0x4142, 0x4300, 0x0000], RegType.STRING, sunspec_sentinels=True) == "ABC"
    # word order is a multi-register-number thing: strings ignore it
    assert decode([0x4142, 0x4344], RegType.STRING, LITTLE) == "ABCD"
    # UTF-8 is decoded; invalid bytes show up as U+FFFD instead of failing
    assert decode([0xC3A9, 0x0000], RegType.STRING) == "é"
    assert decode([0xFF41], RegType.STRING) == "\ufffdA"


def test_empty_string_vs_sentinel() -> None:
    assert decode([0, 0, 0], RegType.STRING) == ""
    assert decode([0, 0, 0], RegType.STRING, sunspec_sentinels=True) is None


# ---------------------------------------------------------------------------------------- sentinels
@pytest.mark.parametrize(
    ("rtype", "words", "without"),
    [
        (RegType.INT16, [0x8000], -32768),
        (RegType.SUNSSF, [0x8000], -32768),
        (RegType.UINT16, [0xFFFF], 0xFFFF),
        (RegType.ENUM16, [0xFFFF], 0xFFFF),
        (RegType.BITFIELD16, [0xFFFF], 0xFFFF),
        (RegType.COUNT, [0xFFFF], 0xFFFF),
        (RegType.ACC16, [0], 0),
        (RegType.ACC32, [0, 0], 0),
        (RegType.ACC64, [0, 0, 0, 0], 0),
        (RegType.INT32, [0x8000, 0x0000], -(2**31)),
        (RegType.UINT32, [0xFFFF, 0xFFFF], 2**32 - 1),
        (RegType.ENUM32, [0xFFFF, 0xFFFF], 2**32 - 1),
        (RegType.BITFIELD32, [0xFFFF, 0xFFFF], 2**32 - 1),
        (RegType.INT64, [0x8000, 0, 0, 0], -(2**63)),
        (RegType.UINT64, [0xFFFF] * 4, 2**64 - 1),
        (RegType.PAD, [0x8000], 0x8000),
    ],
)
def test_sunspec_sentinels(rtype: RegType, words: list[int], without: int) -> None:
    assert decode(words, rtype, sunspec_sentinels=True) is None
    assert decode(words, rtype, sunspec_sentinels=False) == without


def test_int32_sentinel_respects_word_order() -> None:
    assert decode([0x0000, 0x8000], RegType.INT32, LITTLE, sunspec_sentinels=True) is None
    assert decode([0x0000, 0x8000], RegType.INT32, BIG, sunspec_sentinels=True) == 0x8000


def test_values_next_to_sentinels_are_values() -> None:
    assert decode([0x8001], RegType.INT16, sunspec_sentinels=True) == -32767
    assert decode([0xFFFE], RegType.UINT16, sunspec_sentinels=True) == 0xFFFE
    assert decode([1], RegType.ACC16, sunspec_sentinels=True) == 1
    assert decode([0, 0], RegType.INT32, sunspec_sentinels=True) == 0


@pytest.mark.parametrize("nan_bits", [0x7FC00000, 0x7F800001, 0xFFC00000, 0xFFFFFFFF])
def test_any_float32_nan_is_the_sentinel(nan_bits: int) -> None:
    words = [nan_bits >> 16, nan_bits & 0xFFFF]
    assert decode(words, RegType.FLOAT32, sunspec_sentinels=True) is None
    value = decode(words, RegType.FLOAT32)
    assert isinstance(value, float) and math.isnan(value)


def test_float32_infinity_is_returned_as_such() -> None:
    assert decode([0x7F80, 0], RegType.FLOAT32, sunspec_sentinels=True) == math.inf
    assert decode([0xFF80, 0], RegType.FLOAT32) == -math.inf


def test_sentinel_of() -> None:
    assert sentinel_of(RegType.INT16) == 0x8000
    assert sentinel_of(RegType.ACC32) == 0
    assert sentinel_of(RegType.FLOAT32) == 0x7FC00000
    assert sentinel_of(RegType.STRING) is None


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("words", "rtype", "message"),
    [
        ([1, 2], RegType.INT16, "int16 needs 1 register, got 2"),
        ([1], RegType.FLOAT32, "float32 needs 2 registers, got 1"),
        ([1, 2, 3], RegType.UINT64, "uint64 needs 4 registers, got 3"),
        ([], RegType.UINT16, "uint16 needs 1 register, got 0"),
        ([], RegType.STRING, "string needs at least 1 register, got 0"),
        ([0x10000], RegType.UINT16, "register word 0 of uint16 is 65536, outside 0..0xFFFF"),
        ([0, -1], RegType.INT32, "register word 1 of int32 is -1, outside 0..0xFFFF"),
        ([1.5], RegType.UINT16, "register word 0 of uint16 is float 1.5, not an integer"),
        ([True], RegType.UINT16, "register word 0 of uint16 is bool True, not an integer"),
    ],
)
def test_decode_errors_are_precise(words: list[int], rtype: RegType, message: str) -> None:
    with pytest.raises(RegisterDecodeError) as info:
        decode(words, rtype)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("value", "rtype", "fragment"),
    [
        (32768, RegType.INT16, "outside the int16 range -32768..32767"),
        (-1, RegType.UINT16, "outside the uint16 range 0..65535"),
        (2**32, RegType.UINT32, "outside the uint32 range"),
        (-(2**63) - 1, RegType.INT64, "outside the int64 range"),
        (-1, RegType.ACC32, "outside the acc32 range"),
        (math.nan, RegType.INT16, "not a finite number"),
        (math.inf, RegType.UINT32, "not a finite number"),
        (2.5, RegType.INT16, "2.5 is not an integer"),
        (True, RegType.UINT16, "cannot encode bool"),
        (1, RegType.STRING, "encoding strings is not supported"),
        (1e39, RegType.FLOAT32, "outside the float32 range"),
        (10**400, RegType.FLOAT32, "outside the float32 range"),
    ],
)
def test_encode_errors(value: float, rtype: RegType, fragment: str) -> None:
    with pytest.raises(RegisterEncodeError, match=fragment):
        encode(value, rtype)


def test_encode_integral_float_and_float32_specials() -> None:
    assert encode(-2.0, RegType.INT32) == [0xFFFF, 0xFFFE]
    assert encode(math.nan, RegType.FLOAT32) == [0x7FC0, 0x0000]
    assert encode(math.inf, RegType.FLOAT32, LITTLE) == [0x0000, 0x7F80]
    assert encode(3, RegType.FLOAT32) == [0x4040, 0x0000]


# --------------------------------------------------------------------------------------- properties
def _int_values(rtype: RegType) -> st.SearchStrategy[int]:
    bits, signed = INT_TYPES[rtype]
    return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else st.integers(0, 2**bits - 1)


@given(data=st.data(), rtype=st.sampled_from(sorted(INT_TYPES, key=lambda t: t.value)),
       order=st.sampled_from(WordOrder))
def test_integer_round_trip(data: st.DataObject, rtype: RegType, order: WordOrder) -> None:
    value = data.draw(_int_values(rtype))
    words = encode(value, rtype, order)
    assert len(words) == rtype.size and all(0 <= w <= 0xFFFF for w in words)
    assert decode(words, rtype, order) == value


@given(value=st.floats(width=32, allow_nan=False), order=st.sampled_from(WordOrder))
def test_float32_round_trip(value: float, order: WordOrder) -> None:
    words = encode(value, RegType.FLOAT32, order)
    decoded = decode(words, RegType.FLOAT32, order)
    assert decoded == value
    assert math.copysign(1.0, decoded) == math.copysign(1.0, value)  # -0.0 stays -0.0


@given(bits=st.integers(0, 2**32 - 1))
def test_float32_decode_matches_ieee754(bits: int) -> None:
    expected = struct.unpack(">f", bits.to_bytes(4, "big"))[0]
    value = decode([bits >> 16, bits & 0xFFFF], RegType.FLOAT32)
    assert isinstance(value, float)
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


@given(
    words=st.lists(st.one_of(st.integers(-5, 0x1_0005), st.integers()), max_size=10),
    rtype=st.sampled_from(RegType),
    order=st.sampled_from(WordOrder),
    sentinels=st.booleans(),
)
def test_decode_only_ever_raises_register_decode_error(
    words: list[int], rtype: RegType, order: WordOrder, sentinels: bool
) -> None:
    try:
        value = decode(words, rtype, order, sunspec_sentinels=sentinels)
    except RegisterDecodeError:
        return
    assert value is None or isinstance(value, int | float | str)


@given(data=st.data(), rtype=st.sampled_from(RegType), order=st.sampled_from(WordOrder))
def test_decode_of_well_formed_words_never_raises(data: st.DataObject, rtype: RegType, order: WordOrder) -> None:
    size = data.draw(st.integers(1, 16)) if rtype is RegType.STRING else rtype.size
    words = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=size, max_size=size))
    for sentinels in (False, True):
        value = decode(words, rtype, order, sunspec_sentinels=sentinels)
        assert value is None or isinstance(value, int | float | str)


# ------------------------------------------------------------------------------------------ scaling
def test_apply_scale() -> None:
    assert apply_scale(123, 1.0, -2) == 1.23  # exactly the float nearest 1.23
    assert apply_scale(-5, 1.0, 3) == -5000.0
    assert apply_scale(7, 0.5, None) == 3.5
    assert apply_scale(7, 2.0, 0) == 14.0
    assert isinstance(apply_scale(7, 1.0, None), float)


def test_unscale_rounds_half_away_from_zero() -> None:
    assert unscale(1.23, 1.0, -2) == 123
    assert unscale(0.5, 1.0, 0) == 1
    assert unscale(-0.5, 1.0, 0) == -1
    assert unscale(2.5, 1.0, None) == 3
    assert unscale(0.49999999999999994, 1.0, 0) == 0
    assert unscale(5000.0, 1.0, 3) == 5
    assert unscale(3.5, 0.5, None) == 7


@pytest.mark.parametrize(("value", "scale"), [(math.nan, 1.0), (math.inf, 1.0), (1.0, 0.0), (1.0, math.nan)])
def test_unscale_refuses_non_finite(value: float, scale: float) -> None:
    with pytest.raises(RegisterEncodeError):
        unscale(value, scale, 0)


@given(raw=st.integers(-(2**31), 2**31 - 1), sf=st.integers(-10, 10))
def test_unscale_inverts_apply_scale(raw: int, sf: int) -> None:
    assert unscale(apply_scale(raw, 1.0, sf), 1.0, sf) == raw
