"""Transformer events: a heat wave, a failed cooling fan, a drifting top-oil sensor.

They are ``[[events]]`` of a scenario like :mod:`hil.events` (timed in *plant* seconds since the
scenario start, so a 72-hour heat wave is 72 simulated hours at any speed), but they act on the
transformer of the ``[transformer]`` table, not on the PV/battery physics, so they live apart::

    [[events]]
    kind = "heat_wave"           # ambient + ambient_rise_c, eased in and out over ramp_s
    at_s = 43200.0
    duration_s = 259200.0
    ambient_rise_c = 10.0
    # ramp_s = 64800.0           # optional, default duration_s / 4; 2 * ramp_s <= duration_s

    [[events]]
    kind = "fan_failure"         # ONAF fans stuck off (the unit runs as ONAN); needs cooling = "ONAF"
    at_s = 3600.0
    duration_s = 7200.0

    [[events]]
    kind = "sensor_drift"        # the TopOilTemp *reading* drifts; the true top oil does not
    at_s = 3600.0
    rate_c_per_h = 0.5           # signed, non-zero
    # duration_s = 86400.0       # optional (absent = rest of the run); after it the sensor reads true again
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from hil.events import TIME_EPS_S


class TransformerEventKind(enum.StrEnum):
    """What a transformer event does."""

    HEAT_WAVE = "heat_wave"
    FAN_FAILURE = "fan_failure"
    SENSOR_DRIFT = "sensor_drift"


#: Per kind: (required keys, optional keys) besides ``kind`` (the scenario parser checks them).
TRANSFORMER_EVENT_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    TransformerEventKind.HEAT_WAVE: (("at_s", "duration_s", "ambient_rise_c"), ("ramp_s",)),
    TransformerEventKind.FAN_FAILURE: (("at_s", "duration_s"), ()),
    TransformerEventKind.SENSOR_DRIFT: (("at_s", "rate_c_per_h"), ("duration_s",)),
}


def _active(at_s: float, duration_s: float | None, t_s: float) -> bool:
    t = t_s + TIME_EPS_S
    return at_s <= t and (duration_s is None or t < at_s + duration_s)


@dataclass(frozen=True)
class HeatWave:
    """The ambient temperature is ``ambient_rise_c`` higher, eased in and out with half-cosines of ``ramp_s``.

    A heat wave builds and fades over hours; a step in the ambient would be a front, not a
    heat wave, and would show the model a transient no real transformer sees.
    """

    kind: ClassVar[TransformerEventKind] = TransformerEventKind.HEAT_WAVE
    at_s: float
    duration_s: float
    ambient_rise_c: float
    ramp_s: float

    def rise_at(self, t_s: float) -> float:
        """Extra ambient at plant time ``t_s``, in °C (0 outside the event)."""
        if not _active(self.at_s, self.duration_s, t_s):
            return 0.0
        into_s = max(0.0, t_s - self.at_s)
        edge_s = min(into_s, self.duration_s - into_s)
        if self.ramp_s <= 0.0 or edge_s >= self.ramp_s:
            return self.ambient_rise_c
        return self.ambient_rise_c * 0.5 * (1.0 - math.cos(math.pi * max(edge_s, 0.0) / self.ramp_s))

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "at_s": self.at_s,
            "duration_s": self.duration_s,
            "ambient_rise_c": self.ambient_rise_c,
            "ramp_s": self.ramp_s,
        }


@dataclass(frozen=True)
class FanFailure:
    """The ONAF fans are stuck off from ``at_s`` for ``duration_s`` (the unit falls back to ONAN)."""

    kind: ClassVar[TransformerEventKind] = TransformerEventKind.FAN_FAILURE
    at_s: float
    duration_s: float

    def active(self, t_s: float) -> bool:
        return _active(self.at_s, self.duration_s, t_s)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "at_s": self.at_s, "duration_s": self.duration_s}


@dataclass(frozen=True)
class SensorDrift:
    """The top-oil *reading* is off by ``rate_c_per_h`` per hour since ``at_s`` while active."""

    kind: ClassVar[TransformerEventKind] = TransformerEventKind.SENSOR_DRIFT
    at_s: float
    rate_c_per_h: float
    duration_s: float | None = None  # None: for the rest of the run

    def offset_c(self, t_s: float) -> float:
        if not _active(self.at_s, self.duration_s, t_s):
            return 0.0
        return self.rate_c_per_h * max(0.0, t_s - self.at_s) / 3600.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "at_s": self.at_s,
            "duration_s": self.duration_s,
            "rate_c_per_h": self.rate_c_per_h,
        }


TransformerEvent = HeatWave | FanFailure | SensorDrift


def build_transformer_event(kind: TransformerEventKind, values: dict[str, float]) -> TransformerEvent:
    """Build an event from validated values (the keys of :data:`TRANSFORMER_EVENT_FIELDS`)."""
    if kind is TransformerEventKind.HEAT_WAVE:
        duration_s = values["duration_s"]
        ramp_s = values.get("ramp_s", duration_s / 4.0)
        if 2.0 * ramp_s > duration_s:
            raise ValueError(f"ramp_s: must be at most half of duration_s ({duration_s:g}), got {ramp_s:g}")
        return HeatWave(
            at_s=values["at_s"], duration_s=duration_s, ambient_rise_c=values["ambient_rise_c"], ramp_s=ramp_s
        )
    if kind is TransformerEventKind.FAN_FAILURE:
        return FanFailure(at_s=values["at_s"], duration_s=values["duration_s"])
    return SensorDrift(at_s=values["at_s"], rate_c_per_h=values["rate_c_per_h"], duration_s=values.get("duration_s"))


def heat_wave_rise_c(events: Iterable[TransformerEvent], t_s: float) -> float:
    """Extra ambient from the heat waves at plant time ``t_s``, in °C."""
    return sum(e.rise_at(t_s) for e in events if isinstance(e, HeatWave))


def fans_failed(events: Iterable[TransformerEvent], t_s: float) -> bool:
    """Whether a fan failure holds the fans off at plant time ``t_s``."""
    return any(e.active(t_s) for e in events if isinstance(e, FanFailure))


def drift_offset_c(events: Iterable[TransformerEvent], t_s: float) -> float:
    """How far the top-oil reading is off the truth at plant time ``t_s``, in °C."""
    return sum(e.offset_c(t_s) for e in events if isinstance(e, SensorDrift))
