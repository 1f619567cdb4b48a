"""Export limiter: config validation, run-time limits, fallback, freeze detection, closed loop."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.image import PointSpec, ProcessImage, Quality, Sample, Snapshot
from edgeagent.safety.export_limit import (
    ORIGIN,
    BessTarget,
    ExportLimitConfig,
    ExportLimiter,
    FallbackEntered,
    FallbackLeft,
    FallbackReason,
    LimitChanged,
    LimitSource,
    PvTarget,
    State,
)
from edgeagent.safety.schedule import ExportSchedule, LimitWindow

T0_WALL = 1_780_000_000.0
RATED_W = 120_000.0
MAX_CHARGE_W = 50_000.0


def config(**kw: object) -> ExportLimitConfig:
    base: dict[str, object] = {
        "contract_min_kw": 0.0,
        "contract_max_kw": 50.0,
        "static_kw": 20.0,
        "margin_kw": 3.0,
        "bess": BessTarget("bess", max_charge_w=MAX_CHARGE_W, ramp_w_per_s=100_000.0, soc_max_pct=95.0),
        "pv": PvTarget("pv", rated_w=RATED_W, power_point="pv.W", ramp_pct_per_s=50.0),
    }
    base.update(kw)
    return ExportLimitConfig(**base)  # type: ignore[arg-type]


def image() -> ProcessImage:
    return ProcessImage([PointSpec("pcc.W", "W", 1.0), PointSpec("bess.SoC", "%", 5.0), PointSpec("pv.W", "W", 1.0)])


def feed(img: ProcessImage, t: float, meter_w: float | None, quality: Quality = Quality.GOOD,
         soc: float = 50.0, pv_w: float = 100_000.0) -> None:
    img.write(Sample("pcc.W", meter_w, "W", quality, t, T0_WALL + t, "" if quality is Quality.GOOD else "test"))
    img.write(Sample("bess.SoC", soc, "%", Quality.GOOD, t, T0_WALL + t))
    img.write(Sample("pv.W", pv_w, "W", Quality.GOOD, t, T0_WALL + t))


def outputs(cmds: tuple[object, ...]) -> dict[str, float]:
    return {c.point: c.value for c in cmds}  # type: ignore[attr-defined]


# -- the plant model: its own physics, no code shared with the controller ------------------------
def sim_snapshot(img: ProcessImage, t: float) -> Snapshot:
    """A snapshot at simulated wall time T0_WALL + t (ProcessImage.snapshot uses the real clock)."""
    snap = img.snapshot(t)
    samples = {name: snap[name].sample for name in snap}
    return Snapshot(samples, {s.name: s.max_age_s for s in img.specs.values()}, t, T0_WALL + t)


@dataclass
class PlantParams:
    pv_rated_w: float = 120_000.0
    pv_avail_w: float = 110_000.0  # full sun
    bess_dead_s: float = 0.1
    bess_tau_s: float = 0.2
    pv_tau_s: float = 1.0
    meter_min_s: float = 0.1
    meter_max_s: float = 0.2
    cycle_s: float = 0.1
    soc_pct: float = 50.0
    meter_noise_w: float = 0.0
    meter_frozen_from_s: float | None = None  # from then on the gateway repeats its cached reading


@dataclass
class Trace:
    t: list[float] = field(default_factory=list)
    export_kw: list[float] = field(default_factory=list)
    bess_cmd: list[float] = field(default_factory=list)
    pv_pct: list[float] = field(default_factory=list)


def simulate(limiter: ExportLimiter, params: PlantParams, load_w: Callable[[float], float], duration_s: float,
             seed: int = 0, dt: float = 0.005) -> Trace:
    """Run the loop; returns the true export (kW) and the commands, sampled every cycle."""
    rng = random.Random(seed)
    image = ProcessImage([PointSpec("pcc.W", "W", 1.0), PointSpec("bess.SoC", "%", 5.0),
                          PointSpec("pv.W", "W", 1.0)])
    p_bess = 0.0  # + discharge
    p_pv = min(params.pv_avail_w, params.pv_rated_w)
    bess_cmd = 0.0
    pv_pct = 100.0
    pending: deque[tuple[float, float]] = deque()  # (apply time, setpoint)
    bess_target = 0.0
    next_meter = 0.0
    frozen_w: float | None = None
    next_cycle = params.cycle_s * rng.random()
    trace = Trace()
    n = int(duration_s / dt)
    for i in range(n):
        t = i * dt
        while pending and pending[0][0] <= t:
            bess_target = pending.popleft()[1]
        p_bess += (bess_target - p_bess) * (1.0 - math.exp(-dt / params.bess_tau_s))
        pv_target = min(params.pv_avail_w, params.pv_rated_w * pv_pct / 100.0)
        p_pv += (pv_target - p_pv) * (1.0 - math.exp(-dt / params.pv_tau_s))
        meter_w = load_w(t) - p_pv - p_bess
        if t >= next_meter:
            noise = rng.gauss(0.0, params.meter_noise_w) if params.meter_noise_w else 0.0
            reading = meter_w + noise
            if params.meter_frozen_from_s is not None and t >= params.meter_frozen_from_s:
                frozen_w = reading if frozen_w is None else frozen_w
                reading = frozen_w
            image.write(Sample("pcc.W", reading, "W", Quality.GOOD, t, T0_WALL + t))
            image.write(Sample("pv.W", p_pv, "W", Quality.GOOD, t, T0_WALL + t))
            image.write(Sample("bess.SoC", params.soc_pct, "%", Quality.GOOD, t, T0_WALL + t))
            next_meter = t + rng.uniform(params.meter_min_s, params.meter_max_s)
        if t >= next_cycle:
            next_cycle += params.cycle_s
            for cmd in limiter(sim_snapshot(image, t), ()):
                if cmd.point == "WSet":
                    bess_cmd = cmd.value
                    pending.append((t + params.bess_dead_s, cmd.value))
                else:
                    pv_pct = cmd.value
            trace.t.append(t)
            trace.export_kw.append(-meter_w / 1000.0)
            trace.bess_cmd.append(bess_cmd)
            trace.pv_pct.append(pv_pct)
    return trace


def settle_time(trace: Trace, t_step: float, limit_kw: float) -> float:
    """Time after `t_step` from which the true export stays at or under the limit."""
    last_over = t_step
    for t, e in zip(trace.t, trace.export_kw, strict=True):
        if t >= t_step and e > limit_kw + 1e-9:
            last_over = t
    return last_over - t_step


# -- configuration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"static_kw": 60.0},
        {"static_kw": -1.0},
        {"static_kw": None},
        {"schedule": ExportSchedule((), "UTC", 10.0)},
        {"margin_kw": -0.5},
        {"fallback_kw": 80.0},
        {"bess": None, "pv": None},
        {"gain": 0.0},
        {"static_kw": math.nan},
        {"static_kw": None,
         "schedule": ExportSchedule((LimitWindow(frozenset({0}), time(1), time(2), 70.0),), "UTC", 10.0)},
    ],
)
def test_invalid_config_is_refused(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        config(**kw)


def test_target_validation() -> None:
    with pytest.raises(ValueError):
        PvTarget("pv")
    with pytest.raises(ValueError):
        PvTarget("pv", rated_w=1.0, rated_point="pv.WRtg")
    with pytest.raises(ValueError):
        PvTarget("pv", rated_w=1.0, min_pct=120.0)
    with pytest.raises(ValueError):
        BessTarget("bess", max_charge_w=-1.0)


# -- run-time limit ------------------------------------------------------------------------------


def test_set_limit_refuses_outside_contract_and_applies_inside() -> None:
    lim = ExportLimiter(config())
    img = image()
    feed(img, 0.0, -5_000.0)
    lim(img.snapshot(0.0), ())
    assert lim.limit_kw == 20.0 and lim.limit_source is LimitSource.STATIC
    assert lim.set_limit(51.0, T0_WALL) is not None
    assert "contract" in (lim.set_limit(-0.1, T0_WALL) or "")
    assert lim.set_limit(math.nan, T0_WALL) is not None
    assert lim.override is None
    assert lim.set_limit(50.0, T0_WALL) is None
    feed(img, 0.1, -5_000.0)
    lim(img.snapshot(0.1), ())
    assert (lim.limit_kw, lim.limit_source) == (50.0, LimitSource.OVERRIDE)
    lim.clear_limit()
    feed(img, 0.2, -5_000.0)
    lim(img.snapshot(0.2), ())
    assert lim.limit_kw == 20.0
    changes = [e for e in lim.drain_events() if isinstance(e, LimitChanged)]
    assert [(e.old_kw, e.new_kw) for e in changes] == [(None, 20.0), (20.0, 50.0), (50.0, 20.0)]
    assert lim.drain_events() == []


def test_schedule_drives_the_limit() -> None:
    # T0_WALL = 2026-05-28 (Thursday) 20:26:40 UTC
    sched = ExportSchedule((LimitWindow(frozenset(range(7)), time(20, 27), time(21), 5.0),), "UTC", 30.0)
    lim = ExportLimiter(config(static_kw=None, schedule=sched))
    img = image()
    feed(img, 0.0, 0.0)
    lim(sim_snapshot(img, 0.0), ())
    assert lim.limit_kw == 30.0
    feed(img, 30.0, 10.0)
    lim(sim_snapshot(img, 30.0), ())
    assert lim.limit_kw == 5.0 and lim.limit_source is LimitSource.SCHEDULE


# -- fallback ------------------------------------------------------------------------------------


def _run_normal(lim: ExportLimiter, img: ProcessImage, cycles: int = 20) -> float:
    t = 0.0
    for i in range(cycles):
        t = i * 0.1
        feed(img, t, -10_000.0 - i * 10.0)
        lim(img.snapshot(t), ())
    assert lim.state is State.NORMAL
    lim.drain_events()
    return t


@pytest.mark.parametrize("fault", ["stale", "bad", "missing", "age"])
def test_fallback_in_the_same_cycle(fault: str) -> None:
    lim = ExportLimiter(config())
    img = image()
    t = _run_normal(lim, img) + 0.1
    if fault == "stale":
        feed(img, t, -10_000.0, Quality.STALE)
    elif fault == "bad":
        feed(img, t, None, Quality.BAD)
    elif fault == "age":
        t += 1.05  # the last GOOD sample is older than the point's max_age_s (1 s)
    if fault == "missing":
        img2 = ProcessImage([PointSpec("bess.SoC", "%", 5.0), PointSpec("pv.W", "W", 1.0)])
        img2.write(Sample("bess.SoC", 50.0, "%", Quality.GOOD, t, T0_WALL + t))
        snap = img2.snapshot(t)
    else:
        snap = img.snapshot(t)
    out = outputs(lim(snap, ()))
    assert lim.state is State.FALLBACK
    assert lim.limit_kw == 0.0  # most restrictive: contract_min_kw
    assert lim.export_kw is None
    assert out["WMaxLimPct"] == 0.0  # zero export even with zero load
    assert -MAX_CHARGE_W <= out["WSet"] <= 0.0
    events = lim.drain_events()
    entered = [e for e in events if isinstance(e, FallbackEntered)]
    assert len(entered) == 1 and entered[0].t_mono == t
    expected = {"stale": FallbackReason.METER_STALE, "age": FallbackReason.METER_STALE,
                "bad": FallbackReason.METER_BAD, "missing": FallbackReason.METER_MISSING}[fault]
    assert entered[0].reason is expected and lim.reason is expected
    assert any(isinstance(e, LimitChanged) and e.new_kw == 0.0 for e in events)


def test_configured_fallback_and_recovery() -> None:
    lim = ExportLimiter(config(fallback_kw=12.0))
    img = image()
    t = _run_normal(lim, img) + 0.1
    feed(img, t, None, Quality.BAD)
    out = outputs(lim(img.snapshot(t), ()))
    assert out["WMaxLimPct"] == pytest.approx(10.0)  # 12 kW of 120 kW rated
    assert lim.limit_kw == 12.0
    for i in range(1, 4):  # stays in fallback, holds, no duplicate events
        feed(img, t + i * 0.1, None, Quality.BAD)
        assert outputs(lim(img.snapshot(t + i * 0.1), ()))["WMaxLimPct"] == pytest.approx(10.0)
    assert len(lim.drain_events()) == 2
    t += 0.5
    feed(img, t, -1_000.0)
    lim(img.snapshot(t), ())
    assert lim.state is State.NORMAL and lim.limit_kw == 20.0
    left = [e for e in lim.drain_events() if isinstance(e, FallbackLeft)]
    assert len(left) == 1 and left[0].duration_s == pytest.approx(0.5)
    # bumpless: the loop takes over from the fallback cap and releases it gradually
    pct = [outputs(lim(img.snapshot(t), ()))["WMaxLimPct"]]
    for i in range(1, 100):  # the integrator unwinds at the PV loop's pace (~6 s here)
        feed(img, t + i * 0.1, -1_000.0 - i)
        pct.append(outputs(lim(img.snapshot(t + i * 0.1), ()))["WMaxLimPct"])
    assert pct[0] <= 35.0 and pct[-1] == 100.0
    assert all(b - a <= 5.0 + 1e-9 for a, b in itertools.pairwise(pct))


def test_fallback_never_releases_the_bess() -> None:
    lim = ExportLimiter(config())
    img = image()
    # export far above the limit: the BESS is charging
    for i in range(30):
        feed(img, i * 0.1, -45_000.0 + i)
        out = outputs(lim(img.snapshot(i * 0.1), ()))
    charging = out["WSet"]
    assert charging < -10_000.0
    feed(img, 3.0, None, Quality.STALE)
    out = outputs(lim(img.snapshot(3.0), ()))
    assert out["WSet"] <= charging
    assert all(c.origin == ORIGIN for c in lim(img.snapshot(3.1), ()))


def test_pv_min_pct_floor_is_made_up_by_the_bess_in_fallback() -> None:
    pv = PvTarget("pv", rated_w=RATED_W, power_point="pv.W", min_pct=10.0)
    lim = ExportLimiter(config(pv=pv))
    img = image()
    t = _run_normal(lim, img) + 0.1
    feed(img, t, None, Quality.BAD, soc=50.0)
    out = outputs(lim(img.snapshot(t), ()))
    assert out["WMaxLimPct"] == 10.0
    assert out["WSet"] <= -12_000.0


# -- frozen meter --------------------------------------------------------------------------------


def test_frozen_meter_detected_within_window_in_closed_loop() -> None:
    lim = ExportLimiter(config(freeze_window_s=2.0))
    params = PlantParams(meter_frozen_from_s=3.0, meter_noise_w=50.0)
    trace = simulate(lim, params, lambda t: 100_000.0 if t < 3.5 else 60_000.0, 8.0, seed=3)
    entered = [e for e in lim.drain_events() if isinstance(e, FallbackEntered)]
    assert len(entered) == 1
    assert entered[0].reason is FallbackReason.METER_FROZEN
    # the last fresh reading is at most one meter period before 3.0 s; detection at window + a cycle
    assert 3.0 + 2.0 - 0.2 <= entered[0].t_mono <= 3.0 + 2.0 + 0.3
    assert lim.state is State.FALLBACK and lim.limit_kw == 0.0
    assert trace.pv_pct[-1] == 0.0


def test_constant_meter_on_a_still_plant_is_not_frozen() -> None:
    # a quiet site: 0 W at the PCC, PV off, nothing commanded; identical readings are genuine
    lim = ExportLimiter(config(freeze_window_s=1.0, freeze_requires_motion=True))
    img = image()
    for i in range(100):
        feed(img, i * 0.1, 2_000.0, pv_w=0.0)
        lim(img.snapshot(i * 0.1), ())
    assert lim.state is State.NORMAL


def test_constant_meter_while_pv_moves_is_frozen() -> None:
    lim = ExportLimiter(config(freeze_window_s=1.0, freeze_requires_motion=True))
    img = image()
    for i in range(30):
        feed(img, i * 0.1, 2_000.0, pv_w=10_000.0 + 1_000.0 * i)
        lim(img.snapshot(i * 0.1), ())
        if lim.state is State.FALLBACK:
            break
    assert lim.state is State.FALLBACK and lim.reason is FallbackReason.METER_FROZEN
    assert i * 0.1 == pytest.approx(1.0)


def test_freeze_without_motion_requirement_is_the_default() -> None:
    lim = ExportLimiter(config(freeze_window_s=1.0, freeze_tolerance_w=5.0))
    img = image()
    for i in range(12):
        feed(img, i * 0.1, 2_000.0 + (i % 2) * 4.0, pv_w=0.0)  # within tolerance
        lim(img.snapshot(i * 0.1), ())
    assert lim.state is State.FALLBACK and lim.reason is FallbackReason.METER_FROZEN


# -- closed loop ---------------------------------------------------------------------------------


def step_load(t: float) -> float:
    """Site peak 100 kW; a 30 kW (30 %) load drop at t = 5 s under full sun (110 kW of PV)."""
    return 100_000.0 if t < 5.0 else 70_000.0


def _settle_times(soc: float, seeds: range) -> list[float]:
    times = []
    for seed in seeds:
        trace = simulate(ExportLimiter(config()), PlantParams(soc_pct=soc, meter_noise_w=100.0), step_load, 12.0, seed)
        assert max(trace.export_kw[: len(trace.t) // 3]) <= 20.0  # under the limit before the step
        times.append(settle_time(trace, 5.0, 20.0))
        late = [e for t, e in zip(trace.t, trace.export_kw, strict=True) if t > 10.0]
        assert max(late) - min(late) < 1.5  # settled: no sustained oscillation (noise only)
        assert max(late) < 20.0
    return times


def test_step_back_under_limit_within_2s_with_bess() -> None:
    times = _settle_times(50.0, range(5))
    assert statistics.median(times) < 2.0 and max(times) < 2.0


def test_step_back_under_limit_within_4s_by_curtailment_when_bess_full() -> None:
    times = _settle_times(100.0, range(5))
    assert statistics.median(times) < 4.0 and max(times) < 4.0


def test_anti_windup_releases_promptly_after_long_saturation() -> None:
    # BESS full and PV min 50 %: 60 kW export cannot be brought under 20 kW; then load returns
    pv = PvTarget("pv", rated_w=RATED_W, power_point="pv.W", min_pct=50.0, ramp_pct_per_s=50.0)
    lim = ExportLimiter(config(pv=pv))
    trace = simulate(lim, PlantParams(soc_pct=100.0), lambda t: 40_000.0 if t < 30.0 else 120_000.0, 40.0)
    i30 = trace.t.index(next(t for t in trace.t if t >= 30.0))
    assert trace.pv_pct[i30 - 1] == 50.0
    i32 = trace.t.index(next(t for t in trace.t if t >= 32.5))
    assert trace.pv_pct[i32] == 100.0  # released within the ramp time, not after an unwind


@settings(max_examples=25)
@given(
    bess_tau=st.floats(0.05, 1.0),
    bess_dead=st.floats(0.0, 0.3),
    pv_tau=st.floats(0.2, 3.0),
    soc=st.floats(0.0, 100.0),
    pv_avail=st.floats(0.0, 130_000.0),
    loads=st.lists(st.floats(0.0, 150_000.0), min_size=1, max_size=6),
    noise=st.floats(0.0, 2_000.0),
    seed=st.integers(0, 1000),
)
def test_setpoints_stay_in_bounds(bess_tau: float, bess_dead: float, pv_tau: float, soc: float,
                                  pv_avail: float, loads: list[float], noise: float, seed: int) -> None:
    params = PlantParams(bess_tau_s=bess_tau, bess_dead_s=bess_dead, pv_tau_s=pv_tau, soc_pct=soc,
                         pv_avail_w=pv_avail, meter_noise_w=noise)
    load: Callable[[float], float] = lambda t: loads[min(int(t), len(loads) - 1)]  # noqa: E731
    trace = simulate(ExportLimiter(config()), params, load, len(loads) + 1.0, seed, dt=0.01)
    for w in trace.bess_cmd:
        assert not math.isnan(w) and -MAX_CHARGE_W <= w <= 0.0
    for pct in trace.pv_pct:
        assert not math.isnan(pct) and 0.0 <= pct <= 100.0
    # releases are always ramp-limited (100 kW/s, 50 %/s; cycles are 0.1 s +- one 10 ms plant step)
    for a, b in itertools.pairwise(trace.bess_cmd):
        assert b - a <= 100_000.0 * 0.11 + 1e-6
    for a, b in itertools.pairwise(trace.pv_pct):
        assert b - a <= 50.0 * 0.11 + 1e-9


def test_a_trip_that_forbids_charging_moves_the_work_to_pv_curtailment() -> None:
    """An interlock pins the BESS at 0 (through the arbiter's envelope) while it absorbs export:
    the limiter stops counting on it at once and curtails PV instead, as with a full battery."""
    lim = ExportLimiter(config())
    lim.envelope = lambda key, snap: (0.0, math.inf) if snap.t_mono >= 5.0 else (-MAX_CHARGE_W, math.inf)
    trace = simulate(lim, PlantParams(meter_noise_w=100.0), lambda t: 70_000.0, 14.0, seed=3)
    before = [b for t, b in zip(trace.t, trace.bess_cmd, strict=True) if 4.0 < t < 5.0]
    assert min(before) < -15_000  # the battery was doing the work
    after = [(t, b, p) for t, b, p in zip(trace.t, trace.bess_cmd, trace.pv_pct, strict=True) if t >= 5.0]
    assert all(b == 0.0 for _, b, _ in after)  # never asked to charge again
    assert min(p for _, _, p in after) < 80.0  # PV curtailed instead
    assert settle_time(trace, 5.0, 20.0) < 4.0
