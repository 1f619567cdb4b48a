"""Interlocks: the first phase of every scan cycle, and the one that always wins.

Each interlock watches one or more points for a condition (above, below, outside a band, rate of
change too fast), with hysteresis, a pickup delay and a dropout delay. While it is tripped it
requests its safe setpoints every cycle (so a device that reverts or is overwritten gets them back
at once). A latching interlock stays tripped after the condition goes away until someone resets it
locally with `Interlocks.reset`; nothing else clears it.

Why this shape: DESIGN.md principle 1 says the safety path is synchronous, deterministic and does
no I/O. So this module only reads the snapshot it is handed, takes time only from
`snapshot.t_mono`, and reports what happened as structured events that the caller drains and logs.
Principle 2 says a stale, BAD or missing input moves what depends on it to its safe state at once,
visibly; that is the default `BadInput.TRIP` policy here, without waiting for the pickup delay.
"""


from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from edgeagent.cycle import Command
from edgeagent.image import PointView, Quality, Snapshot
from edgeagent.safety.interlock_spec import (
    EVENT_CLEAR,
    EVENT_LATCHED,
    EVENT_RESET,
    EVENT_STALE_INPUT,
    EVENT_TRIP,
    BadInput,
    Condition,
    InterlockEvent,
    InterlockSpec,
    InterlockState,
    SafeBound,
    SafeSetpoint,
)


@dataclass(frozen=True, slots=True)
class _Reading:
    """One point as this interlock sees it in one cycle."""

    value: float | None      # the numeric value, or None when unusable
    test: float | None       # what the condition compares: the value, or the rate; None = unknown
    bad: str                 # why the input is unusable ("" when usable)


@dataclass(slots=True)
class _Runtime:
    """Mutable per-interlock state; private so only the phase changes it."""

    state: InterlockState = InterlockState.IDLE
    pickup_since: float | None = None
    release_since: float | None = None
    reason: str = ""
    bad_points: frozenset[str] = frozenset()
    # the condition itself was seen while tripped (not only unusable inputs): only that latches
    condition_seen: bool = False
    # rate of change: last good sample per point (its t_mono, value) and the latest rate
    last_sample: dict[str, tuple[float, float]] = field(default_factory=dict)
    rate: dict[str, float] = field(default_factory=dict)


def _numeric(view: PointView) -> tuple[float | None, str]:
    """The point's value if usable, else (None, why). Only GOOD, finite numbers are usable."""
    if view.quality is not Quality.GOOD:
        why = view.sample.reason or "no reason given"
        return None, f"{view.quality.value} ({why})"
    raw = view.value
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None, f"not numeric ({raw!r})"
    try:
        value = float(raw)
    except OverflowError:  # an int too large for a float
        return None, "not finite (overflow)"
    if not math.isfinite(value):
        return None, f"not finite ({value!r})"
    return value, ""


