"""Arbitration: the one place that decides what is written.

Order of authority, per setpoint:
1. the safe action of an active interlock trip (origin "interlock:…") overrides everything;
   when several trips act on one point, the most conservative value (closest to zero) wins;
2. otherwise the last request of the cycle (controllers, then approved actions) is taken;
3. whatever is chosen is clamped to the envelope: the point's rated bounds, the dynamic
   bounds of the moment (e.g. no discharge below the SoC floor) and the bounds of active trips
   (a safe action pins its point, a safe bound keeps it in a range, e.g. "no charging while the
   cells are too hot"). Safe actions are clamped too: a misconfigured safe value must not leave
   the envelope either. Controllers can read the same envelope before they ask.

A setpoint is written only when it changes (beyond its deadband) or when its refresh interval has
passed, so devices with a revert timer (SunSpec RvrtTms) are refreshed before they revert, and
revert on their own if edgeagent dies. Every decision is kept as a `Grant` (who asked for what,
what was granted and why), for the record. Pure, synchronous code: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from edgeagent.cycle import Command
from edgeagent.image import Snapshot
from edgeagent.safety.tracking import Feedback

INTERLOCK_PREFIX = "interlock:"


@dataclass(frozen=True, slots=True)
class Bound:
    """Rated bounds of one writable setpoint, in the point's unit.

    `refresh_s`: re-write the unchanged value this often (keep it below the device's revert
    time); `deadband`: a smaller change is not worth a write. `activate`: other points of the same
    device written (in order) before the setpoint's first write after a (re)connect and with every
    refresh, e.g. SunSpec's revert timer and enable flag: ("WMaxLimPct_RvrtTms", 30),
    ("WMaxLim_Ena", 1). Without them a SunSpec device ignores the setpoint; with the revert timer
    it returns to its default on its own if edgeagent stops refreshing. `feedback`: the point that
    shows whether the device follows (see `tracking.ActuatorWatch`).
    """

    device: str
    point: str
    minimum: float
    maximum: float
    refresh_s: float = 10.0
    deadband: float = 0.0
    activate: tuple[tuple[str, float], ...] = ()
    feedback: Feedback | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.minimum) and math.isfinite(self.maximum)) or self.minimum > self.maximum:
            raise ValueError(f"{self.device}.{self.point}: bounds must be finite with minimum <= maximum, "
                             f"got [{self.minimum}, {self.maximum}]")
        if self.refresh_s <= 0 or self.deadband < 0:
            raise ValueError(f"{self.device}.{self.point}: refresh_s must be > 0 and deadband >= 0")
        for point, value in self.activate:
            if point == self.point or not math.isfinite(value):
                raise ValueError(f"{self.device}.{self.point}: activate {point} = {value} is not a finite "
                                 "value for another point")


DynamicBound = Callable[[Snapshot], tuple[float, float] | None]
"""Extra bounds of the moment for one setpoint (e.g. from SoC); None when they do not apply."""

TripBounds = Callable[[], Mapping[tuple[str, str], tuple[float, float]]]
"""The ranges active interlock trips impose, per setpoint (see `Interlocks.bounds`)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """One arbitration decision: what was asked, by whom, what is written, and why."""

    device: str
    point: str
    requested: float
    granted: float
    origin: str
    note: str  # "", "clamped to [lo, hi]", "override: interlock …", "not finite: refused"
    written: bool


