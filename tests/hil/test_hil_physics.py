"""Properties of the plant physics (no I/O): PV, load, battery, energy balance, dynamics."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil import physics
from hil.physics import Commands, Noise, PlantParams, Simulation, SiteParams, WeatherParams

SITE = SiteParams()


def _params(start_hour: float = 12.0, **site: float) -> PlantParams:
    return PlantParams(site=dataclasses.replace(SITE, **site), start_hour=start_hour, seed=3)


@given(st.floats(0.0, 24.0, exclude_max=True))
def test_pv_is_zero_at_night_and_positive_by_day(hour: float) -> None:
    params = _params(start_hour=hour)
    available = physics.pv_available_w(params, 0.0)
    if hour <= SITE.sunrise_h or hour >= SITE.sunset_h:
        assert available == 0.0
    else:
        assert 0.0 < available <= 1000.0 * SITE.pv_kwp


def test_clear_sky_is_a_smooth_symmetric_bell() -> None:
    rise, sets = 6.0, 20.0
    noon = (rise + sets) / 2
    assert physics.clear_sky_fraction(noon, rise, sets) == pytest.approx(1.0)
    for offset in (0.5, 2.0, 5.0):
        before = physics.clear_sky_fraction(noon - offset, rise, sets)
        after = physics.clear_sky_fraction(noon + offset, rise, sets)
        assert before == pytest.approx(after)
    hours = np.linspace(rise, noon, 200)
    values = [physics.clear_sky_fraction(float(h), rise, sets) for h in hours]
    assert values[0] == 0.0
    assert all(b > a for a, b in itertools.pairwise(values))


def test_pv_stays_zero_through_a_night_simulation() -> None:
    sim = Simulation(_params(start_hour=1.0, step_s=10.0))
    for _ in range(360):  # one plant hour
        state = sim.advance(Commands())
        assert state.pv_w == 0.0 and state.pv_available_w == 0.0


def test_load_has_morning_and_evening_peaks() -> None:
    shape = physics.load_shape
    assert max(shape(h / 10) for h in range(240)) == pytest.approx(1.0, abs=1e-3)
    assert shape(7.5) > shape(3.0) and shape(7.5) > shape(12.5)
    assert shape(19.0) > shape(12.5) and shape(19.0) > shape(23.5)
    assert shape(19.0) > shape(7.5)


@given(
    setpoints=st.lists(st.floats(-150_000.0, 150_000.0), min_size=1, max_size=40),
    limit=st.floats(0.0, 100.0),
    seed=st.integers(0, 2**32),
)
def test_meter_balances_load_pv_and_battery_at_every_step(setpoints: list[float], limit: float, seed: int) -> None:
    sim = Simulation(dataclasses.replace(_params(step_s=1.0), seed=seed))
    for setpoint in setpoints:
        before = sim.state
        state = sim.advance(Commands(pv_limit_pct=limit, bess_setpoint_w=setpoint))
        assert state.meter_w == pytest.approx(state.load_w - state.pv_w - state.bess_w, abs=1e-6)
        imported = max(state.meter_w, 0.0) / 3600.0
        exported = max(-state.meter_w, 0.0) / 3600.0
        assert state.import_wh - before.import_wh == pytest.approx(imported, abs=1e-6)
        assert state.export_wh - before.export_wh == pytest.approx(exported, abs=1e-6)


@given(
    setpoints=st.lists(st.floats(-300_000.0, 300_000.0), min_size=1, max_size=30),
    soc_initial=st.floats(5.0, 95.0),
)
def test_soc_stays_within_its_limits(setpoints: list[float], soc_initial: float) -> None:
    # A small battery with big steps: every setpoint hits a limit within a few steps.
    site = dataclasses.replace(SITE, bess_kwh=5.0, bess_kw=100.0, soc_initial_pct=soc_initial, step_s=10.0)
    sim = Simulation(PlantParams(site=site))
    for setpoint in setpoints:
        for _ in range(5):
            state = sim.advance(Commands(bess_setpoint_w=setpoint))
            assert site.soc_min_pct <= state.soc_pct <= site.soc_max_pct
            assert abs(state.bess_w) <= 1000.0 * site.bess_kw


def test_battery_stops_at_the_limits_and_reports_why() -> None:
    site = dataclasses.replace(SITE, bess_kwh=1.0, soc_initial_pct=50.0, step_s=1.0)
    sim = Simulation(PlantParams(site=site))
    for _ in range(600):
        sim.advance(Commands(bess_setpoint_w=-50_000.0))
    assert sim.state.soc_pct == pytest.approx(site.soc_max_pct)
    assert sim.state.bess_w == 0.0
    for _ in range(600):
        sim.advance(Commands(bess_setpoint_w=50_000.0))
    assert sim.state.soc_pct == pytest.approx(site.soc_min_pct)
    assert sim.state.bess_w == 0.0


def test_battery_ramp_rate_and_efficiency() -> None:
    site = dataclasses.replace(SITE, bess_ramp_w_per_s=10_000.0, step_s=0.5)
    sim = Simulation(PlantParams(site=site))
    powers = [sim.advance(Commands(bess_setpoint_w=-60_000.0)).bess_w for _ in range(20)]
    steps = np.diff([0.0, *powers])
    assert np.all(np.abs(steps) <= 10_000.0 * 0.5 + 1e-9)
    assert powers[11] == pytest.approx(-60_000.0)  # 6 s at 10 kW/s
    # Charging for one hour at 60 kW stores 60 kWh x efficiency (minus the 6 s ramp).
    soc0 = sim.state.soc_pct
    for _ in range(7200):
        sim.advance(Commands(bess_setpoint_w=-60_000.0))
    stored_kwh = (sim.state.soc_pct - soc0) / 100.0 * site.bess_kwh
    assert stored_kwh == pytest.approx(60.0 * site.bess_efficiency, rel=1e-6)


def test_inverter_output_follows_a_first_order_response() -> None:
    tau = 2.0
    sim = Simulation(_params(start_hour=13.0, inverter_tau_s=tau, step_s=0.01))
    start = sim.state.pv_w
    assert start > 50_000.0
    target = 0.30 * SITE.inverter_w
    trace = [sim.advance(Commands(pv_limit_pct=30.0)).pv_w for _ in range(int(5 * tau / 0.01))]
    done_after_tau = (start - trace[int(tau / 0.01) - 1]) / (start - target)
    assert done_after_tau == pytest.approx(1.0 - math.exp(-1.0), abs=0.01)
    assert trace[-1] - target == pytest.approx((start - target) * math.exp(-5.0), rel=0.02)
    assert all(b <= a for a, b in itertools.pairwise(trace))  # no overshoot
    # Back to 100 %: output recovers towards what the array can give.
    for _ in range(int(5 * tau / 0.01)):
        sim.advance(Commands(pv_limit_pct=100.0))
    assert sim.state.pv_w == pytest.approx(sim.state.pv_available_w, rel=0.01)


def test_first_order_discretisation_is_exact_for_any_step() -> None:
    for dt in (0.01, 0.5, 3.0):
        assert physics.first_order(0.0, 1.0, dt, 2.0) == pytest.approx(1.0 - math.exp(-dt / 2.0))
    assert physics.first_order(5.0, 1.0, 1.0, 0.0) == 1.0


def test_runs_are_reproducible_from_the_seed() -> None:
    def run(seed: int) -> list[tuple[float, float, float]]:
        sim = Simulation(PlantParams(seed=seed, weather=WeatherParams(cloud_passes_per_hour=20.0)))
        return [(s.load_w, s.frequency_hz, s.pv_w) for s in (sim.advance(Commands()) for _ in range(300))]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_step_is_pure() -> None:
    params = _params()
    state = Simulation(params).state
    noise = Noise(load=0.3, freq=-1.0, volt=0.5)
    commands = Commands(pv_limit_pct=50.0, bess_setpoint_w=1000.0)
    assert physics.step(state, params, commands, noise) == physics.step(state, params, commands, noise)


def test_clouds_dim_the_sun_and_clear_sky_has_none() -> None:
    clear = PlantParams(seed=5)
    assert all(physics.cloud_factor(clear, t) == 1.0 for t in range(0, 7200, 60))
    cloudy = PlantParams(seed=5, weather=WeatherParams(cloud_passes_per_hour=10.0, cloud_depth=0.7))
    factors = [physics.cloud_factor(cloudy, float(t)) for t in range(0, 4 * 3600, 10)]
    assert all(0.0 <= f <= 1.0 for f in factors)
    assert min(factors) < 0.6
    assert sum(f == 1.0 for f in factors) > len(factors) // 10  # clear gaps between passes
    # A pure function of plant time: the same value in any evaluation order.
    assert [physics.cloud_factor(cloudy, float(t)) for t in range(4 * 3600 - 10, -1, -10)][::-1] == factors


def test_voltage_rises_with_export_and_frequency_stays_near_nominal() -> None:
    sim = Simulation(_params(start_hour=12.0, step_s=1.0))
    exporting = [sim.advance(Commands(bess_setpoint_w=100_000.0)) for _ in range(300)][-1]
    importing = [sim.advance(Commands(pv_connected=False, bess_setpoint_w=-100_000.0)) for _ in range(300)][-1]
    assert exporting.meter_w < 0 < importing.meter_w
    assert exporting.voltage_v > SITE.nominal_voltage_v > importing.voltage_v
    for state in (exporting, importing):
        assert abs(state.voltage_v - SITE.nominal_voltage_v) < 0.05 * SITE.nominal_voltage_v
        assert abs(state.frequency_hz - SITE.nominal_frequency_hz) < 0.15