class Interlocks:
    """The interlock phase of the scan cycle (name "interlocks").

    Call it once per cycle with the snapshot; it returns the safe setpoints of every active trip,
    origin `interlock:NAME`. Events accumulate until `drain_events()`.
    """

    name = "interlocks"

    def __init__(self, specs: Iterable[InterlockSpec]) -> None:
        self._specs: dict[str, InterlockSpec] = {}
        for spec in specs:
            if spec.name in self._specs:
                raise ValueError(f"interlock {spec.name!r} is configured twice")
            self._specs[spec.name] = spec
        self._rt = {name: _Runtime() for name in self._specs}
        self._events: list[InterlockEvent] = []
        self._t_mono: float | None = None

    @property
    def specs(self) -> Mapping[str, InterlockSpec]:
        return dict(self._specs)

    def state(self, name: str) -> InterlockState:
        return self._rt[name].state

    def active(self) -> frozenset[str]:
        """Names of interlocks whose safe action is applied (TRIPPED or LATCHED)."""
        return frozenset(n for n, rt in self._rt.items()
                         if rt.state in (InterlockState.TRIPPED, InterlockState.LATCHED))

    def reason(self, name: str) -> str:
        """Why the interlock is tripped or latched ("" when idle)."""
        return self._rt[name].reason

    def bounds(self) -> dict[tuple[str, str], tuple[float, float]]:
        """The envelope the active trips impose, per setpoint: a safe action holds its point at one
        value, a safe bound keeps it in a range; several trips on one point intersect (if they
        contradict, the arbiter holds the value closest to zero). Controllers read this through
        the arbiter's envelope, so they plan with what will really be granted."""
        out: dict[tuple[str, str], tuple[float, float]] = {}
        for name in self.active():
            spec = self._specs[name]
            ranges = [((sp.device, sp.point), (float(sp.value), float(sp.value))) for sp in spec.safe_action]
            ranges += [((sb.device, sb.point), (sb.minimum, sb.maximum)) for sb in spec.safe_bounds]
            for key, (lo, hi) in ranges:
                old = out.get(key)
                out[key] = (lo, hi) if old is None else (max(old[0], lo), min(old[1], hi))
        return out

    def drain_events(self) -> list[InterlockEvent]:
        events, self._events = self._events, []
        return events

    def reset(self, name: str, *, by: str = "local") -> str | None:
        """Local reset of a latched interlock. Returns None when reset, else why not.

        Allowed only once the condition has released (state LATCHED) and every input is usable:
        resetting while the cause is still there (or cannot be seen) would only re-trip, or worse,
        briefly lift the safe action. `by` names who asked (e.g. "alice (uid 1000)"); it goes into
        the reset event's reason, so the log and the uplink say who lifted the safe action.
        """
        rt = self._rt.get(name)
        if rt is None:
            return "unknown interlock"
        spec = self._specs[name]
        if not spec.latch:
            return "not latched"
        if rt.state is InterlockState.TRIPPED:
            return "condition still present"
        if rt.state is not InterlockState.LATCHED:
            return "not tripped"
        if rt.bad_points:
            # a cause that cannot be seen is not a cause that is gone
            return f"input not usable: {', '.join(sorted(rt.bad_points))}"
        rt.state = InterlockState.IDLE
        rt.pickup_since = rt.release_since = None
        rt.condition_seen = False
        self._events.append(InterlockEvent(EVENT_RESET, name, self._t_mono if self._t_mono is not None else 0.0,
                                           MappingProxyType({}),
                                           "local reset" if by == "local" else f"local reset by {by}"))
        rt.reason = ""
        return None

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        t = snapshot.t_mono
        self._t_mono = t
        out: list[Command] = []
        for name, spec in self._specs.items():
            rt = self._rt[name]
            self._evaluate(spec, rt, snapshot, t)
            if rt.state in (InterlockState.TRIPPED, InterlockState.LATCHED):
                origin = f"interlock:{name}"
                out.extend(Command(sp.device, sp.point, float(sp.value), origin, rt.reason)
                           for sp in spec.safe_action)
        return tuple(out)

    # -- evaluation -------------------------------------------------------------------------------

    def _read(self, spec: InterlockSpec, rt: _Runtime, snapshot: Snapshot) -> dict[str, _Reading]:
        readings: dict[str, _Reading] = {}
        for point in spec.points:
            if point not in snapshot:
                value, bad = None, "missing (not in the process image)"
            else:
                view = snapshot[point]
                value, bad = _numeric(view)
            if spec.condition is not Condition.RATE_ABOVE:
                readings[point] = _Reading(value, value, bad)
                continue
            if value is None:
                # the rate is computed from consecutive good samples only
                rt.last_sample.pop(point, None)
                rt.rate.pop(point, None)
                readings[point] = _Reading(None, None, bad)
                continue
            t_s = snapshot[point].sample.t_mono
            last = rt.last_sample.get(point)
            if last is None or t_s > last[0]:
                if last is not None:
                    rt.rate[point] = (value - last[1]) / (t_s - last[0])
                rt.last_sample[point] = (t_s, value)
            # a repeated sample (same t_mono) keeps the previous rate; an older one is ignored
            readings[point] = _Reading(value, rt.rate.get(point), "")
        return readings

    def _holds(self, spec: InterlockSpec, x: float) -> bool:
        if spec.condition is Condition.ABOVE:
            assert spec.limit is not None
            return x > spec.limit
        if spec.condition is Condition.BELOW:
            assert spec.limit is not None
            return x < spec.limit
        if spec.condition is Condition.OUTSIDE:
            assert spec.low is not None and spec.high is not None
            return x < spec.low or x > spec.high
        assert spec.rate_per_s is not None
        return abs(x) > spec.rate_per_s

    def _released(self, spec: InterlockSpec, x: float) -> bool:
        h = spec.hysteresis
        if spec.condition is Condition.ABOVE:
            assert spec.limit is not None
            return x < spec.limit - h
        if spec.condition is Condition.BELOW:
            assert spec.limit is not None
            return x > spec.limit + h
        if spec.condition is Condition.OUTSIDE:
            assert spec.low is not None and spec.high is not None
            return spec.low + h < x < spec.high - h
        assert spec.rate_per_s is not None
        return abs(x) < spec.rate_per_s - h

    @staticmethod
    def _values(spec: InterlockSpec, readings: Mapping[str, _Reading]) -> dict[str, float | None]:
        values: dict[str, float | None] = {p: r.value for p, r in readings.items()}
        if spec.condition is Condition.RATE_ABOVE:
            values.update({f"{p}.rate_per_s": r.test for p, r in readings.items()})
        return values

    def _emit(self, kind: str, spec: InterlockSpec, t: float, values: Mapping[str, float | None],
              reason: str) -> None:
        self._events.append(InterlockEvent(kind, spec.name, t, MappingProxyType(dict(values)), reason))

    def _trip(self, spec: InterlockSpec, rt: _Runtime, t: float, values: Mapping[str, float | None],
              reason: str, *, by_condition: bool = True) -> None:
        rt.pickup_since = rt.release_since = None
        rt.condition_seen = rt.condition_seen or by_condition
        if rt.state is InterlockState.LATCHED:
            # the cause came back before the reset: reset is refused again, safe action never lifted
            rt.state = InterlockState.TRIPPED
            rt.reason = reason
            return
        if rt.state is InterlockState.TRIPPED:
            return
        rt.state = InterlockState.TRIPPED
        rt.reason = reason
        self._emit(EVENT_TRIP, spec, t, values, reason)

    def _evaluate(self, spec: InterlockSpec, rt: _Runtime, snapshot: Snapshot, t: float) -> None:
        readings = self._read(spec, rt, snapshot)
        values = self._values(spec, readings)
        bad = {p: r.bad for p, r in readings.items() if r.bad}
        newly_bad = set(bad) - rt.bad_points
        rt.bad_points = frozenset(bad)
        if newly_bad:
            detail = "; ".join(f"{p}: {bad[p]}" for p in spec.points if p in newly_bad)
            self._emit(EVENT_STALE_INPUT, spec, t, {p: values[p] for p in spec.points if p in newly_bad},
                       f"{detail} (policy {spec.on_bad_input.value})")

        if bad and spec.on_bad_input is BadInput.TRIP:
            detail = "; ".join(f"{p}: {why}" for p, why in bad.items())
            self._trip(spec, rt, t, values, f"input not usable: {detail}", by_condition=False)
            return
        if bad and spec.on_bad_input is BadInput.HOLD:
            # unknown inputs prove neither a cause nor its absence: keep the state, restart dropout
            rt.release_since = None
            return
        usable = [(p, r.test) for p, r in readings.items() if not r.bad]
        if not usable:
            rt.release_since = None  # IGNORE with nothing left to look at: behave like HOLD
            return

        holding = [(p, x) for p, x in usable if x is not None and self._holds(spec, x)]
        released = all(x is not None and self._released(spec, x) for _, x in usable)

        if rt.state in (InterlockState.IDLE, InterlockState.PICKUP):
            if not holding:
                rt.state, rt.pickup_since = InterlockState.IDLE, None
                return
            if rt.pickup_since is None:
                rt.pickup_since = t
            if t - rt.pickup_since >= spec.pickup_s:
                what = ", ".join(f"{p}={x:g}" for p, x in holding)
                unit = "rate " if spec.condition is Condition.RATE_ABOVE else ""
                self._trip(spec, rt, t, values,
                           f"{unit}{what} {spec.describe()} for {t - rt.pickup_since:g} s")
            else:
                rt.state = InterlockState.PICKUP
            return

        if holding and rt.state is InterlockState.LATCHED:
            what = ", ".join(f"{p}={x:g}" for p, x in holding)
            self._trip(spec, rt, t, values, f"{what} {spec.describe()} again before reset")
            return
        if holding:
            rt.condition_seen = True  # tripped on inputs, and now the inputs show the condition
        if not released:
            rt.release_since = None
            return
        if rt.state is InterlockState.LATCHED:
            return
        if rt.release_since is None:
            rt.release_since = t
        if t - rt.release_since < spec.dropout_s:
            return
        rt.release_since = None
        if spec.latch and rt.condition_seen:
            rt.state = InterlockState.LATCHED
            self._emit(EVENT_LATCHED, spec, t, values,
                       f"condition cleared; latched until local reset (was: {rt.reason})")
        else:
            # an input outage is not an event of the plant: once the inputs are back and show no
            # condition, even a latching interlock clears (else every restart would need a reset)
            rt.state = InterlockState.IDLE
            self._emit(EVENT_CLEAR, spec, t, values, f"condition cleared (was: {rt.reason})")
            rt.reason = ""
            rt.condition_seen = False


__all__ = [
    "EVENT_CLEAR",
    "EVENT_LATCHED",
    "EVENT_RESET",
    "EVENT_STALE_INPUT",
    "EVENT_TRIP",
    "BadInput",
    "Condition",
    "InterlockEvent",
    "InterlockSpec",
    "InterlockState",
    "Interlocks",
    "SafeBound",
    "SafeSetpoint",
]
