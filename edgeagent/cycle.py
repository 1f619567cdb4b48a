"""The scan cycle: a fixed-period, straight-line pass over ordered phases, like a PLC scan.

Each cycle: take a snapshot of the process image, run the phases in order
(1 interlocks, 2 controllers, 3 approved actions, 4 arbitration), then hand the resulting
commands to the writers. `step()` is synchronous and never awaits: the safety path cannot wait on
the network, a disk or a model. Only `run()` awaits, and only to sleep until the next period.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from edgeagent.image import ProcessImage, Snapshot

log = structlog.get_logger("edgeagent.cycle")


@dataclass(frozen=True, slots=True)
class Command:
    """A setpoint for one writable point. `origin` says who asked (interlock, controller, action id)."""

    device: str
    point: str
    value: float
    origin: str
    reason: str = ""


class Phase(Protocol):
    """One step of the cycle. It sees the snapshot and the requests of earlier phases, and
    returns its own requests. Phases keep their own small state; they must not do I/O."""

    name: str

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]: ...


class Arbiter(Protocol):
    """Turns all requests of a cycle into the commands to write (clamping, priorities)."""

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]: ...


def last_request_wins(snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
    """The default arbitration until the safety issue brings the envelope: one command per point,
    the request from the latest phase wins."""
    chosen: dict[tuple[str, str], Command] = {}
    for command in requests:
        chosen[(command.device, command.point)] = command
    return tuple(chosen.values())


@dataclass
class CycleStats:
    """Counters the daemon reports (STATUS=, demo summary). Durations in seconds."""

    cycles: int = 0
    overruns: int = 0
    missed_periods: int = 0
    phase_faults: int = 0
    last_duration_s: float = 0.0
    max_duration_s: float = 0.0
    commands_written: int = 0
    durations_s: list[float] = field(default_factory=list)

    def record(self, duration_s: float, keep: int = 1000) -> None:
        self.cycles += 1
        self.last_duration_s = duration_s
        self.max_duration_s = max(self.max_duration_s, duration_s)
        self.durations_s.append(duration_s)
        if len(self.durations_s) > keep:
            del self.durations_s[: len(self.durations_s) - keep]


@dataclass(frozen=True, slots=True)
class CycleRecord:
    """What one cycle did: the commands it issued and when."""

    t_mono: float
    requests: tuple[Command, ...]
    commands: tuple[Command, ...]


class ScanCycle:
    def __init__(
        self,
        image: ProcessImage,
        period_s: float,
        *,
        interlocks: Sequence[Phase] = (),
        controllers: Sequence[Phase] = (),
        actions: Sequence[Phase] = (),
        arbiter: Arbiter = last_request_wins,
        write: Callable[[Command], None] | None = None,
        on_cycle: Callable[[CycleRecord], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if period_s <= 0:
            raise ValueError("period_s must be positive")
        self.image = image
        self.period_s = period_s
        self.phases: tuple[Phase, ...] = (*interlocks, *controllers, *actions)
        self.arbiter = arbiter
        self.write = write
        self.on_cycle = on_cycle
        self.clock = clock
        self.stats = CycleStats()
        self._faulted: set[str] = set()
        self._overrunning = False

    def step(self, t_mono: float | None = None) -> CycleRecord:
        """One scan: snapshot → phases → arbitration → writes. Synchronous by design."""
        snapshot = self.image.snapshot(t_mono)
        requests: tuple[Command, ...] = ()
        for phase in self.phases:
            requests += self._run_phase(phase, snapshot, requests)
        commands = self.arbiter(snapshot, requests)
        if self.write is not None:
            for command in commands:
                self.write(command)
            self.stats.commands_written += len(commands)
        record = CycleRecord(snapshot.t_mono, requests, commands)
        if self.on_cycle is not None:
            self.on_cycle(record)
        return record

    def _run_phase(self, phase: Phase, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        # The one boundary where a phase's bug is caught: it becomes a fault state, logged once
        # when it begins and once when it ends, and the cycle goes on with the other phases.
        try:
            out = phase(snapshot, requests)
        except Exception as exc:
            self.stats.phase_faults += 1
            if phase.name not in self._faulted:
                self._faulted.add(phase.name)
                log.error("cycle.phase_fault", phase=phase.name, error=repr(exc))
            return ()
        if phase.name in self._faulted:
            self._faulted.discard(phase.name)
            log.info("cycle.phase_recovered", phase=phase.name)
        return out

    @property
    def faulted_phases(self) -> frozenset[str]:
        return frozenset(self._faulted)

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run at a fixed period on the monotonic clock until `stop` is set (or cancelled).

        Deadlines are anchored to the start, so jitter does not accumulate. A cycle that ends
        after its next deadline is an overrun; the periods it covered are skipped, counted in
        `missed_periods`, and the schedule re-anchors instead of bursting to catch up.
        """
        next_deadline = self.clock()
        while stop is None or not stop.is_set():
            started = self.clock()
            self.step(started)
            ended = self.clock()
            self.stats.record(ended - started)
            next_deadline += self.period_s
            if ended > next_deadline:
                missed = int((ended - next_deadline) // self.period_s) + 1
                self.stats.overruns += 1
                self.stats.missed_periods += missed
                next_deadline += missed * self.period_s
                if not self._overrunning:
                    self._overrunning = True
                    log.warning("cycle.overrun", duration_ms=round((ended - started) * 1000, 2),
                                period_ms=self.period_s * 1000)
            elif self._overrunning:
                self._overrunning = False
                log.info("cycle.recovered", overruns=self.stats.overruns)
            await asyncio.sleep(max(0.0, next_deadline - self.clock()))
