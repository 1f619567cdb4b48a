"""What an interlock is: its condition, bad-input policy, safe action and bounds, and its events.

Values only (validated on construction, so a bad config fails at load time with a precise
message); the engine that evaluates them every cycle is `interlocks.py`.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

EVENT_TRIP = "interlock.trip"
EVENT_CLEAR = "interlock.clear"
EVENT_LATCHED = "interlock.latched"
EVENT_RESET = "interlock.reset"
EVENT_STALE_INPUT = "interlock.stale_input"


class Condition(enum.Enum):
    """What makes an interlock's condition hold for one point.

    ABOVE: value > limit (release below limit - hysteresis).
    BELOW: value < limit (release above limit + hysteresis).
    OUTSIDE: value < low or value > high (release inside [low + h, high - h], strictly).
    RATE_ABOVE: |d value / dt| > rate_per_s (release below rate_per_s - hysteresis), from
    consecutive GOOD samples of the point.
    A value exactly at the limit neither holds nor releases: the state stays as it is.
    """

    ABOVE = "above"
    BELOW = "below"
    OUTSIDE = "outside"
    RATE_ABOVE = "rate_above"


class BadInput(enum.Enum):
    """What a STALE, BAD, missing or non-numeric input does to the interlock that reads it.

    TRIP (default, fail safe): trip at once, without the pickup delay.
    HOLD: keep the current state (and timers) until the input is good again.
    IGNORE: evaluate the remaining good points only; with none left, behave like HOLD.
    Every policy raises an `interlock.stale_input` event when a point goes bad: faults are visible.
    """

    TRIP = "trip"
    HOLD = "hold"
    IGNORE = "ignore"


class InterlockState(enum.Enum):
    """IDLE: condition absent. PICKUP: condition present, pickup delay running. TRIPPED: safe
    action applied. LATCHED: a latching interlock whose condition has gone; safe action still
    applied until `reset`."""

    IDLE = "idle"
    PICKUP = "pickup"
    TRIPPED = "tripped"
    LATCHED = "latched"


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


@dataclass(frozen=True, slots=True)
class SafeSetpoint:
    """One setpoint an interlock holds while tripped (e.g. BESS power 0, inverter WMaxLimPct 0)."""

    device: str
    point: str
    value: float

    def __post_init__(self) -> None:
        if not self.device or not self.point:
            raise ValueError("safe setpoint needs a device and a point")
        if isinstance(self.value, bool) or not isinstance(self.value, int | float) or not math.isfinite(self.value):
            raise ValueError(f"safe setpoint {self.device}.{self.point}: value must be a finite number, "
                             f"got {self.value!r}")


@dataclass(frozen=True, slots=True)
class SafeBound:
    """A range one setpoint is held inside while tripped, instead of one fixed value: e.g. "no
    charging" (`bess.WSet` >= 0) when the cells are too hot to charge but may still discharge.
    Infinite ends are allowed; the setpoint's rated bounds still apply."""

    device: str
    point: str
    minimum: float = -math.inf
    maximum: float = math.inf

    def __post_init__(self) -> None:
        if not self.device or not self.point:
            raise ValueError("safe bound needs a device and a point")
        if math.isnan(self.minimum) or math.isnan(self.maximum) or not self.minimum <= self.maximum:
            raise ValueError(f"safe bound {self.device}.{self.point}: needs min <= max, got "
                             f"[{self.minimum}, {self.maximum}]")
        if math.isinf(self.minimum) and math.isinf(self.maximum):
            raise ValueError(f"safe bound {self.device}.{self.point}: give min, max or both")


