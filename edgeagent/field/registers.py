"""Codec between 16-bit Modbus register words and values.

Register words come from field devices, so `decode` is a parser of untrusted input: whatever the
words are, it returns a value or raises `RegisterDecodeError` (a `ValueError`) with a message that
says what was wrong; it never raises anything else. Judging a value (NaN, sentinel, implausible
scale factor) is the caller's job: `decode` reports what the words say.

Conventions (SunSpec and most Modbus devices):
- bytes within a register are big-endian (Modbus itself fixes this);
- `WordOrder.BIG`: the most significant word comes first; `WordOrder.LITTLE` reverses the order of
  the *words* (not of the bytes inside them), the "word swapped" layout of many vendors;
- strings are two characters per register, first character in the high byte, padded with NULs.

With `sunspec_sentinels=True`, the SunSpec "not implemented" value of each type decodes to None, so
that a device that does not implement a point can never pass off 0x8000 as -32768 W.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from edgeagent.field.points import RegType, WordOrder

__all__ = [
    "RegisterDecodeError",
    "RegisterEncodeError",
    "apply_scale",
    "decode",
    "encode",
    "sentinel_of",
    "unscale",
]


class RegisterDecodeError(ValueError):
    """The register words cannot be decoded as the requested type (wrong count, not 16-bit words)."""


class RegisterEncodeError(ValueError):
    """The value cannot be represented in the requested register type."""


@dataclass(frozen=True, slots=True)
class _IntSpec:
    """How an integer-like type is laid out: width, signedness and SunSpec "not implemented" value.

    `sentinel` is the raw (unsigned, as read) value; None means every raw value is "not implemented"
    (padding holds no data).
    """

    bits: int
    signed: bool
    sentinel: int | None


_INT_SPECS: dict[RegType, _IntSpec] = {
    RegType.INT16: _IntSpec(16, True, 0x8000),
    RegType.UINT16: _IntSpec(16, False, 0xFFFF),
    RegType.INT32: _IntSpec(32, True, 0x8000_0000),
    RegType.UINT32: _IntSpec(32, False, 0xFFFF_FFFF),
    RegType.INT64: _IntSpec(64, True, 0x8000_0000_0000_0000),
    RegType.UINT64: _IntSpec(64, False, 0xFFFF_FFFF_FFFF_FFFF),
    RegType.ACC16: _IntSpec(16, False, 0),
    RegType.ACC32: _IntSpec(32, False, 0),
    RegType.ACC64: _IntSpec(64, False, 0),
    RegType.ENUM16: _IntSpec(16, False, 0xFFFF),
    RegType.ENUM32: _IntSpec(32, False, 0xFFFF_FFFF),
    RegType.BITFIELD16: _IntSpec(16, False, 0xFFFF),
    RegType.BITFIELD32: _IntSpec(32, False, 0xFFFF_FFFF),
    RegType.SUNSSF: _IntSpec(16, True, 0x8000),
    RegType.COUNT: _IntSpec(16, False, 0xFFFF),
    RegType.PAD: _IntSpec(16, False, None),
}

_FLOAT32_NAN = 0x7FC0_0000


def sentinel_of(rtype: RegType) -> int | None:
    """The raw SunSpec "not implemented" value of `rtype` as read (unsigned), for messages.

    FLOAT32 gives the canonical quiet NaN (any NaN counts); STRING and PAD give None (all-zero
    strings count; padding never holds a value).
    """
    if rtype is RegType.FLOAT32:
        return _FLOAT32_NAN
    spec = _INT_SPECS.get(rtype)
    return None if spec is None else spec.sentinel


def _check_words(words: Sequence[int], rtype: RegType) -> None:
    if rtype is RegType.STRING:
        if len(words) == 0:
            raise RegisterDecodeError("string needs at least 1 register, got 0")
    elif len(words) != rtype.size:
        plural = "s" if rtype.size > 1 else ""
        raise RegisterDecodeError(f"{rtype.value} needs {rtype.size} register{plural}, got {len(words)}")
    for i, word in enumerate(words):
        if not isinstance(word, int) or isinstance(word, bool):
            raise RegisterDecodeError(
                f"register word {i} of {rtype.value} is {type(word).__name__} {word!r}, not an integer"
            )
        if not 0 <= word <= 0xFFFF:
            raise RegisterDecodeError(f"register word {i} of {rtype.value} is {word}, outside 0..0xFFFF")


def _int_range(spec: _IntSpec) -> tuple[int, int]:
    if spec.signed:
        return -(1 << (spec.bits - 1)), (1 << (spec.bits - 1)) - 1
    return 0, (1 << spec.bits) - 1


def _compose(words: Sequence[int], word_order: WordOrder) -> int:
    """The unsigned integer the words spell, most significant word first after ordering."""
    ordered = words if word_order is WordOrder.BIG else list(reversed(words))
    raw = 0
    for word in ordered:
        raw = (raw << 16) | word
    return raw


def _split(raw: int, n_words: int, word_order: WordOrder) -> list[int]:
    words = [(raw >> (16 * (n_words - 1 - i))) & 0xFFFF for i in range(n_words)]
    return words if word_order is WordOrder.BIG else list(reversed(words))


def decode(
    words: Sequence[int],
    rtype: RegType,
    word_order: WordOrder = WordOrder.BIG,
    *,
    sunspec_sentinels: bool = False,
) -> int | float | str | None:
    """Decode register words (as read, in wire order) into a value of `rtype`.

    Returns int for integer kinds, float for FLOAT32 (NaN and inf are returned as such when
    sentinels are off: the caller marks them BAD), str for STRING (trailing NULs stripped, UTF-8
    with U+FFFD for invalid bytes so garbage stays visible), and None for a SunSpec "not
    implemented" value when `sunspec_sentinels` is true.

    Raises RegisterDecodeError when the number of words does not fit the type (STRING takes any
    non-zero number) or a word is not an integer in 0..0xFFFF.
    """
    _check_words(words, rtype)
    if rtype is RegType.STRING:
        data = b"".join(word.to_bytes(2, "big") for word in words)
        if sunspec_sentinels and not any(data):
            return None
        return data.rstrip(b"\x00").decode("utf-8", errors="replace")
    raw = _compose(words, word_order)
    if rtype is RegType.FLOAT32:
        value: float = struct.unpack(">f", raw.to_bytes(4, "big"))[0]
        if sunspec_sentinels and math.isnan(value):
            return None
        return value
    spec = _INT_SPECS[rtype]
    if sunspec_sentinels and (spec.sentinel is None or raw == spec.sentinel):
        return None
    if spec.signed and raw >= 1 << (spec.bits - 1):
        return raw - (1 << spec.bits)
    return raw


def encode(value: int | float, rtype: RegType, word_order: WordOrder = WordOrder.BIG) -> list[int]:
    """Encode a number into register words in wire order: the inverse of `decode`.

    Integer kinds take an int or an integral float; a fractional or non-finite number is refused
    rather than silently truncated (use `unscale` to get the integer to write). FLOAT32 takes any
    float in its range, NaN and inf included. Raises RegisterEncodeError for anything that does not
    fit, and for STRING (writes of text are not supported).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RegisterEncodeError(f"cannot encode {type(value).__name__} {value!r} as {rtype.value}")
    if rtype is RegType.STRING:
        raise RegisterEncodeError("encoding strings is not supported; only numeric types can be written")
    if rtype is RegType.FLOAT32:
        try:
            packed = struct.pack(">f", float(value))
        except (OverflowError, struct.error) as exc:
            raise RegisterEncodeError(f"{value!r} is outside the float32 range (±3.4e38)") from exc
        return _split(int.from_bytes(packed, "big"), 2, word_order)
    spec = _INT_SPECS[rtype]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RegisterEncodeError(f"{value!r} is not a finite number; {rtype.value} needs an integer")
        if not value.is_integer():
            raise RegisterEncodeError(f"{value!r} is not an integer; {rtype.value} needs one")
        value = int(value)
    lo, hi = _int_range(spec)
    if not lo <= value <= hi:
        raise RegisterEncodeError(f"{value} is outside the {rtype.value} range {lo}..{hi}")
    return _split(value & ((1 << spec.bits) - 1), spec.bits // 16, word_order)


def apply_scale(raw: int | float, scale: float, sf: int | None) -> float:
    """raw * scale * 10**sf, the engineering value of a scaled register.

    A negative sf divides by 10**-sf instead of multiplying by 10**sf: 123 / 100 is exactly the
    float nearest 1.23, while 123 * 0.01 is not (1.2300000000000002).
    """
    value = float(raw) * scale
    if sf is None or sf == 0:
        return value
    if sf < 0:
        return value / 10.0 ** (-sf)
    return value * 10.0**sf


def unscale(value: float, scale: float, sf: int | None) -> int:
    """The raw integer to write so that `apply_scale(raw, scale, sf)` is nearest to `value`.

    Rounds half away from zero (so +0.5 and -0.5 behave symmetrically, unlike Python's
    round-half-even). Raises RegisterEncodeError for a non-finite value or a zero/non-finite
    scale; the range check against the register type is `encode`'s job.
    """
    if not math.isfinite(value):
        raise RegisterEncodeError(f"cannot write {value!r}: not a finite number")
    if scale == 0 or not math.isfinite(scale):
        raise RegisterEncodeError(f"cannot unscale with scale {scale!r}")
    raw = value / scale
    if sf is not None and sf != 0:
        raw = raw * 10.0 ** (-sf) if sf < 0 else raw / 10.0**sf
    if not math.isfinite(raw):
        raise RegisterEncodeError(f"{value!r} with scale {scale!r} and sf {sf} does not fit any register")
    magnitude = abs(raw)
    whole = math.floor(magnitude)
    if magnitude - whole >= 0.5:  # exact: a float minus its floor loses no bits
        whole += 1
    return whole if raw >= 0 else -whole