class Arbiter:
    def __init__(self, bounds: Sequence[Bound], dynamic: Mapping[tuple[str, str], DynamicBound] | None = None,
                 trip_bounds: TripBounds | None = None) -> None:
        self.bounds = {(b.device, b.point): b for b in bounds}
        self.dynamic = dict(dynamic or {})
        self.trip_bounds = trip_bounds
        self._last: dict[tuple[str, str], tuple[float, float]] = {}  # value, t_mono of the last write
        self._activated: dict[tuple[str, str], float] = {}  # t_mono of the last activation write
        self._origin: dict[tuple[str, str], str] = {}  # origin of the last write
        self.grants: list[Grant] = []

    def envelope(self, key: tuple[str, str], snapshot: Snapshot) -> tuple[float, float]:
        bound = self.bounds[key]
        lo, hi = bound.minimum, bound.maximum
        extra = self.dynamic.get(key)
        limits = extra(snapshot) if extra is not None else None
        if limits is not None:
            lo, hi = max(lo, limits[0]), min(hi, limits[1])
        tripped = self.trip_bounds().get(key) if self.trip_bounds is not None else None
        if tripped is not None:
            lo, hi = max(lo, tripped[0]), min(hi, tripped[1])
        if lo > hi:  # contradictory bounds: hold the value closest to zero inside the rating
            lo = hi = min(max(0.0, bound.minimum), bound.maximum)
        return lo, hi

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        self.grants = []
        chosen: dict[tuple[str, str], tuple[Command, str]] = {}
        trips: dict[tuple[str, str], list[Command]] = {}
        for request in requests:
            key = (request.device, request.point)
            if request.origin.startswith(INTERLOCK_PREFIX):
                trips.setdefault(key, []).append(request)
            else:
                chosen[key] = (request, "")
        for key, safe in trips.items():
            winner = min(safe, key=lambda c: abs(c.value) if math.isfinite(c.value) else math.inf)
            overridden = chosen.get(key)
            note = f"override: {winner.origin}" + (f" over {overridden[0].origin}" if overridden else "")
            chosen[key] = (winner, note)
        out: list[Command] = []
        for key, (request, note) in chosen.items():
            command = self._grant(key, request, note, snapshot)
            if command is not None:
                out.extend(self._activation(key, snapshot.t_mono))
                out.append(command)
        return tuple(out)

    def _activation(self, key: tuple[str, str], t_mono: float) -> list[Command]:
        bound = self.bounds[key]
        last = self._activated.get(key)
        if not bound.activate or (last is not None and t_mono - last < bound.refresh_s):
            return []
        self._activated[key] = t_mono
        return [Command(bound.device, point, value, "envelope:activate", f"enables {bound.device}.{bound.point}")
                for point, value in bound.activate]

    def _grant(self, key: tuple[str, str], request: Command, note: str, snapshot: Snapshot) -> Command | None:
        if key not in self.bounds:
            self.grants.append(Grant(*key, request.value, math.nan, request.origin,
                                     "refused: no envelope for this setpoint", False))
            return None
        if not math.isfinite(request.value):
            self.grants.append(Grant(*key, request.value, math.nan, request.origin, "refused: not finite", False))
            return None
        lo, hi = self.envelope(key, snapshot)
        granted = min(max(request.value, lo), hi)
        if granted != request.value:
            note = f"{note}; clamped to [{lo:g}, {hi:g}]" if note else f"clamped to [{lo:g}, {hi:g}]"
        # a trip taking over a setpoint is always written at once, even when the value happens to be
        # the one already sent: the device may have drifted, and the record must show the safe write
        taking_over = request.origin.startswith(INTERLOCK_PREFIX) and self._origin.get(key) != request.origin
        write = taking_over or self._due(key, granted, snapshot.t_mono)
        self.grants.append(Grant(*key, request.value, granted, request.origin, note, write))
        if not write:
            return None
        self._last[key] = (granted, snapshot.t_mono)
        self._origin[key] = request.origin
        return Command(request.device, request.point, granted, request.origin, note or request.reason)

    def last_written(self, key: tuple[str, str]) -> float | None:
        """The value last sent to the device for this setpoint (None before the first write or
        after the device reconnected)."""
        last = self._last.get(key)
        return None if last is None else last[0]

    def _due(self, key: tuple[str, str], value: float, t_mono: float) -> bool:
        last = self._last.get(key)
        if last is None:
            return True
        bound = self.bounds[key]
        return abs(value - last[0]) > bound.deadband or t_mono - last[1] >= bound.refresh_s

    def forget(self, device: str) -> None:
        """After a device reconnects its setpoints are unknown: write them again next cycle."""
        for key in [k for k in self._last if k[0] == device]:
            del self._last[key]
        for key in [k for k in self._activated if k[0] == device]:
            del self._activated[key]