@dataclass(frozen=True, slots=True, kw_only=True)
class InterlockSpec:
    """One interlock as configured. Validated on construction so a bad config fails loudly at load
    time with a precise message, never silently in the cycle."""

    name: str
    points: tuple[str, ...]
    condition: Condition
    limit: float | None = None
    low: float | None = None
    high: float | None = None
    rate_per_s: float | None = None
    hysteresis: float = 0.0
    pickup_s: float = 0.0
    dropout_s: float = 0.0
    latch: bool = False
    on_bad_input: BadInput = BadInput.TRIP
    safe_action: tuple[SafeSetpoint, ...] = ()
    safe_bounds: tuple[SafeBound, ...] = ()

    def __post_init__(self) -> None:
        where = f"interlock {self.name!r}"
        if not self.name:
            raise ValueError("interlock needs a non-empty name")
        if not isinstance(self.points, tuple) or not self.points:
            raise ValueError(f"{where}: points must be a non-empty tuple of point names")
        if any(not isinstance(p, str) or not p for p in self.points):
            raise ValueError(f"{where}: every point must be a non-empty string")
        if len(set(self.points)) != len(self.points):
            raise ValueError(f"{where}: points must not repeat")
        if not isinstance(self.condition, Condition):
            raise ValueError(f"{where}: condition must be a Condition, got {self.condition!r}")
        if not isinstance(self.on_bad_input, BadInput):
            raise ValueError(f"{where}: on_bad_input must be a BadInput, got {self.on_bad_input!r}")
        for label, value in (("hysteresis", self.hysteresis), ("pickup_s", self.pickup_s),
                             ("dropout_s", self.dropout_s)):
            if not _finite(value) or value < 0:
                raise ValueError(f"{where}: {label} must be a finite number >= 0, got {value!r}")
        h = self.hysteresis
        if self.condition in (Condition.ABOVE, Condition.BELOW):
            if not _finite(self.limit):
                raise ValueError(f"{where}: {self.condition.value} needs a finite limit, got {self.limit!r}")
            self._only(where, "limit")
        elif self.condition is Condition.OUTSIDE:
            if not _finite(self.low) or not _finite(self.high):
                raise ValueError(f"{where}: outside needs finite low and high, got low={self.low!r} "
                                 f"high={self.high!r}")
            assert self.low is not None and self.high is not None
            if not self.low < self.high:
                raise ValueError(f"{where}: outside needs low < high, got low={self.low} high={self.high}")
            if not self.low + h < self.high - h:
                raise ValueError(f"{where}: hysteresis {h} leaves no band to release into "
                                 f"(needs low + hysteresis < high - hysteresis)")
            self._only(where, "low", "high")
        else:
            if not _finite(self.rate_per_s) or self.rate_per_s is None or self.rate_per_s <= 0:
                raise ValueError(f"{where}: rate_above needs rate_per_s > 0, got {self.rate_per_s!r}")
            if h >= self.rate_per_s:
                raise ValueError(f"{where}: hysteresis {h} must be below rate_per_s {self.rate_per_s}, "
                                 f"else the interlock could never clear")
            self._only(where, "rate_per_s")
        if not isinstance(self.safe_action, tuple) or not isinstance(self.safe_bounds, tuple):
            raise ValueError(f"{where}: safe_action and safe_bounds must be tuples")
        if not self.safe_action and not self.safe_bounds:
            raise ValueError(f"{where}: safe_action must be a non-empty tuple of SafeSetpoint "
                             "(or give safe_bounds): a trip must do something")
        if any(not isinstance(sp, SafeSetpoint) for sp in self.safe_action):
            raise ValueError(f"{where}: every safe_action entry must be a SafeSetpoint")
        if any(not isinstance(sb, SafeBound) for sb in self.safe_bounds):
            raise ValueError(f"{where}: every safe_bounds entry must be a SafeBound")
        targets = [(sp.device, sp.point) for sp in self.safe_action]
        if len(set(targets)) != len(targets):
            raise ValueError(f"{where}: safe_action sets the same device point twice")
        bounded = [(sb.device, sb.point) for sb in self.safe_bounds]
        if len(set(bounded)) != len(bounded) or set(bounded) & set(targets):
            raise ValueError(f"{where}: a device point appears twice in safe_action / safe_bounds")

    def _only(self, where: str, *allowed: str) -> None:
        """Refuse parameters that the condition does not use: a stray `limit` on an OUTSIDE
        interlock is almost always a config mistake, and silently ignoring it would hide it."""
        for label in ("limit", "low", "high", "rate_per_s"):
            if label not in allowed and getattr(self, label) is not None:
                raise ValueError(f"{where}: {label} is not used by condition {self.condition.value}")

    def describe(self) -> str:
        """The condition in words, for event reasons."""
        if self.condition is Condition.ABOVE:
            return f"above {self.limit:g}"
        if self.condition is Condition.BELOW:
            return f"below {self.limit:g}"
        if self.condition is Condition.OUTSIDE:
            return f"outside [{self.low:g}, {self.high:g}]"
        return f"rate above {self.rate_per_s:g}/s"


@dataclass(frozen=True, slots=True)
class InterlockEvent:
    """A structured event with the values that caused it (None for an unusable input).

    For RATE_ABOVE interlocks `values` also holds `<point>.rate_per_s`.
    """

    name: str
    interlock: str
    t_mono: float
    values: Mapping[str, float | None]
    reason: str
