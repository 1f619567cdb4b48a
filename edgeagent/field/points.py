"""What a register-mapped point is, independent of where its address came from.

A raw Modbus point comes straight from config; a SunSpec point is resolved from the device's
discovered model chain. Both end up as a `RegisterPoint`, which is all the Modbus adapter knows.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RegType(enum.Enum):
    """Register encodings. Sizes are in 16-bit registers (see `size`)."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    INT64 = "int64"
    UINT64 = "uint64"
    # SunSpec-only kinds, each with its own "not implemented" sentinel.
    ACC16 = "acc16"
    ACC32 = "acc32"
    ACC64 = "acc64"
    ENUM16 = "enum16"
    ENUM32 = "enum32"
    BITFIELD16 = "bitfield16"
    BITFIELD32 = "bitfield32"
    SUNSSF = "sunssf"
    COUNT = "count"
    STRING = "string"
    PAD = "pad"

    @property
    def size(self) -> int:
        """Registers used by one value of this type (STRING's size comes from its definition)."""
        return _SIZES[self]


_SIZES = {
    RegType.INT16: 1, RegType.UINT16: 1, RegType.ACC16: 1, RegType.ENUM16: 1,
    RegType.BITFIELD16: 1, RegType.SUNSSF: 1, RegType.COUNT: 1, RegType.PAD: 1,
    RegType.INT32: 2, RegType.UINT32: 2, RegType.FLOAT32: 2, RegType.ACC32: 2,
    RegType.ENUM32: 2, RegType.BITFIELD32: 2,
    RegType.INT64: 4, RegType.UINT64: 4, RegType.ACC64: 4,
    RegType.STRING: 1,
}


class Table(enum.Enum):
    HOLDING = "holding"
    INPUT = "input"


class WordOrder(enum.Enum):
    """Order of 16-bit words in multi-register values. BIG = most significant word first (Modbus
    convention, SunSpec); LITTLE = least significant word first (many vendors' 'swapped')."""

    BIG = "big"
    LITTLE = "little"


@dataclass(frozen=True, slots=True)
class RegisterPoint:
    """One point mapped onto Modbus registers.

    value = raw * scale * 10**sf, where sf is read from `sf_address` when set (SunSpec scale
    factor, re-read every poll because devices may change it at run time).
    `sunspec_sentinels`: treat SunSpec "not implemented" raw values (0x8000, 0xFFFF, …) as BAD.
    """

    name: str
    address: int
    type: RegType
    size: int
    unit: str = ""
    table: Table = Table.HOLDING
    word_order: WordOrder = WordOrder.BIG
    scale: float = 1.0
    sf_address: int | None = None
    sunspec_sentinels: bool = False
    writable: bool = False
