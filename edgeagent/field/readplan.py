"""Grouping register points into few Modbus reads, and decoding a poll's replies into values.

A poll is one `ReadBlock` request per block, so the number of blocks is the number of round
trips; on a 9600-baud RS-485 line each one costs tens of milliseconds. `plan_reads` merges nearby
points (reading a few unused registers is cheaper than another request) within the Modbus limit of
125 registers per read. A point's SunSpec scale factor is planned with it, so value and scale factor
come from the same poll: a device may change the scale factor at run time, and a value paired with
last minute's scale factor can be off by a factor of ten.

`decode_points` turns the replies into one `PointResult` per point and never raises on device
data: every defect (short reply, sentinel, NaN, broken scale factor) becomes a result that is not
ok, with a reason for the point's quality.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgeagent.field.points import RegisterPoint, RegType, Table
from edgeagent.field.registers import RegisterDecodeError, apply_scale, decode, sentinel_of

__all__ = ["MAX_READ_REGS", "SF_LIMIT", "PointResult", "ReadBlock", "decode_points", "plan_reads"]

MAX_READ_REGS = 125  # Modbus limit for one read of holding/input registers
SF_LIMIT = 10  # a SunSpec scale factor outside ±10 is a corrupt register, not a real scale


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One read request: `count` registers from `address` in `table`."""

    table: Table
    address: int
    count: int

    @property
    def end(self) -> int:
        """One past the last register."""
        return self.address + self.count

    def covers(self, table: Table, address: int, size: int) -> bool:
        return table is self.table and self.address <= address and address + size <= self.end


@dataclass(frozen=True, slots=True)
class PointResult:
    """The outcome of one point in one poll; `reason` says why it is not ok (empty when ok)."""

    name: str
    value: float | str | None
    ok: bool
    reason: str = ""


def _spans(point: RegisterPoint) -> list[tuple[int, int]]:
    """[start, end) register ranges a point needs: its own, and its scale factor's."""
    spans = [(point.address, point.address + point.size)]
    if point.sf_address is not None:
        spans.append((point.sf_address, point.sf_address + 1))
    return spans


def plan_reads(
    points: Sequence[RegisterPoint], max_regs: int = MAX_READ_REGS, max_gap: int = 8
) -> tuple[ReadBlock, ...]:
    """Blocks covering every point's registers and scale factor, each point within one block.

    Per table, ranges are sorted by address; ranges that share registers are fused first (so no
    point is split and no register is read twice), then neighbours are merged while the gap is at
    most `max_gap` unused registers and the block stays within `max_regs`. The result is sorted
    (holding before input, then by address), so the same points always give the same plan.
    Raises ValueError for a limit out of range or points that cannot fit one read (config errors).
    """
    if not 1 <= max_regs <= MAX_READ_REGS:
        raise ValueError(f"max_regs must be 1..{MAX_READ_REGS}, got {max_regs}")
    if max_gap < 0:
        raise ValueError(f"max_gap must be 0 or more, got {max_gap}")
    by_table: dict[Table, list[tuple[int, int, str]]] = {}
    for point in points:
        if point.size < 1:
            raise ValueError(f"point {point.name}: size must be at least 1, got {point.size}")
        for start, end in _spans(point):
            if start < 0 or end > 0x10000:
                raise ValueError(f"point {point.name}: registers {start}..{end - 1} are outside 0..65535")
            by_table.setdefault(point.table, []).append((start, end, point.name))
    blocks: list[ReadBlock] = []
    for table in Table:
        blocks.extend(_merge(table, by_table.get(table, []), max_regs, max_gap))
    return tuple(blocks)


