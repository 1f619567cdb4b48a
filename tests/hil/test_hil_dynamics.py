"""Battery and PV dynamics of the plant physics (no I/O): dead time, lag, ramp, temperature."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil import physics
from hil.physics import Commands, Noise, PlantParams, Simulation, SiteParams
from hil.scenario import load_scenario

SITE = SiteParams()


def _sim(start_hour: float = 13.0, **site: float) -> Simulation:
    return Simulation(PlantParams(site=dataclasses.replace(SITE, **site), start_hour=start_hour, seed=4))


def test_battery_waits_out_the_dead_time_then_follows_with_its_time_constant() -> None:
    dead, tau, dt = 0.1, 0.2, 0.01
    sim = _sim(bess_dead_time_s=dead, bess_tau_s=tau, bess_ramp_w_per_s=1e6, step_s=dt)
    target = -50_000.0
    trace = [sim.advance(Commands(bess_setpoint_w=target)) for _ in range(200)]
    dead_steps = round(dead / dt)
    # Commanded from t = 0: nothing at all until the dead time has passed ...
    assert all(s.bess_w == 0.0 for s in trace[:dead_steps])
    assert trace[dead_steps - 1].t_s == pytest.approx(dead)
    # ... then a first-order response: 63 % one time constant after the dead time.
    assert trace[dead_steps].bess_w < 0.0
    at_tau = trace[dead_steps + round(tau / dt) - 1]
    assert at_tau.t_s == pytest.approx(dead + tau)
    assert at_tau.bess_w / target == pytest.approx(1.0 - math.exp(-1.0), abs=0.005)
    assert trace[-1].bess_w == pytest.approx(target, rel=1e-3)  # 9.5 tau later
    assert all(s.bess_setpoint_w == target for s in trace)  # as commanded, before the dead time


def test_a_setpoint_pulse_shorter_than_the_dead_time_is_replayed_not_lost() -> None:
    sim = _sim(bess_dead_time_s=0.5, bess_ramp_w_per_s=1e7, step_s=0.1)
    setpoints = [0.0, 30_000.0, 30_000.0, -20_000.0, 0.0] + [0.0] * 10
    powers = [sim.advance(Commands(bess_setpoint_w=w)).bess_w for w in setpoints]
    # No lag, no ramp: the power is the setpoint of 5 steps (0.5 s) earlier, shifted one step
    # because a setpoint commanded for the step starting at t shows in the state at t + dt.
    assert powers == pytest.approx([0.0] * 5 + setpoints[:10])


@given(
    setpoints=st.lists(st.sampled_from([-80_000.0, -10_000.0, 0.0, 25_000.0, 90_000.0]), min_size=1, max_size=60),
    dead_steps=st.integers(0, 6),
)
def test_dead_time_is_a_pure_shift_of_the_commanded_setpoints(setpoints: list[float], dead_steps: int) -> None:
    dt = 0.1
    sim = _sim(bess_dead_time_s=dead_steps * dt, bess_ramp_w_per_s=1e7, step_s=dt, bess_kwh=10_000.0)
    powers = [sim.advance(Commands(bess_setpoint_w=w)).bess_w for w in setpoints]
    assert powers == ([0.0] * dead_steps + setpoints)[: len(setpoints)]
    assert len(sim.state.bess_pending) <= dead_steps + 1  # the delay line never grows beyond the dead time


@given(
    setpoints=st.lists(st.floats(-150_000.0, 150_000.0), min_size=1, max_size=40),
    soc_initial=st.floats(5.0, 95.0),
)
def test_defaults_keep_the_ramp_only_battery(setpoints: list[float], soc_initial: float) -> None:
    """No dead time and no lag by default: the battery is exactly the ramp-limited source of before."""
    site = dataclasses.replace(SITE, bess_kwh=2.0, soc_initial_pct=soc_initial, step_s=1.0)
    assert (site.bess_dead_time_s, site.bess_tau_s) == (0.0, 0.0)
    sim = Simulation(PlantParams(site=site))
    bess_w, soc = 0.0, soc_initial
    for setpoint in setpoints:
        state = sim.advance(Commands(bess_setpoint_w=setpoint))
        bess_w, soc = physics.bess_step(bess_w, soc, setpoint, site, site.step_s)
        assert (state.bess_w, state.soc_pct) == (bess_w, soc)


def test_ramp_limit_still_applies_after_the_lag() -> None:
    sim = _sim(bess_dead_time_s=0.1, bess_tau_s=0.2, bess_ramp_w_per_s=50_000.0, step_s=0.01)
    powers = [sim.advance(Commands(bess_setpoint_w=100_000.0)).bess_w for _ in range(300)]
    steps = [b - a for a, b in zip([0.0, *powers], powers, strict=False)]
    assert max(steps) <= 50_000.0 * 0.01 + 1e-9
    assert max(steps) == pytest.approx(500.0)  # the lag alone would jump by 5 kW in the first step
    assert powers[-1] == pytest.approx(100_000.0, rel=1e-3)


def test_rating_and_soc_cut_offs_act_on_the_lagged_battery() -> None:
    sim = _sim(bess_tau_s=0.5, bess_ramp_w_per_s=1e6, step_s=0.1, soc_initial_pct=95.0)
    for _ in range(50):
        state = sim.advance(Commands(bess_setpoint_w=-300_000.0))  # charge a full battery
        assert state.bess_w == 0.0 and state.soc_pct == 95.0
    for _ in range(50):
        state = sim.advance(Commands(bess_setpoint_w=300_000.0))
        assert 0.0 <= state.bess_w <= 1000.0 * SITE.bess_kw
    assert state.bess_w == pytest.approx(1000.0 * SITE.bess_kw, rel=1e-3)


def test_pv_follows_a_new_limit_with_the_inverter_time_constant() -> None:
    scenario = load_scenario("export-step")
    assert scenario.site.inverter_tau_s == 1.0
    params = dataclasses.replace(scenario.params, site=dataclasses.replace(scenario.site, step_s=0.01))
    sim = Simulation(params)
    start = sim.state.pv_w
    target = 0.40 * scenario.site.inverter_w
    trace = [sim.advance(Commands(pv_limit_pct=40.0)) for _ in range(300)]
    assert trace[99].t_s == pytest.approx(1.0)
    assert (start - trace[99].pv_w) / (start - target) == pytest.approx(1.0 - math.exp(-1.0), abs=0.01)
    assert trace[-1].pv_w == pytest.approx(target + (start - target) * math.exp(-3.0), rel=0.01)
    assert all(s.pv_limit_pct == 40.0 for s in trace)


def test_battery_heats_with_the_square_of_its_power_towards_a_steady_rise() -> None:
    tau = 20.0
    sim = _sim(bess_thermal_tau_s=tau, bess_ramp_w_per_s=1e6, step_s=0.5, ambient_c=15.0, bess_heating_c=8.0)
    assert sim.state.bess_temp_c == 15.0  # idle battery starts at ambient
    half_power = 0.5 * 1000.0 * SITE.bess_kw
    temps = [sim.advance(Commands(bess_setpoint_w=half_power)).bess_temp_c for _ in range(int(10 * tau / 0.5))]
    steady = 15.0 + 8.0 * 0.5**2
    assert temps[int(tau / 0.5) - 1] - 15.0 == pytest.approx((steady - 15.0) * (1.0 - math.exp(-1.0)), rel=0.02)
    assert temps[-1] == pytest.approx(steady, abs=1e-3)
    for _ in range(int(10 * tau / 0.5)):
        state = sim.advance(Commands(bess_setpoint_w=-2 * half_power))  # charging heats too
    assert state.bess_temp_c == pytest.approx(15.0 + 8.0, abs=1e-3)


def test_step_stays_pure_with_a_delay_line_in_flight() -> None:
    sim = _sim(bess_dead_time_s=0.3, bess_tau_s=0.2, step_s=0.1)
    for setpoint in (10_000.0, 20_000.0):
        sim.advance(Commands(bess_setpoint_w=setpoint))
    state = sim.state
    assert len(state.bess_pending) == 2
    noise, commands = Noise(load=0.5), Commands(bess_setpoint_w=-5_000.0)
    first = physics.step(state, sim.params, commands, noise)
    assert first == physics.step(state, sim.params, commands, noise)
    assert sim.state is state and len(state.bess_pending) == 2  # the input state is untouched
