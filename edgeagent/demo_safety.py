"""The demo's safety scenarios: what each one expects, what the run recorded, and the verdict.

The scenarios themselves (load step, meter loss, heat) live in the plant's scenario files; what
edgeagent must achieve in each lives here, next to the code that measures it, so `passed` means
"this scenario's own expectations held", not merely "nothing crashed".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.daemon import Daemon
from edgeagent.demo_metrics import (
    Write,
    export_metrics,
    first_write_after,
    read_trace,
    rounded,
    trip_metrics,
)
from edgeagent.safety.export_limit import ORIGIN as LIMITER_ORIGIN
from edgeagent.safety.export_limit import FallbackEntered
from edgeagent.safety.interlocks import EVENT_CLEAR, EVENT_RESET, EVENT_TRIP, InterlockEvent

#: Allowance on top of one scan period and the write's own round trip, for a poll already in
#: flight on the same link when the trip happens and for scheduling on a busy machine.
TRIP_ALLOWANCE_S = 0.1


@dataclass(frozen=True, slots=True)
class Expectation:
    """What a scenario must show. None = not checked in this scenario."""

    response_max_s: float | None = None  # export back under the limit for good within this
    fallback_max_s: float | None = None  # meter loss -> fallback setpoints acknowledged within this
    trips: tuple[str, ...] = ()  # interlocks that must trip, react in time and clear again
    takeover_max_s: float | None = None  # while the first such trip lasts, export back under the limit within this
    description: str = ""


EXPECTATIONS: dict[str, Expectation] = {
    "export-step": Expectation(response_max_s=2.0, description="load drop under full sun: battery absorbs"),
    "export-step-full": Expectation(response_max_s=4.0, description="same with a full battery: PV curtails"),
    "meter-loss": Expectation(fallback_max_s=1.0, description="PCC meter stops answering: fallback"),
    "overtemp": Expectation(trips=("bess_overtemp",), takeover_max_s=4.0,
                            description="battery temperature through its limit while it absorbs export: "
                                        "PV curtailment takes over"),
}


@dataclass
class _Trip:
    name: str
    t_mono: float
    t_sample: float
    cause: str  # "condition" or "input" (unusable inputs, e.g. before the first poll)
    cleared: bool = False
    cleared_t: float | None = None


@dataclass
class SafetyRecorder:
    """Listens to the daemon's safety events during the run (see `SafetyPhases.listeners`)."""

    daemon: Daemon
    trips: list[_Trip] = field(default_factory=list)
    fallbacks: list[FallbackEntered] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.daemon.safety.listeners.append(self.on_event)

    def on_event(self, event: object) -> None:
        if isinstance(event, FallbackEntered) and event.last_good_age_s is not None:
            self.fallbacks.append(event)  # (at start-up the meter was never good: no loss to measure)
        elif isinstance(event, InterlockEvent) and event.name == EVENT_TRIP:
            cause = "input" if event.reason.startswith("input not usable") else "condition"
            self.trips.append(_Trip(event.interlock, event.t_mono, self._sample_time(event), cause))
        elif isinstance(event, InterlockEvent) and event.name in (EVENT_CLEAR, EVENT_RESET):
            for trip in self.trips:
                if trip.name == event.interlock and not trip.cleared:
                    trip.cleared, trip.cleared_t = True, event.t_mono

    def _sample_time(self, event: InterlockEvent) -> float:
        """When the triggering sample reached the process image. Events are drained in the same
        loop turn as the cycle that raised them, so the image still holds that cycle's samples."""
        spec = self.daemon.safety.interlocks.specs[event.interlock] if self.daemon.safety.interlocks else None
        if spec is None:
            return event.t_mono
        snapshot = self.daemon.image.snapshot()
        times = [snapshot[p].sample.t_mono for p in spec.points if p in snapshot]
        return max(times) if times else event.t_mono

    def writes(self) -> list[Write]:
        return [Write(w.t_mono, name, w.point, w.value, w.origin, w.reason, w.ok)
                for name, device in self.daemon.devices.items() for w in device.writes]


CheckResult = tuple[str, bool, str]


