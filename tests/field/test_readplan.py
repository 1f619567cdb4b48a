"""Read planning (coverage, limits, determinism) and decoding a poll (never raises on device data)."""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.field.points import RegisterPoint, RegType, Table, WordOrder
from edgeagent.field.readplan import PointResult, ReadBlock, decode_points, plan_reads

H, IN = Table.HOLDING, Table.INPUT


def pt(name: str, address: int, rtype: RegType = RegType.UINT16, *, size: int | None = None,
       table: Table = H, sf: int | None = None, scale: float = 1.0, sentinels: bool = True,
       order: WordOrder = WordOrder.BIG) -> RegisterPoint:
    return RegisterPoint(name=name, address=address, type=rtype, size=rtype.size if size is None else size, table=table,
                         sf_address=sf, scale=scale, sunspec_sentinels=sentinels, word_order=order)


# ------------------------------------------------------------------------------------------- planning
def test_neighbours_merge_and_distant_points_do_not() -> None:
    points = [pt("a", 100), pt("b", 101, RegType.INT32), pt("c", 111), pt("d", 121)]
    # a,b: 100..102; c at 111 is 8 unused registers away (103..110) → same block; d 9 away → new one
    assert plan_reads(points) == (ReadBlock(H, 100, 12), ReadBlock(H, 121, 1))
    assert plan_reads(points, max_gap=0) == (ReadBlock(H, 100, 3), ReadBlock(H, 111, 1), ReadBlock(H, 121, 1))


def test_scale_factor_registers_are_planned_with_their_points() -> None:
    points = [pt("w", 40084, RegType.INT16, sf=40085), pt("a", 40072, sf=40076)]
    assert plan_reads(points) == (ReadBlock(H, 40072, 14),)
    far = [pt("w", 1000, RegType.INT16, sf=2000)]
    assert plan_reads(far) == (ReadBlock(H, 1000, 1), ReadBlock(H, 2000, 1))


def test_blocks_respect_max_regs() -> None:
    points = [pt(f"p{i}", 10 + 2 * i, RegType.UINT32) for i in range(100)]  # 200 registers, no gaps
    blocks = plan_reads(points)
    assert blocks == (ReadBlock(H, 10, 124), ReadBlock(H, 134, 76))  # 125 would split a uint32
    assert plan_reads(points, max_regs=10)[0] == ReadBlock(H, 10, 10)


def test_tables_are_planned_separately_holding_first() -> None:
    points = [pt("i", 5, table=IN), pt("h", 6, table=H), pt("i2", 7, table=IN)]
    assert plan_reads(points) == (ReadBlock(H, 6, 1), ReadBlock(IN, 5, 3))


def test_overlapping_points_share_one_block_and_empty_plan() -> None:
    points = [pt("whole", 10, RegType.UINT32), pt("low", 11), pt("sf_as_point", 11, RegType.SUNSSF)]
    assert plan_reads(points, max_regs=2, max_gap=0) == (ReadBlock(H, 10, 2),)
    assert plan_reads([]) == ()


