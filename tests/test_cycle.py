"""Scan cycle: phase order, synchronous step, fixed period, overrun accounting."""

from __future__ import annotations

import asyncio
import time

import pytest

from edgeagent.cycle import Command, ScanCycle
from edgeagent.image import PointSpec, ProcessImage, Quality, Sample, Snapshot


class Recorder:
    def __init__(self, name: str, log: list[str], emit: tuple[Command, ...] = ()) -> None:
        self.name = name
        self.log = log
        self.emit = emit
        self.seen: list[tuple[Command, ...]] = []

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        self.log.append(self.name)
        self.seen.append(requests)
        return self.emit


def img() -> ProcessImage:
    return ProcessImage([PointSpec("pcc.W", "W", 1.0)])


def test_phases_run_in_order_and_see_earlier_requests() -> None:
    order: list[str] = []
    trip = Command("bess", "WSet", 0.0, "interlock:soc_low")
    ctrl = Command("bess", "WSet", 5000.0, "controller:export")
    interlock = Recorder("interlock", order, (trip,))
    controller = Recorder("controller", order, (ctrl,))
    action = Recorder("action", order)
    written: list[Command] = []
    cycle = ScanCycle(img(), 0.1, interlocks=[interlock], controllers=[controller], actions=[action],
                      write=written.append)
    record = cycle.step()
    assert order == ["interlock", "controller", "action"]
    assert controller.seen == [(trip,)] and action.seen == [(trip, ctrl)]
    assert record.requests == (trip, ctrl)
    assert written == [ctrl]  # default arbitration: one command per point, latest phase wins


def test_arbiter_decides_what_is_written() -> None:
    def interlocks_win(snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        return tuple(r for r in requests if r.origin.startswith("interlock"))[:1]

    trip = Command("bess", "WSet", 0.0, "interlock:x")
    written: list[Command] = []
    cycle = ScanCycle(img(), 0.1, interlocks=[Recorder("i", [], (trip,))],
                      controllers=[Recorder("c", [], (Command("bess", "WSet", 9.0, "controller"),))],
                      arbiter=interlocks_win, write=written.append)
    cycle.step()
    assert written == [trip] and cycle.stats.commands_written == 1


def test_phase_sees_the_snapshot_not_live_image() -> None:
    image = img()
    image.write(Sample("pcc.W", 100.0, "W", Quality.GOOD, time.monotonic(), time.time()))
    seen: list[float | None] = []

    class Peek:
        name = "peek"

        def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
            image.write(Sample("pcc.W", 999.0, "W", Quality.GOOD, time.monotonic(), time.time()))
            seen.append(snapshot.value("pcc.W"))
            return ()

    ScanCycle(image, 0.1, controllers=[Peek()]).step()
    assert seen == [100.0]


def test_a_failing_phase_is_a_fault_state_not_a_crash() -> None:
    class Broken:
        name = "broken"
        fail = True

        def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
            if self.fail:
                raise ZeroDivisionError("bug")
            return ()

    order: list[str] = []
    broken = Broken()
    cycle = ScanCycle(img(), 0.1, interlocks=[broken], controllers=[Recorder("after", order)])
    cycle.step()
    cycle.step()
    assert cycle.faulted_phases == {"broken"} and cycle.stats.phase_faults == 2
    assert order == ["after", "after"]
    broken.fail = False
    cycle.step()
    assert cycle.faulted_phases == frozenset()


def test_step_is_synchronous() -> None:
    assert not asyncio.iscoroutinefunction(ScanCycle.step)


async def test_runs_at_a_fixed_period_without_drift() -> None:
    stamps: list[float] = []
    cycle = ScanCycle(img(), 0.02, on_cycle=lambda r: stamps.append(r.t_mono))
    stop = asyncio.Event()
    task = asyncio.create_task(cycle.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(task, 1)
    # 25 periods in 0.5 s; deadlines are anchored so the count does not drift with jitter.
    assert 20 <= len(stamps) <= 27
    span = stamps[-1] - stamps[0]
    assert span == pytest.approx(0.02 * (len(stamps) - 1), abs=0.03)
    assert cycle.stats.overruns == 0


async def test_overruns_are_counted_and_missed_periods_skipped() -> None:
    slow_cycles = {3, 4}
    count = 0

    class Slow:
        name = "slow"

        def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
            nonlocal count
            count += 1
            if count in slow_cycles:
                time.sleep(0.055)  # blocks for more than two 20 ms periods
            return ()

    cycle = ScanCycle(img(), 0.02, controllers=[Slow()])
    stop = asyncio.Event()
    task = asyncio.create_task(cycle.run(stop))
    await asyncio.sleep(0.4)
    stop.set()
    await asyncio.wait_for(task, 1)
    assert cycle.stats.overruns >= 2
    assert cycle.stats.missed_periods >= 4
    assert cycle.stats.max_duration_s >= 0.055


def test_period_must_be_positive() -> None:
    with pytest.raises(ValueError):
        ScanCycle(img(), 0)
