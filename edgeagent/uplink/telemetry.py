"""Which measurements go upstream, and when: report by exception plus a periodic integrity snapshot.

A point is reported when its quality changes, or when its value moves by more than its deadband
from the value last reported. Every `integrity_s` all points are sent, so a consumer that missed
something (or just subscribed) converges. `min_interval_s` caps the rate of change messages: a
point that flutters is reported at most that often, with its latest value. Pure logic, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edgeagent.image import PointView, Quality, Snapshot


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    interval_s: float = 1.0
    integrity_s: float = 300.0
    min_interval_s: float = 1.0
    default_deadband: float = 0.0
    deadbands: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TelemetryBatch:
    kind: str  # "change" | "integrity"
    points: tuple[tuple[str, PointView], ...]


class TelemetryPolicy:
    def __init__(self, cfg: TelemetryConfig) -> None:
        self.cfg = cfg
        self._sent: dict[str, tuple[float | str | None, Quality]] = {}
        self._last_integrity: float | None = None
        self._last_change: float | None = None

    def select(self, snapshot: Snapshot, now_s: float) -> TelemetryBatch | None:
        """The batch to send at `now_s` (monotonic seconds), or None."""
        if not snapshot:
            return None
        if self._last_integrity is None or now_s - self._last_integrity >= self.cfg.integrity_s:
            self._last_integrity = self._last_change = now_s
            points = tuple((name, snapshot[name]) for name in snapshot)
            for name, view in points:
                self._sent[name] = (view.value, view.quality)
            return TelemetryBatch("integrity", points)
        if self._last_change is not None and now_s - self._last_change < self.cfg.min_interval_s:
            return None
        changed = tuple((name, view) for name in snapshot if self._changed(name, view := snapshot[name]))
        if not changed:
            return None
        self._last_change = now_s
        for name, view in changed:
            self._sent[name] = (view.value, view.quality)
        return TelemetryBatch("change", changed)

    def _changed(self, name: str, view: PointView) -> bool:
        last = self._sent.get(name)
        if last is None:
            return True
        last_value, last_quality = last
        if view.quality is not last_quality:
            return True
        if view.quality is not Quality.GOOD:
            return False  # a stale point's value is not news
        value = view.value
        if isinstance(value, int | float) and isinstance(last_value, int | float):
            return abs(value - last_value) > self.cfg.deadbands.get(name, self.cfg.default_deadband)
        return value != last_value