@pytest.mark.parametrize(
    ("points", "kwargs", "message"),
    [
        ([pt("s", 0, RegType.STRING, size=16)], {"max_regs": 8}, r"points s need registers 0\.\.15 in one read"),
        ([pt("a", 0, RegType.UINT32), pt("b", 1, RegType.UINT32)], {"max_regs": 2}, "points a, b need registers 0..2"),
        ([pt("a", 65535, RegType.UINT32)], {}, "registers 65535..65536 are outside 0..65535"),
        ([pt("a", 0, sf=-1)], {}, "registers -1..-1 are outside"),
        ([pt("a", 0)], {"max_regs": 126}, "max_regs must be 1..125"),
        ([pt("a", 0)], {"max_regs": 0}, "max_regs must be 1..125"),
        ([pt("a", 0)], {"max_gap": -1}, "max_gap must be 0 or more"),
        ([pt("a", 0, size=0)], {}, "size must be at least 1"),
    ],
)
def test_plan_errors(points: list[RegisterPoint], kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plan_reads(points, **kwargs)


_TYPES = [t for t in RegType if t is not RegType.STRING]


@st.composite
def points_strategy(draw: st.DrawFn, max_size: int = 16) -> RegisterPoint:
    string = draw(st.booleans()) and draw(st.booleans())
    rtype = RegType.STRING if string else draw(st.sampled_from(_TYPES))
    size = draw(st.integers(1, max_size)) if string else rtype.size
    region = draw(st.sampled_from([0, 30000, 40000, 65536 - 300]))
    address = region + draw(st.integers(0, 299 - size))
    sf = draw(st.none() | st.integers(region, region + 299))
    return RegisterPoint(
        name=f"p{draw(st.integers(0, 10**6))}", address=address, type=rtype, size=size,
        table=draw(st.sampled_from(Table)), sf_address=sf, sunspec_sentinels=draw(st.booleans()),
        word_order=draw(st.sampled_from(WordOrder)), scale=draw(st.sampled_from([1.0, 0.1, -2.0, math.nan])),
    )


def _needed(points: Sequence[RegisterPoint]) -> dict[Table, set[int]]:
    needed: dict[Table, set[int]] = {t: set() for t in Table}
    for p in points:
        needed[p.table].update(range(p.address, p.address + p.size))
        if p.sf_address is not None:
            needed[p.table].add(p.sf_address)
    return needed


def _check_refusal(exc: ValueError, points: Sequence[RegisterPoint], max_regs: int) -> None:
    """The only refusal for valid points: overlapping points that together exceed max_regs."""
    match = re.search(r"need registers (\d+)\.\.(\d+) in one read", str(exc))
    assert match, str(exc)
    start, end = int(match[1]), int(match[2])
    assert end - start + 1 > max_regs
    cluster = set(range(start, end + 1))
    assert any(cluster <= regs for regs in _needed(points).values()), f"{exc}: not all of them are needed"


@given(points=st.lists(points_strategy(), max_size=40), max_regs=st.integers(1, 125), max_gap=st.integers(0, 20))
def test_plan_properties(points: list[RegisterPoint], max_regs: int, max_gap: int) -> None:
    try:
        blocks = plan_reads(points, max_regs=max_regs, max_gap=max_gap)
    except ValueError as exc:
        _check_refusal(exc, points, max_regs)
        return
    # deterministic, whatever the order of the points
    assert plan_reads(random.Random(1).sample(points, len(points)), max_regs, max_gap) == blocks
    needed = _needed(points)
    for table in Table:
        mine = [b for b in blocks if b.table is table]
        assert mine == sorted(mine, key=lambda b: b.address)
        for block, nxt in itertools.pairwise(mine):
            assert block.end <= nxt.address  # no overlap
        covered: set[int] = set()
        for b in mine:
            assert 1 <= b.count <= max_regs
            assert b.address in needed[table] and b.end - 1 in needed[table]  # no wasted edges
            gap = 0
            for reg in range(b.address, b.end):
                gap = 0 if reg in needed[table] else gap + 1
                assert gap <= max_gap
            covered.update(range(b.address, b.end))
        assert needed[table] <= covered
    for p in points:  # each point (and its scale factor) lies inside exactly one block
        assert sum(b.covers(p.table, p.address, p.size) for b in blocks) == 1
        if p.sf_address is not None:
            assert sum(b.covers(p.table, p.sf_address, 1) for b in blocks) == 1


# ------------------------------------------------------------------------------------------ decoding
def poll(points: list[RegisterPoint], regs: dict[int, int], table: Table = H) -> list[PointResult]:
    blocks = plan_reads(points)
    data = {b: [regs.get(a, 0) for a in range(b.address, b.end)] for b in blocks if b.table is table}
    return decode_points(data, points)


def test_scaled_values_use_the_scale_factor_of_the_same_poll() -> None:
    w = pt("w", 100, RegType.INT16, sf=101)
    (result,) = poll([w], {100: 0xFB2E, 101: 0xFFFE})
    assert result == PointResult("w", -12.34, True, "")
    (result,) = poll([w], {100: 5, 101: 2})
    assert result.value == 500.0 and isinstance(result.value, float)
    (result,) = poll([pt("t", 7, RegType.INT16, scale=0.1)], {7: 215})
    assert result.value == pytest.approx(21.5)


@pytest.mark.parametrize(
    ("sf_word", "reason"),
    [(0x8000, "scale factor not implemented"), (11, "implausible scale factor (11)"),
     (0xFFF5, "implausible scale factor (-11)")],
)
def test_broken_scale_factors(sf_word: int, reason: str) -> None:
    (result,) = poll([pt("w", 100, RegType.INT16, sf=101)], {100: 1, 101: sf_word})
    assert result == PointResult("w", None, False, reason)


def test_scale_factor_at_the_limits_is_fine() -> None:
    results = poll([pt("a", 1, sf=2), pt("b", 3, sf=4)], {1: 3, 2: 10, 3: 3, 4: 0xFFF6})
    assert [r.value for r in results] == [3e10, 3e-10]


@pytest.mark.parametrize(
    ("rtype", "words", "sentinels", "reason"),
    [
        (RegType.INT16, [0x8000], True, "not implemented (0x8000)"),
        (RegType.UINT16, [0xFFFF], True, "not implemented (0xFFFF)"),
        (RegType.UINT32, [0xFFFF, 0xFFFF], True, "not implemented (0xFFFFFFFF)"),
        (RegType.INT64, [0x8000, 0, 0, 0], True, "not implemented (0x8000000000000000)"),
        (RegType.ACC32, [0, 0], True, "not implemented (0)"),
        (RegType.PAD, [0], True, "padding holds no value"),
        (RegType.FLOAT32, [0x7FC0, 0], True, "not implemented (NaN)"),
        (RegType.FLOAT32, [0x7FC0, 0], False, "not a number"),
        (RegType.FLOAT32, [0x7F80, 0], True, "not a number"),
        (RegType.FLOAT32, [0xFF80, 0], False, "not a number"),
    ],
)
def test_values_that_are_not_values(rtype: RegType, words: list[int], sentinels: bool, reason: str) -> None:
    point = pt("x", 10, rtype, sentinels=sentinels)
    (result,) = poll([point], dict(enumerate(words, start=10)))
    assert result == PointResult("x", None, False, reason)


def test_without_sentinels_the_same_words_are_values() -> None:
    (result,) = poll([pt("x", 10, RegType.INT16, sentinels=False)], {10: 0x8000})
    assert result == PointResult("x", -32768.0, True, "")


def test_strings() -> None:
    s = pt("sn", 10, RegType.STRING, size=4)
    assert poll([s], {10: 0x4142, 11: 0x4300}) == [PointResult("sn", "ABC", True, "")]
    assert poll([s], {}) == [PointResult("sn", None, False, "not implemented (all zero)")]


def test_missing_short_and_corrupt_replies() -> None:
    a, b = pt("a", 100, RegType.UINT32), pt("b", 104, sf=200)
    block = ReadBlock(H, 100, 5)
    assert decode_points({}, [a]) == [PointResult("a", None, False, "registers 100..101 (holding) were not read")]
    short = decode_points({block: [1, 2, 3]}, [a])
    assert short == [PointResult("a", None, False, "device returned 3 registers for the read of 5 at 100")]
    corrupt = decode_points({block: [1, 70000, 0, 0, 0]}, [a])
    assert corrupt[0].reason == "register word 1 of uint32 is 70000, outside 0..0xFFFF"
    no_sf = decode_points({block: [0, 1, 0, 0, 7]}, [a, b])
    assert no_sf == [PointResult("a", 1.0, True, ""),
                     PointResult("b", None, False, "scale factor: registers 200..200 (holding) were not read")]


def test_input_registers_are_looked_up_in_input_blocks_only() -> None:
    point = pt("t", 5, table=IN)
    data = {ReadBlock(H, 5, 1): [1], ReadBlock(IN, 5, 1): [2]}
    assert decode_points(data, [point]) == [PointResult("t", 2.0, True, "")]


def test_results_follow_the_order_of_the_points() -> None:
    points = [pt("z", 3), pt("a", 1), pt("m", 2)]
    assert [r.name for r in poll(points, {1: 1, 2: 2, 3: 3})] == ["z", "a", "m"]


_words = st.lists(st.one_of(st.integers(0, 0xFFFF), st.sampled_from([0x8000, 0xFFFF, 0x7FC0, -1, 0x10000])),
                  max_size=130)


@given(points=st.lists(points_strategy(), max_size=20), data=st.data())
def test_decode_points_never_raises_on_device_data(points: list[RegisterPoint], data: st.DataObject) -> None:
    try:
        blocks = plan_reads(points)
    except ValueError:
        blocks = ()
    extra = data.draw(st.lists(st.builds(ReadBlock, st.sampled_from(Table), st.integers(0, 65535),
                                         st.integers(1, 125)), max_size=3))
    replies = {b: data.draw(_words) for b in (*blocks, *extra)}
    results = decode_points(replies, points)
    assert [r.name for r in results] == [p.name for p in points]
    for r in results:
        if r.ok:
            assert r.reason == "" and r.value is not None
            assert isinstance(r.value, str) or math.isfinite(r.value)
        else:
            assert r.value is None and r.reason
