"""Interlocks: pickup, hysteresis, dropout, latch/reset, bad-input policies, rate of change, and
property tests over random snapshot sequences. Time is synthetic: every snapshot gets its t_mono."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.cycle import Command
from edgeagent.image import PointSpec, ProcessImage, Quality, Sample
from edgeagent.safety.interlocks import (
    EVENT_CLEAR,
    EVENT_LATCHED,
    EVENT_RESET,
    EVENT_STALE_INPUT,
    EVENT_TRIP,
    BadInput,
    Condition,
    Interlocks,
    InterlockSpec,
    InterlockState,
    SafeBound,
    SafeSetpoint,
)

SAFE = (SafeSetpoint("bess", "WSet", 0.0), SafeSetpoint("inv", "WMaxLimPct", 0.0))
POINTS = ("pcc.V", "pcc.Hz", "bess.T")


def image() -> ProcessImage:
    return ProcessImage([PointSpec(p, "", 5.0) for p in POINTS])


def spec(**kw: object) -> InterlockSpec:
    base: dict[str, object] = {"name": "ov", "points": ("pcc.V",), "condition": Condition.ABOVE, "limit": 100.0,
                               "hysteresis": 2.0, "safe_action": SAFE}
    base.update(kw)
    return InterlockSpec(**base)  # type: ignore[arg-type]


class Rig:
    """An image, one interlock phase, and a helper to write a value and run one cycle."""

    def __init__(self, *specs: InterlockSpec) -> None:
        self.img = image()
        self.ph = Interlocks(specs)

    def step(self, t: float, quality: Quality = Quality.GOOD, reason: str = "",
             **values: float | str | None) -> tuple[Command, ...]:
        for point, value in values.items():
            name = point.replace("_", ".")
            self.img.write(Sample(name, value, "", quality, t, 1e9 + t, reason))
        return self.ph(self.img.snapshot(t), ())

    def kinds(self) -> list[str]:
        return [e.name for e in self.ph.drain_events()]


def safe_in(cmds: tuple[Command, ...], name: str) -> bool:
    origin = f"interlock:{name}"
    got = {(c.device, c.point, c.value) for c in cmds if c.origin == origin}
    return got == {(s.device, s.point, s.value) for s in SAFE}


# -- spec validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("kw", "message"), [
    ({"name": ""}, "non-empty name"),
    ({"points": ()}, "non-empty tuple"),
    ({"points": ["pcc.V"]}, "non-empty tuple"),
    ({"points": ("pcc.V", "pcc.V")}, "must not repeat"),
    ({"limit": None}, "needs a finite limit"),
    ({"limit": math.nan}, "needs a finite limit"),
    ({"hysteresis": -1.0}, "hysteresis must be a finite number >= 0"),
    ({"pickup_s": -0.1}, "pickup_s must be"),
    ({"dropout_s": math.inf}, "dropout_s must be"),
    ({"low": 1.0}, "low is not used by condition above"),
    ({"condition": Condition.OUTSIDE, "limit": None, "low": 2.0, "high": 1.0}, "needs low < high"),
    ({"condition": Condition.OUTSIDE, "limit": None, "low": 1.0, "high": None}, "needs finite low and high"),
    ({"condition": Condition.OUTSIDE, "limit": None, "low": 0.0, "high": 4.0, "hysteresis": 2.0}, "no band"),
    ({"condition": Condition.RATE_ABOVE, "limit": None, "rate_per_s": 0.0}, "rate_per_s > 0"),
    ({"condition": Condition.RATE_ABOVE, "limit": None, "rate_per_s": 1.0, "hysteresis": 1.0}, "below rate_per_s"),
    ({"safe_action": ()}, "safe_action must be a non-empty tuple"),
    ({"safe_action": (SafeSetpoint("a", "b", 0.0), SafeSetpoint("a", "b", 1.0))}, "same device point twice"),
])
def test_spec_validation_is_precise(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**kw)


def test_safe_setpoint_and_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="finite number"):
        SafeSetpoint("bess", "WSet", math.nan)
    with pytest.raises(ValueError, match="configured twice"):
        Interlocks([spec(), spec()])


# -- pickup and hysteresis ------------------------------------------------------------------------------

def test_exactly_at_limit_does_not_trip_just_over_trips_at_once() -> None:
    rig = Rig(spec())
    assert rig.step(0.0, pcc_V=100.0) == ()
    assert rig.ph.state("ov") is InterlockState.IDLE
    cmds = rig.step(0.1, pcc_V=100.001)
    assert safe_in(cmds, "ov")
    events = rig.ph.drain_events()
    assert [e.name for e in events] == [EVENT_TRIP]
    assert events[0].values == {"pcc.V": 100.001}
    assert "above 100" in events[0].reason
    assert all(c.reason == events[0].reason for c in cmds)
    assert rig.ph.active() == frozenset({"ov"})


def test_pickup_needs_continuous_truth() -> None:
    rig = Rig(spec(pickup_s=1.0))
    assert rig.step(0.0, pcc_V=101.0) == ()
    assert rig.ph.state("ov") is InterlockState.PICKUP
    assert rig.step(0.5, pcc_V=101.0) == ()
    assert rig.step(0.6, pcc_V=100.0) == ()  # at the limit: not true, timer restarts
    assert rig.ph.state("ov") is InterlockState.IDLE
    assert rig.step(0.7, pcc_V=101.0) == ()
    assert rig.step(1.69, pcc_V=101.0) == ()
    assert safe_in(rig.step(1.7, pcc_V=101.0), "ov")  # exactly pickup_s after it became true
    assert rig.kinds() == [EVENT_TRIP]


def test_flapping_within_hysteresis_never_clears() -> None:
    rig = Rig(spec())
    rig.step(0.0, pcc_V=105.0)
    for i, v in enumerate([99.0, 100.5, 98.0, 101.0, 98.5, 98.0]):  # 98.0 = limit - h: not below
        assert safe_in(rig.step(1.0 + i, pcc_V=v), "ov"), v
    assert rig.kinds() == [EVENT_TRIP]
    assert rig.step(10.0, pcc_V=97.99) == ()
    events = rig.ph.drain_events()
    assert [e.name for e in events] == [EVENT_CLEAR]
    assert events[0].values == {"pcc.V": 97.99}
    assert rig.ph.active() == frozenset()


def test_dropout_delay_restarts_when_value_leaves_release_band() -> None:
    rig = Rig(spec(dropout_s=2.0))
    rig.step(0.0, pcc_V=105.0)
    assert safe_in(rig.step(1.0, pcc_V=90.0), "ov")
    assert safe_in(rig.step(2.5, pcc_V=99.0), "ov")  # back inside hysteresis: dropout restarts
    assert safe_in(rig.step(3.0, pcc_V=90.0), "ov")
    assert safe_in(rig.step(4.9, pcc_V=90.0), "ov")
    assert rig.step(5.0, pcc_V=90.0) == ()
    assert rig.kinds() == [EVENT_TRIP, EVENT_CLEAR]


@pytest.mark.parametrize(("cond", "kw", "trip", "inside", "release"), [
    (Condition.BELOW, {"limit": 10.0}, 9.9, 11.0, 12.1),
    (Condition.OUTSIDE, {"low": 0.0, "high": 10.0}, -0.1, 1.5, 5.0),
    (Condition.OUTSIDE, {"low": 0.0, "high": 10.0}, 10.1, 8.5, 5.0),
])
def test_below_and_outside(cond: Condition, kw: dict[str, float], trip: float, inside: float,
                           release: float) -> None:
    rig = Rig(spec(**{"condition": cond, "limit": None, **kw}))
    assert rig.step(0.0, pcc_V=release) == ()
    assert safe_in(rig.step(1.0, pcc_V=trip), "ov")
    assert safe_in(rig.step(2.0, pcc_V=inside), "ov")
    assert rig.step(3.0, pcc_V=release) == ()
    assert rig.kinds() == [EVENT_TRIP, EVENT_CLEAR]


def test_any_point_trips_all_points_must_release() -> None:
    rig = Rig(spec(points=("pcc.V", "bess.T")))
    rig.step(0.0, pcc_V=50.0, bess_T=50.0)
    assert safe_in(rig.step(1.0, bess_T=150.0), "ov")
    assert safe_in(rig.step(2.0, pcc_V=50.0, bess_T=99.0), "ov")  # bess.T within hysteresis
    assert rig.step(3.0, pcc_V=50.0, bess_T=50.0) == ()
    assert rig.kinds() == [EVENT_TRIP, EVENT_CLEAR]


# -- latch and reset ---------------------------------------------------------------------------------

def test_latch_holds_until_local_reset_and_reset_rules() -> None:
    rig = Rig(spec(name="ot", latch=True), spec(name="plain"))
    assert rig.ph.reset("nope") == "unknown interlock"
    assert rig.ph.reset("plain") == "not latched"
    assert rig.ph.reset("ot") == "not tripped"
    rig.step(0.0, pcc_V=110.0)
    assert rig.ph.reset("ot") == "condition still present"
    rig.step(1.0, pcc_V=99.0)  # within hysteresis: still present
    assert rig.ph.reset("ot") == "condition still present"
    cmds = rig.step(2.0, pcc_V=50.0)
    assert safe_in(cmds, "ot") and not safe_in(cmds, "plain")
    assert rig.ph.state("ot") is InterlockState.LATCHED
    for t in range(3, 10):
        assert safe_in(rig.step(float(t), pcc_V=50.0), "ot")
    assert rig.ph.reset("ot") is None
    assert rig.step(10.0, pcc_V=50.0) == ()
    assert [(e.name, e.interlock) for e in rig.ph.drain_events()] == [
        (EVENT_TRIP, "ot"), (EVENT_TRIP, "plain"), (EVENT_LATCHED, "ot"), (EVENT_CLEAR, "plain"),
        (EVENT_RESET, "ot")]


def test_reset_refused_while_an_input_is_unusable() -> None:
    rig = Rig(spec(latch=True, on_bad_input=BadInput.HOLD))
    rig.step(0.0, pcc_V=110.0)
    rig.step(1.0, pcc_V=50.0)
    rig.step(2.0, Quality.STALE, "offline", pcc_V=50.0)
    assert rig.ph.state("ov") is InterlockState.LATCHED
    assert rig.ph.reset("ov") == "input not usable: pcc.V"
    rig.step(3.0, pcc_V=50.0)
    assert rig.ph.reset("ov") is None


def test_latched_condition_returning_blocks_reset_again() -> None:
    rig = Rig(spec(latch=True))
    rig.step(0.0, pcc_V=110.0)
    rig.step(1.0, pcc_V=50.0)
    assert rig.ph.state("ov") is InterlockState.LATCHED
    assert safe_in(rig.step(2.0, pcc_V=120.0), "ov")
    assert rig.ph.reset("ov") == "condition still present"
    rig.step(3.0, pcc_V=50.0)
    assert rig.kinds() == [EVENT_TRIP, EVENT_LATCHED, EVENT_LATCHED]
    assert rig.ph.reset("ov") is None


# -- bad inputs ----------------------------------------------------------------------------------------

def test_missing_reading_trips_at_once_despite_pickup() -> None:
    rig = Rig(spec(pickup_s=100.0))
    cmds = rig.ph(rig.img.snapshot(0.0), ())  # never written: STALE "no reading yet"
    assert safe_in(cmds, "ov")
    events = rig.ph.drain_events()
    assert [e.name for e in events] == [EVENT_STALE_INPUT, EVENT_TRIP]
    assert "pcc.V" in events[0].reason and "no reading yet" in events[0].reason
    assert events[0].values == {"pcc.V": None}


def test_point_absent_from_image_trips() -> None:
    img = image()
    ph = Interlocks([spec(points=("nowhere",))])
    assert safe_in(ph(img.snapshot(0.0), ()), "ov")
    assert "missing" in ph.drain_events()[0].reason


@pytest.mark.parametrize(("quality", "value", "why"), [
    (Quality.BAD, 50.0, "bad (exception reply)"),
    (Quality.STALE, 50.0, "stale (exception reply)"),
    (Quality.GOOD, math.nan, "not finite"),
    (Quality.GOOD, "n/a", "not numeric"),
    (Quality.GOOD, None, "not numeric"),
])
def test_bad_inputs_trip_at_once_with_event(quality: Quality, value: float | str | None, why: str) -> None:
    rig = Rig(spec(pickup_s=5.0))
    assert rig.step(0.0, pcc_V=50.0) == ()
    cmds = rig.step(1.0, quality, "exception reply", pcc_V=value)
    assert safe_in(cmds, "ov")
    events = rig.ph.drain_events()
    assert [e.name for e in events] == [EVENT_STALE_INPUT, EVENT_TRIP]
    assert why in events[0].reason and "policy trip" in events[0].reason
    # recovery: clears like any trip, through the hysteresis
    assert rig.step(2.0, pcc_V=50.0) == ()
    assert rig.kinds() == [EVENT_CLEAR]


def test_age_beyond_max_age_trips() -> None:
    rig = Rig(spec())
    assert rig.step(0.0, pcc_V=50.0) == ()
    assert rig.ph(rig.img.snapshot(5.0), ()) == ()
    assert safe_in(rig.ph(rig.img.snapshot(5.01), ()), "ov")
    assert rig.kinds() == [EVENT_STALE_INPUT, EVENT_TRIP]


def test_hold_keeps_state_both_ways() -> None:
    rig = Rig(spec(on_bad_input=BadInput.HOLD, points=("pcc.V", "bess.T")))
    rig.step(0.0, pcc_V=50.0, bess_T=50.0)
    assert rig.step(1.0, Quality.BAD, "x", pcc_V=500.0) == ()
    assert rig.kinds() == [EVENT_STALE_INPUT]
    assert rig.step(1.5, bess_T=500.0) == ()  # good point over the limit, but pcc.V unknown: hold
    assert safe_in(rig.step(2.0, pcc_V=50.0, bess_T=500.0), "ov")
    assert safe_in(rig.step(3.0, Quality.STALE, "offline", pcc_V=50.0, bess_T=50.0), "ov")
    assert safe_in(rig.step(4.0, Quality.STALE, "offline", bess_T=50.0), "ov")
    assert rig.step(5.0, pcc_V=50.0, bess_T=50.0) == ()
    assert rig.kinds() == [EVENT_TRIP, EVENT_STALE_INPUT, EVENT_CLEAR]


def test_ignore_evaluates_remaining_points() -> None:
    rig = Rig(spec(on_bad_input=BadInput.IGNORE, points=("pcc.V", "bess.T")))
    rig.step(0.0, pcc_V=50.0, bess_T=50.0)
    assert rig.step(1.0, Quality.BAD, "x", pcc_V=500.0) == ()
    assert safe_in(rig.step(2.0, bess_T=500.0), "ov")
    assert rig.step(3.0, bess_T=50.0) == ()  # pcc.V still bad and ignored
    assert rig.step(4.0, Quality.BAD, "x", bess_T=500.0) == ()  # nothing left: like HOLD
    assert rig.kinds() == [EVENT_STALE_INPUT, EVENT_TRIP, EVENT_CLEAR, EVENT_STALE_INPUT]


# -- rate of change -------------------------------------------------------------------------------------

def test_rate_of_change_from_consecutive_good_samples() -> None:
    rig = Rig(spec(condition=Condition.RATE_ABOVE, limit=None, rate_per_s=1.0, hysteresis=0.2,
                   points=("pcc.Hz",)))
    assert rig.step(0.0, pcc_Hz=60.0) == ()  # no rate yet
    assert rig.step(0.1, pcc_Hz=60.05) == ()  # 0.5 Hz/s
    # the same sample seen again in the next cycle keeps its rate, it is not a zero rate
    assert rig.ph(rig.img.snapshot(0.2), ()) == ()
    cmds = rig.step(0.3, pcc_Hz=59.75)  # -1.5 Hz/s: magnitude counts
    assert safe_in(cmds, "ov")
    events = rig.ph.drain_events()
    assert events[0].name == EVENT_TRIP
    assert events[0].values["pcc.Hz.rate_per_s"] == pytest.approx(-1.5)
    assert safe_in(rig.ph(rig.img.snapshot(0.35), ()), "ov")  # repeated sample: rate still -1.5
    assert safe_in(rig.step(0.4, pcc_Hz=59.66), "ov")  # 0.9 Hz/s: inside hysteresis
    assert rig.step(0.5, pcc_Hz=59.6) == ()  # 0.6 Hz/s: released
    assert rig.ph.active() == frozenset()
    assert rig.kinds() == [EVENT_CLEAR]


def test_rate_restarts_after_bad_sample() -> None:
    rig = Rig(spec(condition=Condition.RATE_ABOVE, limit=None, rate_per_s=1.0, hysteresis=0.2, points=("pcc.Hz",),
                   on_bad_input=BadInput.HOLD))
    rig.step(0.0, pcc_Hz=60.0)
    rig.step(1.0, Quality.BAD, "x", pcc_Hz=0.0)
    assert rig.step(2.0, pcc_Hz=70.0) == ()  # no rate across the gap
    assert safe_in(rig.step(3.0, pcc_Hz=75.0), "ov")


# -- property tests ---------------------------------------------------------------------------------

_quality = st.sampled_from([Quality.GOOD] * 10 + [Quality.BAD, Quality.STALE])
# mostly plausible numbers around the limits, sometimes an unusable value (one_of picks a branch uniformly)
_value = st.one_of(*[st.floats(-50, 250)] * 10, st.sampled_from([math.nan, math.inf, None, "x"]))
_write = st.tuples(st.sampled_from(POINTS), _value, _quality)
_cycle = st.tuples(st.floats(0.0, 3.0), st.lists(_write, max_size=3), st.booleans())
_policy = st.sampled_from(list(BadInput))
Cycle = tuple[float, list[tuple[str, float | str | None, Quality]], bool]


def _unusable(value: float | None) -> bool:
    return value is None or not math.isfinite(value)


def _specs(p1: BadInput, p2: BadInput, p3: BadInput) -> list[InterlockSpec]:
    return [
        spec(name="a", points=("pcc.V", "bess.T"), pickup_s=0.5, dropout_s=0.3, latch=True, on_bad_input=p1),
        spec(name="b", points=("pcc.Hz",), condition=Condition.OUTSIDE, limit=None, low=20.0, high=150.0,
             hysteresis=5.0, on_bad_input=p2),
        spec(name="c", points=("pcc.Hz", "bess.T"), condition=Condition.RATE_ABOVE, limit=None, rate_per_s=40.0,
             hysteresis=10.0, pickup_s=0.2, on_bad_input=p3, latch=True),
    ]


@settings(max_examples=150, deadline=None)
@given(st.lists(_cycle, min_size=1, max_size=60), _policy, _policy, _policy)
def test_properties_over_random_sequences(cycles: list[Cycle], p1: BadInput, p2: BadInput, p3: BadInput) -> None:
    specs = _specs(p1, p2, p3)
    img = image()
    for point in POINTS:
        img.write(Sample(point, 50.0, "", Quality.GOOD, 0.0, 1e9, ""))
    ph = Interlocks(specs)
    t = 0.0
    for dt, writes, try_reset in cycles:
        t += dt
        for point, value, quality in writes:
            img.write(Sample(point, value, "", quality, t, 1e9 + t, "r"))
        snap = img.snapshot(t)
        held = (InterlockState.TRIPPED, InterlockState.LATCHED)
        latched_before = {s.name for s in specs if ph.state(s.name) is InterlockState.LATCHED}
        cmds = ph(snap, ())  # (d) never raises
        events = ph.drain_events()
        for s in specs:
            state = ph.state(s.name)
            # (a) every active interlock's safe action is in this cycle's commands
            if s.name in ph.active():
                assert safe_in(cmds, s.name)
            else:
                assert not any(c.origin == f"interlock:{s.name}" for c in cmds)
            # (b) a bad input under the TRIP policy yields the safe action in the same cycle
            if s.on_bad_input is BadInput.TRIP and any(_unusable(snap.value(p)) for p in s.points):
                assert state is InterlockState.TRIPPED and safe_in(cmds, s.name)
            # (c) a latched trip never clears without a reset; a latching interlock clears by itself
            # only from a trip on unusable inputs alone (an input outage is not a plant event)
            if s.name in latched_before:
                assert state in held
                assert not any(e.name == EVENT_CLEAR and e.interlock == s.name for e in events)
            if s.latch:
                for e in events:
                    if e.name == EVENT_CLEAR and e.interlock == s.name:
                        assert "(was: input not usable" in e.reason
            if try_reset:
                before = ph.state(s.name)
                why = ph.reset(s.name)
                all_usable = not any(_unusable(snap.value(p)) for p in s.points)
                assert (why is None) == (s.latch and before is InterlockState.LATCHED and all_usable)
                if why is None:
                    assert ph.state(s.name) is InterlockState.IDLE


# -- latching after input outages, and safe bounds ----------------------------------------------------

def test_a_trip_on_unusable_inputs_alone_clears_even_when_latching() -> None:
    rig = Rig(spec(latch=True))
    assert safe_in(rig.step(0.0, quality=Quality.STALE, reason="no answer", pcc_V=50.0), "ov")
    assert rig.kinds() == [EVENT_STALE_INPUT, EVENT_TRIP]
    assert rig.step(0.1, pcc_V=50.0) == ()  # inputs back, no condition: no reset needed
    assert rig.kinds() == [EVENT_CLEAR]
    assert rig.ph.state("ov") is InterlockState.IDLE


def test_a_condition_seen_during_an_input_trip_latches() -> None:
    rig = Rig(spec(latch=True))
    rig.step(0.0, quality=Quality.STALE, pcc_V=50.0)
    assert safe_in(rig.step(0.1, pcc_V=105.0), "ov")  # inputs back and over the limit
    assert safe_in(rig.step(0.2, pcc_V=50.0), "ov")
    assert rig.ph.state("ov") is InterlockState.LATCHED
    assert rig.ph.reset("ov", by="alice (uid 1000)") is None
    assert rig.kinds()[-1] == EVENT_RESET


def test_inputs_lost_while_latched_need_a_reset_after_they_return() -> None:
    rig = Rig(spec(latch=True))
    rig.step(0.0, pcc_V=105.0)
    rig.step(0.1, pcc_V=50.0)
    assert rig.ph.state("ov") is InterlockState.LATCHED
    rig.step(0.2, quality=Quality.STALE, pcc_V=50.0)
    assert safe_in(rig.step(0.3, pcc_V=50.0), "ov")
    assert rig.ph.state("ov") is InterlockState.LATCHED  # the condition was seen before the outage


def test_bounds_of_active_trips_intersect_and_include_safe_actions() -> None:
    no_charge = spec(name="hot", points=("bess.T",), limit=45.0, safe_action=(),
                     safe_bounds=(SafeBound("bess", "WSet", minimum=0.0),))
    cap = spec(name="cap", points=("bess.T",), limit=50.0, safe_action=(),
               safe_bounds=(SafeBound("bess", "WSet", minimum=-1000.0, maximum=20_000.0),))
    rig = Rig(spec(), no_charge, cap)
    assert rig.step(0.0, pcc_V=50.0, bess_T=30.0) == () and rig.ph.bounds() == {}
    cmds = rig.step(0.1, pcc_V=50.0, bess_T=47.0)
    assert cmds == ()  # a bound alone writes nothing: it clamps what others ask for
    assert rig.ph.bounds() == {("bess", "WSet"): (0.0, math.inf)}
    rig.step(0.2, pcc_V=50.0, bess_T=55.0)
    assert rig.ph.bounds() == {("bess", "WSet"): (0.0, 20_000.0)}
    rig.step(0.3, pcc_V=105.0, bess_T=55.0)
    assert rig.ph.bounds() == {("bess", "WSet"): (0.0, 0.0), ("inv", "WMaxLimPct"): (0.0, 0.0)}
    assert "bess.T=55" in rig.ph.reason("hot") or "bess.T=47" in rig.ph.reason("hot")


@pytest.mark.parametrize(("kw", "message"), [
    ({"safe_action": (), "safe_bounds": ()}, "a trip must do something"),
    ({"safe_bounds": (SafeBound("bess", "WSet", 0.0),), "safe_action": (SafeSetpoint("bess", "WSet", 0.0),)},
     "appears twice"),
])
def test_bad_safe_bounds_are_refused(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**kw)
    with pytest.raises(ValueError, match="needs min <= max"):
        SafeBound("bess", "WSet", 5.0, 1.0)
    with pytest.raises(ValueError, match="give min, max or both"):
        SafeBound("bess", "WSet")
