"""The actuator watch: one event when a device stops following its setpoint, one when it follows again."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent import config
from edgeagent.image import PointSpec, ProcessImage, Quality, Sample, Snapshot
from edgeagent.safety.tracking import (
    EVENT_FOLLOWING,
    EVENT_NOT_FOLLOWING,
    ActuatorWatch,
    Feedback,
    FollowMode,
)

BESS = ("bess", "WSet")
PV = ("pv", "WMaxLimPct")


def snap(t: float, bess_w: float | None, pv_w: float = 0.0, rated_w: float = 100_000.0,
         quality: Quality = Quality.GOOD) -> Snapshot:
    img = ProcessImage([PointSpec(n, "W", 10.0) for n in ("bess.W", "pv.W", "pv.WRtg")])
    if bess_w is not None:
        img.write(Sample("bess.W", bess_w, "W", quality, t, 1e9))
    img.write(Sample("pv.W", pv_w, "W", Quality.GOOD, t, 1e9))
    img.write(Sample("pv.WRtg", rated_w, "W", Quality.GOOD, t, 1e9))
    return img.snapshot(t)


def watch(written: dict[tuple[str, str], float]) -> ActuatorWatch:
    feedbacks = {
        BESS: Feedback("bess.W", tolerance=2000, within_s=3.0),
        PV: Feedback("pv.W", tolerance=2000, within_s=3.0, mode=FollowMode.AT_MOST, scale=0.01,
                     scale_point="pv.WRtg"),
    }
    return ActuatorWatch(feedbacks, written.get)


def run(w: ActuatorWatch, t0: float, seconds: float, **kw: float) -> list[str]:
    names: list[str] = []
    t = t0
    while t < t0 + seconds:
        w(snap(t, **kw), ())
        names += [e.name for e in w.drain_events()]
        t += 0.1
    return names


def test_a_battery_that_ignores_its_setpoint_is_reported_once_then_recovery_once() -> None:
    written = {BESS: -50_000.0}
    w = watch(written)
    assert run(w, 0.0, 2.9, bess_w=0.0) == []  # within the grace time
    assert run(w, 2.9, 10.0, bess_w=0.0) == [EVENT_NOT_FOLLOWING]  # once, not every cycle
    assert w.not_following == {BESS}
    assert run(w, 12.9, 1.0, bess_w=-49_000.0) == [EVENT_FOLLOWING]
    assert w.not_following == frozenset()


def test_the_event_carries_setpoint_expected_and_feedback() -> None:
    w = watch({BESS: -50_000.0})
    run(w, 0.0, 3.5, bess_w=-10_000.0)
    w(snap(3.6, -10_000.0), ())
    events = w.drain_events()
    assert not events  # already reported
    w2 = watch({BESS: -50_000.0})
    for i in range(40):
        w2(snap(i / 10, -10_000.0), ())
    (event,) = w2.drain_events()
    assert (event.device, event.point, event.setpoint, event.expected, event.feedback) == (
        "bess", "WSet", -50_000.0, -50_000.0, -10_000.0)
    assert event.for_s >= 3.0


def test_a_pv_inverter_below_its_limit_is_following_and_above_it_is_not() -> None:
    written = {PV: 40.0}  # 40 % of 100 kW
    w = watch(written)
    assert run(w, 0.0, 10.0, bess_w=None, pv_w=20_000.0) == []  # clouds: less is fine
    assert run(w, 10.0, 10.0, bess_w=None, pv_w=60_000.0) == [EVENT_NOT_FOLLOWING]


def test_unknown_feedback_or_no_write_yet_is_not_disobedience() -> None:
    w = watch({})
    assert run(w, 0.0, 10.0, bess_w=0.0) == []  # nothing written yet
    w = watch({BESS: -50_000.0})
    assert run(w, 0.0, 10.0, bess_w=None) == []
    for i in range(100):
        w(snap(i / 10, 0.0, quality=Quality.STALE), ())
    assert w.drain_events() == []


@given(st.lists(st.tuples(st.floats(-100_000, 100_000), st.floats(-100_000, 100_000)), min_size=1, max_size=80))
def test_events_alternate_and_never_repeat(steps: list[tuple[float, float]]) -> None:
    written: dict[tuple[str, str], float] = {}
    w = watch(written)
    names: list[str] = []
    for i, (setpoint, feedback) in enumerate(steps):
        written[BESS] = setpoint
        w(snap(i * 0.5, feedback), ())
        names += [e.name for e in w.drain_events()]
    expected = [EVENT_NOT_FOLLOWING, EVENT_FOLLOWING] * len(names)
    assert names == expected[:len(names)]


@pytest.mark.parametrize(("feedback", "message"), [
    ('{ point = "bess.Nope", tolerance = 1 }', "setpoints[0].feedback.point: unknown point"),
    ('{ point = "bess.W", tolerance = 0 }', "tolerance must be a finite number > 0"),
    ('{ point = "bess.W", tolerance = 5, mode = "sometimes" }', "setpoints[0].feedback.mode"),
    ('{ point = "bess.W", tolerance = 5, colour = 1 }', "site.toml:15: setpoints[0].feedback.colour: unknown key"),
])
def test_bad_feedback_config_is_refused_precisely(feedback: str, message: str) -> None:
    text = f"""
[site]
id = "s"
node = "n"
[devices.bess]
kind = "modbus"
host = "127.0.0.1"
port = 502
points = [{{ name = "W", address = 0, type = "int32" }},
          {{ name = "WSet", address = 2, type = "int32", writable = true }}]
[[setpoints]]
point = "bess.WSet"
min = -1000
max = 1000
feedback = {feedback}
"""
    with pytest.raises(config.ConfigError) as info:
        config.parse(text, "site.toml")
    assert message in str(info.value)
