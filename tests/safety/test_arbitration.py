"""Arbitration: interlocks win, everything is clamped to the envelope, writes on change or refresh."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.cycle import Command
from edgeagent.image import PointSpec, ProcessImage, Quality, Sample, Snapshot
from edgeagent.safety.arbitration import Arbiter, Bound

BOUNDS = [Bound("bess", "WSet", -100_000, 100_000, refresh_s=5, deadband=50),
          Bound("pv", "WMaxLimPct", 0, 100, refresh_s=5)]


def snap(t: float = 100.0, soc: float | None = 50.0) -> Snapshot:
    img = ProcessImage([PointSpec("bess.SoC", "%", 10.0)])
    if soc is not None:
        img.write(Sample("bess.SoC", soc, "%", Quality.GOOD, t, 1e9))
    return img.snapshot(t)


def soc_window(snapshot: Snapshot) -> tuple[float, float] | None:
    """No discharge at or below 10 % SoC, no charge at or above 95 %; unknown SoC: hold 0."""
    soc = snapshot.value("bess.SoC")
    if soc is None:
        return (0.0, 0.0)
    return (-math.inf if soc < 95 else 0.0, math.inf if soc > 10 else 0.0)


def test_interlock_safe_action_overrides_controllers_and_says_so() -> None:
    arb = Arbiter(BOUNDS)
    out = arb(snap(), (Command("bess", "WSet", 80_000, "controller:export_limit"),
                       Command("bess", "WSet", 0, "interlock:bess_overtemp")))
    assert out == (Command("bess", "WSet", 0, "interlock:bess_overtemp",
                           "override: interlock:bess_overtemp over controller:export_limit"),)
    assert arb.grants[0].requested == 0 and arb.grants[0].written


def test_most_conservative_trip_wins() -> None:
    arb = Arbiter(BOUNDS)
    (out,) = arb(snap(), (Command("pv", "WMaxLimPct", 50, "interlock:a"),
                          Command("pv", "WMaxLimPct", 0, "interlock:b")))
    assert out.value == 0 and out.origin == "interlock:b"


def test_requests_are_clamped_to_rating_and_dynamic_bounds() -> None:
    arb = Arbiter(BOUNDS, {("bess", "WSet"): soc_window})
    (out,) = arb(snap(soc=8.0), (Command("bess", "WSet", 50_000, "controller:peak"),))
    assert out.value == 0.0 and "clamped to [-100000, 0]" in out.reason
    (out,) = arb(snap(t=101, soc=50.0), (Command("pv", "WMaxLimPct", 140, "controller:x"),))
    assert out.value == 100.0


def test_not_finite_and_unknown_setpoints_are_refused() -> None:
    arb = Arbiter(BOUNDS)
    out = arb(snap(), (Command("bess", "WSet", math.nan, "controller:x"), Command("bess", "Conn", 1, "controller:x")))
    assert out == ()
    assert [g.note for g in arb.grants] == ["refused: not finite", "refused: no envelope for this setpoint"]


def test_writes_only_on_change_or_refresh() -> None:
    arb = Arbiter(BOUNDS)
    req = (Command("bess", "WSet", -20_000, "controller:x"),)
    assert len(arb(snap(t=0), req)) == 1
    assert arb(snap(t=1), req) == ()  # unchanged
    assert arb(snap(t=2), (Command("bess", "WSet", -20_040, "controller:x"),)) == ()  # inside the deadband
    assert len(arb(snap(t=3), (Command("bess", "WSet", -20_100, "controller:x"),))) == 1
    assert len(arb(snap(t=8.1), (Command("bess", "WSet", -20_100, "controller:x"),))) == 1  # refresh
    arb.forget("bess")
    assert len(arb(snap(t=8.2), (Command("bess", "WSet", -20_100, "controller:x"),))) == 1


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="minimum <= maximum"):
        Bound("bess", "WSet", 10, -10)


origins = st.sampled_from(["controller:export_limit", "action:rec-1", "interlock:a", "interlock:b"])
values = st.floats(allow_nan=True, allow_infinity=True) | st.floats(-1e6, 1e6)
requests = st.lists(st.builds(Command, st.sampled_from(["bess", "pv"]), st.sampled_from(["WSet", "WMaxLimPct"]),
                              values, origins), max_size=12)


@given(st.lists(st.tuples(requests, st.one_of(st.none(), st.floats(0, 100))), min_size=1, max_size=20))
def test_no_written_setpoint_is_ever_outside_the_envelope(cycles: list[tuple[list[Command], float | None]]) -> None:
    arb = Arbiter(BOUNDS, {("bess", "WSet"): soc_window})
    for i, (reqs, soc) in enumerate(cycles):
        s = snap(t=float(i), soc=soc)
        for command in arb(s, tuple(reqs)):
            lo, hi = arb.envelope((command.device, command.point), s)
            assert math.isfinite(command.value) and lo <= command.value <= hi
        trips = {(r.device, r.point) for r in reqs if r.origin.startswith("interlock:")}
        for grant in arb.grants:
            if (grant.device, grant.point) in trips and math.isfinite(grant.granted):
                assert grant.origin.startswith("interlock:")  # a trip is never overridden


def test_activation_points_go_before_the_first_write_and_with_each_refresh() -> None:
    bound = Bound("pv", "WMaxLimPct", 0, 100, refresh_s=5, activate=(("WMaxLimPct_RvrtTms", 30), ("WMaxLim_Ena", 1)))
    arb = Arbiter([bound])
    first = arb(snap(t=0), (Command("pv", "WMaxLimPct", 40, "controller:x"),))
    assert [(c.point, c.value, c.origin) for c in first] == [
        ("WMaxLimPct_RvrtTms", 30, "envelope:activate"), ("WMaxLim_Ena", 1, "envelope:activate"),
        ("WMaxLimPct", 40, "controller:x")]
    changed = arb(snap(t=1), (Command("pv", "WMaxLimPct", 35, "controller:x"),))
    assert [c.point for c in changed] == ["WMaxLimPct"]  # a change alone does not re-activate
    refresh = arb(snap(t=6.5), (Command("pv", "WMaxLimPct", 35, "controller:x"),))
    assert [c.point for c in refresh] == ["WMaxLimPct_RvrtTms", "WMaxLim_Ena", "WMaxLimPct"]
    arb.forget("pv")  # reconnected: the device may have reverted
    again = arb(snap(t=7), (Command("pv", "WMaxLimPct", 35, "controller:x"),))
    assert [c.point for c in again][:2] == ["WMaxLimPct_RvrtTms", "WMaxLim_Ena"]


def test_activation_must_name_another_point_with_a_finite_value() -> None:
    with pytest.raises(ValueError, match="activate"):
        Bound("pv", "WMaxLimPct", 0, 100, activate=(("WMaxLimPct", 1),))
    with pytest.raises(ValueError, match="activate"):
        Bound("pv", "WMaxLimPct", 0, 100, activate=(("WMaxLim_Ena", math.nan),))


def test_trip_bounds_clamp_every_request_and_contradictions_hold_zero() -> None:
    active: dict[tuple[str, str], tuple[float, float]] = {("bess", "WSet"): (0.0, math.inf)}  # no charging
    arb = Arbiter(BOUNDS, {("bess", "WSet"): soc_window}, trip_bounds=lambda: active)
    (cmd,) = arb(snap(), (Command("bess", "WSet", -40_000.0, "controller:x", "absorb"),))
    assert cmd.value == 0.0 and "clamped to [0, 100000]" in cmd.reason
    (cmd,) = arb(snap(t=101.0), (Command("bess", "WSet", 30_000.0, "controller:x", "discharge"),))
    assert cmd.value == 30_000.0  # discharging is still allowed
    active[("bess", "WSet")] = (5_000.0, 4_000.0)  # two trips that contradict each other
    assert arb.envelope(("bess", "WSet"), snap()) == (0.0, 0.0)


@given(st.lists(st.tuples(requests, st.one_of(st.none(), st.floats(0, 100)),
                          st.one_of(st.none(), st.tuples(st.floats(-200_000, 200_000), st.floats(-200_000, 200_000)))),
                min_size=1, max_size=20))
def test_no_write_leaves_the_envelope_with_trip_bounds(
        cycles: list[tuple[list[Command], float | None, tuple[float, float] | None]]) -> None:
    active: dict[tuple[str, str], tuple[float, float]] = {}
    arb = Arbiter(BOUNDS, {("bess", "WSet"): soc_window}, trip_bounds=lambda: active)
    for i, (reqs, soc, bound) in enumerate(cycles):
        active.clear()
        if bound is not None:
            active[("bess", "WSet")] = bound
        s = snap(t=float(i), soc=soc)
        for command in arb(s, tuple(reqs)):
            lo, hi = arb.envelope((command.device, command.point), s)
            assert math.isfinite(command.value) and lo <= command.value <= hi
            if command.point == "WSet" and bound is not None and bound[0] <= bound[1]:
                assert max(bound[0], -100_000) <= command.value <= min(bound[1], 100_000) or command.value == 0.0