def report(recorder: SafetyRecorder, scenario: str, trace_path: Path) -> tuple[dict[str, Any], list[CheckResult]]:
    """The summary keys for export, fallback and trips, and the scenario's checks (name, passed, detail)."""
    daemon = recorder.daemon
    expect = EXPECTATIONS.get(scenario, Expectation())
    checks: list[CheckResult] = []
    out: dict[str, Any] = {}
    writes = recorder.writes()
    limiter = daemon.safety.export_limit
    if limiter is not None:
        limit_kw = limiter.config.static_kw
        if limit_kw is None and limiter.config.schedule is not None:
            limit_kw = limiter.config.schedule.default_kw
        trace = read_trace(trace_path)
        limit_kw = float(limit_kw or 0.0)
        m = export_metrics(trace, limit_kw)
        out.update(export_limit_kw=m.export_limit_kw, max_export_kw=rounded(m.max_export_kw),
                   seconds_over_limit=rounded(m.seconds_over_limit), kwh_over_limit=rounded(m.kwh_over_limit, 5),
                   response_s=rounded(m.response_s), trace_steps=len(trace))
        if expect.response_max_s is not None:
            ok = m.response_s is not None and m.response_s <= expect.response_max_s
            detail = ("export never exceeded the limit" if m.max_export_kw is not None and m.seconds_over_limit == 0
                      else f"response {_fmt(m.response_s)} s (target <= {expect.response_max_s:g} s), "
                           f"max export {_fmt(m.max_export_kw)} kW against {m.export_limit_kw:g} kW, "
                           f"{m.seconds_over_limit:.2f} s over")
            checks.append(("export_back_under_limit", ok and m.seconds_over_limit > 0, detail))
        first_trip = next((t for t in recorder.trips if t.cause == "condition" and t.name in expect.trips), None)
        if expect.takeover_max_s is not None:
            end = first_trip.cleared_t if first_trip and first_trip.cleared_t is not None else math.inf
            after = export_metrics([r for r in trace if first_trip and first_trip.t_mono <= r.t_mono < end],
                                   limit_kw)
            taken = after.response_s if after.seconds_over_limit > 0 else 0.0
            out["takeover_response_s"] = rounded(taken)
            ok = first_trip is not None and taken is not None and taken <= expect.takeover_max_s
            checks.append(("export_held_while_tripped", ok,
                           f"while tripped, export back under the limit in {_fmt(taken)} s "
                           f"(target <= {expect.takeover_max_s:g} s), max {_fmt(after.max_export_kw)} kW"
                           if first_trip else "no trip to take over from"))
    fallback_s = None
    if recorder.fallbacks:
        first = recorder.fallbacks[0]
        write = first_write_after(writes, first.t_mono, origin=LIMITER_ORIGIN, reason_prefix="fallback")
        if write is not None:
            fallback_s = write.t_mono - first.t_mono + (first.last_good_age_s or 0.0)
    out["fallback_s"] = rounded(fallback_s)
    if expect.fallback_max_s is not None:
        ok = fallback_s is not None and fallback_s < expect.fallback_max_s
        reason = recorder.fallbacks[0].reason.value if recorder.fallbacks else "never entered"
        checks.append(("meter_loss_fallback", ok,
                       f"fallback setpoints written {_fmt(fallback_s)} s after the last good meter sample "
                       f"({reason}; target < {expect.fallback_max_s:g} s)"))
    period_s = daemon.cfg.scan.period_s
    measured = [trip_metrics(t.name, t.t_sample, t.t_mono, t.cleared, writes) for t in recorder.trips]
    out["trips"] = [{"name": m.name, "reaction_s": rounded(m.reaction_s), "cleared": m.cleared, "cause": t.cause}
                    for m, t in zip(measured, recorder.trips, strict=True)]
    rtts = sorted(r.rtt_s for d in daemon.devices.values() for r in d.writes if r.ok)
    write_rtt = rtts[len(rtts) // 2] if rtts else 0.0
    deadline = period_s + write_rtt + TRIP_ALLOWANCE_S
    for name in expect.trips:
        mine = [m for m, t in zip(measured, recorder.trips, strict=True) if m.name == name and t.cause == "condition"]
        ok = bool(mine) and all(t.reaction_s is not None and t.reaction_s <= deadline and t.cleared for t in mine)
        detail = (f"{len(mine)} trip(s), reaction {', '.join(_fmt(t.reaction_s) for t in mine)} s "
                  f"(target <= {deadline:.3f} s: scan period {period_s:g} s + write round trip {write_rtt:.3f} s "
                  f"+ {TRIP_ALLOWANCE_S:g} s), cleared: {all(t.cleared for t in mine)}" if mine
                  else "never tripped")
        checks.append((f"trip_{name}", ok, detail))
    return out, checks


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
