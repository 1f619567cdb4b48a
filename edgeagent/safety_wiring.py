"""Builds the cycle's safety phases from config and turns their events into log lines and records.

Kept apart from the daemon so the daemon stays wiring of tasks, and so tests can build exactly
the phases a config gives. Nothing here does I/O on the cycle: events go to structlog and to the
uplink's non-blocking queue.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from edgeagent.config_safety import SafetyConfig
from edgeagent.cycle import Arbiter as ArbiterProtocol
from edgeagent.cycle import Phase, last_request_wins
from edgeagent.image import Snapshot
from edgeagent.safety.arbitration import Arbiter, DynamicBound
from edgeagent.safety.export_limit import ExportLimiter, FallbackEntered, FallbackLeft, LimitChanged
from edgeagent.safety.interlocks import InterlockEvent, Interlocks
from edgeagent.safety.tracking import EVENT_NOT_FOLLOWING, ActuatorWatch

log = structlog.get_logger("edgeagent.safety")

EventSink = Callable[[str, str, Mapping[str, Any]], None]
"""(event name, severity, data) → e.g. the uplink's non-blocking emit_event."""


EventListener = Callable[[object], None]
"""Receives each raw phase event (InterlockEvent, LimitChanged, …) as it is drained."""


@dataclass
class SafetyPhases:
    interlocks: Interlocks | None
    export_limit: ExportLimiter | None
    arbiter: Arbiter | None
    watch: ActuatorWatch | None = None
    listeners: list[EventListener] = field(default_factory=list)

    @property
    def phases(self) -> tuple[list[Phase], list[Phase]]:
        """(interlock phases, controller phases) in cycle order."""
        controllers: list[Phase] = [p for p in (self.export_limit, self.watch) if p is not None]
        return ([self.interlocks] if self.interlocks else []), controllers

    @property
    def arbitrate(self) -> ArbiterProtocol:
        return self.arbiter if self.arbiter is not None else last_request_wins

    def drain(self, sink: EventSink | None) -> None:
        """Publish what the phases noticed this cycle: one structured event each."""
        if self.interlocks is not None:
            for ev in self.interlocks.drain_events():
                self._tell(ev)
                severity = "alarm" if ev.name in ("interlock.trip", "interlock.stale_input") else "info"
                data = {"interlock": ev.interlock, "values": dict(ev.values), "reason": ev.reason}
                _emit(sink, ev.name, severity, data)
        if self.export_limit is not None:
            for event in self.export_limit.drain_events():
                self._tell(event)
                name, severity = _LIMIT_EVENTS[type(event)]
                _emit(sink, name, severity, _plain(dataclasses.asdict(event)))
        if self.watch is not None:
            for tracked in self.watch.drain_events():
                self._tell(tracked)
                severity = "warning" if tracked.name == EVENT_NOT_FOLLOWING else "info"
                _emit(sink, tracked.name, severity, _plain(dataclasses.asdict(tracked)))

    def _tell(self, event: object) -> None:
        for listener in self.listeners:
            listener(event)

    def forget_device(self, device: str) -> None:
        if self.arbiter is not None:
            self.arbiter.forget(device)


_LIMIT_EVENTS: dict[type, tuple[str, str]] = {
    LimitChanged: ("export_limit.limit_changed", "info"),
    FallbackEntered: ("export_limit.fallback_entered", "alarm"),
    FallbackLeft: ("export_limit.fallback_left", "info"),
}


def _plain(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in data.items()}


def _emit(sink: EventSink | None, name: str, severity: str, data: Mapping[str, Any]) -> None:
    (log.warning if severity in ("alarm", "warning") else log.info)(name, **data)
    if sink is not None:
        sink(name, severity, data)


def _bess_bound(limiter: ExportLimiter, arbiter: Arbiter, key: tuple[str, str]) -> DynamicBound:
    """The battery setpoint's bounds of the moment: never charge when full or when the SoC is
    unknown, and never discharge so much that export would pass the limit. The export part is
    what makes the export limit an envelope for every other request (approved recommendations):
    a discharge may grow only by the headroom the meter shows now (limit − margin − export), and
    without a usable meter not beyond what the limiter itself asks. The limiter's own request is
    always inside (it is the floor of the upper bound)."""
    bess = limiter.config.bess
    assert bess is not None
    soc_point, soc_max = bess.soc_point, bess.soc_max_pct

    def bound(snapshot: Snapshot) -> tuple[float, float] | None:
        lo, hi = -math.inf, math.inf
        soc = snapshot.value(soc_point)
        if soc is None or soc >= soc_max:
            lo = 0.0  # SoC unknown: never charge blind; full: the BMS would refuse anyway
        own = limiter.bess_request_w
        if limiter.limit_kw is not None:
            if limiter.export_kw is None:  # no usable meter (fallback): nothing more than the limiter asks
                hi = own
            else:
                headroom_w = (limiter.limit_kw - limiter.margin_kw - limiter.export_kw) * 1000.0
                current = arbiter.last_written(key)
                hi = max(own, (0.0 if current is None else current) + headroom_w)
        return None if (lo, hi) == (-math.inf, math.inf) else (lo, hi)

    return bound


def build(cfg: SafetyConfig) -> SafetyPhases:
    interlocks = Interlocks(cfg.interlocks) if cfg.interlocks else None
    limiter = ExportLimiter(cfg.export_limit) if cfg.export_limit is not None else None
    arbiter = None
    if cfg.setpoints or interlocks or limiter:
        arbiter = Arbiter(cfg.setpoints, trip_bounds=interlocks.bounds if interlocks else None)
    if limiter is not None and arbiter is not None and limiter.config.bess is not None:
        bess_key = (limiter.config.bess.device, limiter.config.bess.point)
        arbiter.dynamic[bess_key] = _bess_bound(limiter, arbiter, bess_key)
        if bess_key in arbiter.bounds:
            limiter.envelope = arbiter.envelope
    feedbacks = {(b.device, b.point): b.feedback for b in cfg.setpoints if b.feedback is not None}
    watch = ActuatorWatch(feedbacks, arbiter.last_written) if feedbacks and arbiter is not None else None
    return SafetyPhases(interlocks, limiter, arbiter, watch)


__all__ = ["EventSink", "InterlockEvent", "SafetyPhases", "build"]
