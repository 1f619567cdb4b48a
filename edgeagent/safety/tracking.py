"""Actuator watch: notices when a device does not follow the setpoint edgeagent wrote.

A write that the device acknowledges is not proof the plant obeys: a battery in local mode, a
BMS at its SoC limit, an inverter whose enable flag was reset all accept the register and do
nothing. Without this check the controllers would keep integrating against a plant that ignores
them, and the record would show setpoints "granted" that never happened. The watch compares a
feedback point with what was last written and raises one event when the device stops following
(after a grace time, for the actuator's own lag) and one when it follows again; it never writes.

Pure, synchronous, no I/O: a Phase of the scan cycle that returns no commands.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edgeagent.cycle import Command
from edgeagent.image import Snapshot

EVENT_NOT_FOLLOWING = "actuator.not_following"
EVENT_FOLLOWING = "actuator.following"


class FollowMode(enum.Enum):
    """EQUAL: feedback ≈ expected (a battery's power). AT_MOST: feedback <= expected (a PV
    inverter's output under its limit: less sun is not disobedience)."""

    EQUAL = "equal"
    AT_MOST = "at_most"


@dataclass(frozen=True, slots=True)
class Feedback:
    """How to check one setpoint. expected = setpoint × scale (× the value of `scale_point`)."""

    point: str
    tolerance: float
    within_s: float = 5.0
    mode: FollowMode = FollowMode.EQUAL
    scale: float = 1.0
    scale_point: str | None = None

    def __post_init__(self) -> None:
        if not self.point:
            raise ValueError("feedback needs a point")
        for label, value in (("tolerance", self.tolerance), ("within_s", self.within_s)):
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"feedback {label} must be a finite number > 0, got {value!r}")
        if not math.isfinite(self.scale) or self.scale == 0:
            raise ValueError(f"feedback scale must be finite and non-zero, got {self.scale!r}")


@dataclass(frozen=True, slots=True)
class TrackingEvent:
    name: str
    device: str
    point: str
    t_mono: float
    setpoint: float
    expected: float
    feedback: float
    for_s: float


LastWritten = Callable[[tuple[str, str]], float | None]
"""(device, point) → the value last written, or None before any write."""


class ActuatorWatch:
    """The watch Phase ("actuator_watch")."""

    name = "actuator_watch"

    def __init__(self, feedbacks: Mapping[tuple[str, str], Feedback], last_written: LastWritten) -> None:
        self.feedbacks = dict(feedbacks)
        self._last_written = last_written
        self._off_since: dict[tuple[str, str], float] = {}
        self._flagged: set[tuple[str, str]] = set()
        self._events: list[TrackingEvent] = []

    @property
    def not_following(self) -> frozenset[tuple[str, str]]:
        return frozenset(self._flagged)

    def drain_events(self) -> list[TrackingEvent]:
        events, self._events = self._events, []
        return events

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        t = snapshot.t_mono
        for key, fb in self.feedbacks.items():
            self._check(key, fb, snapshot, t)
        return ()

    def _check(self, key: tuple[str, str], fb: Feedback, snapshot: Snapshot, t: float) -> None:
        written = self._last_written(key)
        feedback = snapshot.value(fb.point) if fb.point in snapshot and snapshot[fb.point].good else None
        scale = fb.scale
        if fb.scale_point is not None:
            factor = snapshot.value(fb.scale_point) if fb.scale_point in snapshot else None
            scale = math.nan if factor is None or not snapshot[fb.scale_point].good else scale * factor
        if written is None or feedback is None or not math.isfinite(feedback) or not math.isfinite(scale):
            # unknown is not disobedient: stale inputs are the interlocks' business
            self._off_since.pop(key, None)
            return
        value = written
        expected = value * scale
        error = feedback - expected
        off = error > fb.tolerance if fb.mode is FollowMode.AT_MOST else abs(error) > fb.tolerance
        if not off:
            # a lagging actuator is off only briefly after a step: `within_s` of continuous
            # deviation is the grace for its dynamics
            self._off_since.pop(key, None)
            if key in self._flagged:
                self._flagged.discard(key)
                self._events.append(TrackingEvent(EVENT_FOLLOWING, *key, t, value, expected, feedback, 0.0))
            return
        since = self._off_since.setdefault(key, t)
        if key not in self._flagged and t - since >= fb.within_s:
            self._flagged.add(key)
            self._events.append(TrackingEvent(EVENT_NOT_FOLLOWING, *key, t, value, expected, feedback, t - since))
