"""Fault injection: what can go wrong with a field device, when, and what garbage looks like.

A fault is *state* of a device, not an event: at any wall time each device is online or
offline, live or frozen, sane or garbage, fast or slow.  The state is the union of the
faults scheduled by the scenario (by wall seconds since plant start) and the ones switched
on programmatically by a test.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

DEVICE_NAMES = ("meter", "inverter", "bess")


class FaultKind(enum.StrEnum):
    """The ways a device can misbehave."""

    OFFLINE = "offline"  # TCP server stops listening and drops its connections
    FROZEN = "frozen"  # registers stop updating (a gateway serving cached data)
    GARBAGE = "garbage"  # data registers hold random values and not-implemented sentinels
    SLOW = "slow"  # every reply is delayed by delay_ms


@dataclass(frozen=True)
class FaultSpec:
    """One scheduled fault: ``device`` shows ``kind`` from ``at_s`` for ``duration_s`` (wall seconds)."""

    device: str
    kind: FaultKind
    at_s: float
    duration_s: float
    delay_ms: float = 0.0

    def active(self, elapsed_s: float) -> bool:
        return self.at_s <= elapsed_s < self.at_s + self.duration_s


@dataclass(frozen=True)
class FaultState:
    """The faults a device shows right now."""

    offline: bool = False
    frozen: bool = False
    garbage: bool = False
    delay_ms: float = 0.0

    def merge(self, other: FaultState) -> FaultState:
        """Union of two states (the longer delay wins)."""
        return FaultState(
            offline=self.offline or other.offline,
            frozen=self.frozen or other.frozen,
            garbage=self.garbage or other.garbage,
            delay_ms=max(self.delay_ms, other.delay_ms),
        )

    def describe(self) -> str:
        parts = [name for name in ("offline", "frozen", "garbage") if getattr(self, name)]
        if self.delay_ms > 0.0:
            parts.append(f"slow({self.delay_ms:g} ms)")
        return ",".join(parts) or "healthy"


def scheduled_state(faults: Iterable[FaultSpec], device: str, elapsed_s: float) -> FaultState:
    """The state the scenario's schedule gives ``device`` at ``elapsed_s`` wall seconds."""
    state = FaultState()
    for fault in faults:
        if fault.device != device or not fault.active(elapsed_s):
            continue
        if fault.kind is FaultKind.OFFLINE:
            state = state.merge(FaultState(offline=True))
        elif fault.kind is FaultKind.FROZEN:
            state = state.merge(FaultState(frozen=True))
        elif fault.kind is FaultKind.GARBAGE:
            state = state.merge(FaultState(garbage=True))
        else:
            state = state.merge(FaultState(delay_ms=fault.delay_ms))
    return state


#: Values a broken gateway typically serves: the SunSpec not-implemented sentinels
#: (int16 0x8000, uint16/enum 0xFFFF), zero, and anything at all.
GARBAGE_SENTINELS = (0x8000, 0xFFFF, 0x0000, 0x7FFF)


def garble(registers: Sequence[int], keep: frozenset[int], rng: np.random.Generator) -> list[int]:
    """Replace every register except the offsets in ``keep`` with garbage.

    About half the garbage registers hold a sentinel, the rest uniform random values.  The
    SunS marker and the model headers are kept (``keep``) so that discovery still works and
    the client must notice the garbage in the data itself.
    """
    count = len(registers)
    random_values = rng.integers(0, 0x10000, size=count)
    sentinel_pick = rng.integers(0, 2 * len(GARBAGE_SENTINELS), size=count)
    out = list(registers)
    for i in range(count):
        if i in keep:
            continue
        pick = int(sentinel_pick[i])
        out[i] = GARBAGE_SENTINELS[pick] if pick < len(GARBAGE_SENTINELS) else int(random_values[i])
    return out