def _merge(table: Table, spans: list[tuple[int, int, str]], max_regs: int, max_gap: int) -> list[ReadBlock]:
    # 1. fuse ranges that share registers into atoms, which must be read whole.
    atoms: list[list[int]] = []
    names: list[set[str]] = []
    for start, end, name in sorted(spans):
        if atoms and start < atoms[-1][1]:
            atoms[-1][1] = max(atoms[-1][1], end)
            names[-1].add(name)
        else:
            atoms.append([start, end])
            names.append({name})
    for (start, end), who in zip(atoms, names, strict=True):
        if end - start > max_regs:
            raise ValueError(
                f"points {', '.join(sorted(who))} need registers {start}..{end - 1} in one read "
                f"({end - start} registers), more than max_regs={max_regs}"
            )
    # 2. merge atoms into blocks, greedily in address order.
    blocks: list[ReadBlock] = []
    for start, end in atoms:
        last = blocks[-1] if blocks else None
        if last is not None and start - last.end <= max_gap and end - last.address <= max_regs:
            blocks[-1] = ReadBlock(table, last.address, end - last.address)
        else:
            blocks.append(ReadBlock(table, start, end - start))
    return blocks


_Poll = Sequence[tuple[ReadBlock, Sequence[int]]]  # blocks and their words, in a fixed order


def _words(poll: _Poll, table: Table, address: int, size: int) -> Sequence[int] | str:
    """The words of [address, address+size) from the first block holding them, or why not."""
    short = ""
    for block, data in poll:
        if not block.covers(table, address, size):
            continue
        if len(data) != block.count:
            short = (
                f"device returned {len(data)} registers for the read of {block.count} "
                f"at {block.address}"
            )
            continue
        return data[address - block.address : address - block.address + size]
    return short or f"registers {address}..{address + size - 1} ({table.value}) were not read"


def _not_implemented(rtype: RegType) -> str:
    if rtype is RegType.PAD:
        return "padding holds no value"
    if rtype is RegType.STRING:
        return "not implemented (all zero)"
    if rtype is RegType.FLOAT32:
        return "not implemented (NaN)"
    sentinel = sentinel_of(rtype)
    width = 4 * rtype.size
    return f"not implemented (0x{sentinel:0{width}X})" if sentinel else "not implemented (0)"


def _scale_factor(poll: _Poll, point: RegisterPoint) -> int | str | None:
    """The point's scale factor from this poll (None if it has none), or why it is unusable."""
    if point.sf_address is None:
        return None
    words = _words(poll, point.table, point.sf_address, 1)
    if isinstance(words, str):
        return f"scale factor: {words}"
    try:
        sf = decode(words, RegType.SUNSSF, sunspec_sentinels=True)
    except RegisterDecodeError as exc:
        return f"scale factor: {exc}"
    if sf is None:
        return "scale factor not implemented"
    assert isinstance(sf, int)
    if not -SF_LIMIT <= sf <= SF_LIMIT:
        return f"implausible scale factor ({sf})"
    return sf


def _decode_one(poll: _Poll, point: RegisterPoint) -> PointResult:
    def bad(reason: str) -> PointResult:
        return PointResult(point.name, None, False, reason)

    words = _words(poll, point.table, point.address, point.size)
    if isinstance(words, str):
        return bad(words)
    try:
        raw = decode(words, point.type, point.word_order, sunspec_sentinels=point.sunspec_sentinels)
    except RegisterDecodeError as exc:
        return bad(str(exc))
    if raw is None:
        return bad(_not_implemented(point.type))
    if isinstance(raw, str):
        return PointResult(point.name, raw, True)
    sf = _scale_factor(poll, point)
    if isinstance(sf, str):
        return bad(sf)
    value = apply_scale(raw, point.scale, sf)
    if not math.isfinite(value):
        return bad("not a number")
    return PointResult(point.name, value, True)


def decode_points(
    blocks_data: Mapping[ReadBlock, Sequence[int]], points: Sequence[RegisterPoint]
) -> list[PointResult]:
    """Decode every point (in order) from the words read for the blocks of one poll.

    Values are raw * scale * 10**sf with sf from the same poll; strings are returned as read.
    Never raises on device data: a short reply, a missing block, a sentinel, NaN/inf or a
    broken scale factor gives a result that is not ok, with the reason.
    """
    poll = sorted(blocks_data.items(), key=lambda item: (item[0].table.value, item[0].address, item[0].count))
    return [_decode_one(poll, point) for point in points]
