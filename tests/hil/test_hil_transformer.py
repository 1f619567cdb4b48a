"""The plant's transformer thermal model (IEEE C57.91 Clause 7) against closed forms, with its events."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hil.physics import PlantState
from hil.transformer import Cooling, TransformerModel, TransformerParams, TransformerSimulation, TransformerState
from hil.transformer_events import FanFailure, HeatWave, SensorDrift, TransformerEvent

RATING_VA = 250_000.0
VOLTAGE_V = 230.0
AMBIENT_C = 30.0


def _params(**changes: object) -> TransformerParams:
    """A transformer in a constant ambient (no daily swing), so that closed forms apply."""
    base = TransformerParams(rating_kva=RATING_VA / 1000.0, ambient_mean_c=AMBIENT_C, ambient_amplitude_c=0.0)
    return dataclasses.replace(base, **changes)


def _model(params: TransformerParams, *events: TransformerEvent) -> TransformerModel:
    return TransformerModel(params, tuple(events), start_hour=0.0)


def _hold(
    model: TransformerModel, state: TransformerState, load_va: float, hours: float, dt_s: float = 60.0
) -> TransformerState:
    for _ in range(round(hours * 3600.0 / dt_s)):
        state = model.step(state, state.t_s + dt_s, load_va, VOLTAGE_V)
    return state


ONAN = {"cooling": Cooling.ONAN}
FANS_ALWAYS_ON = {"fan_on_top_oil_c": -39.0, "fan_off_top_oil_c": -40.0}


# -- steady state -----------------------------------------------------------------------------------


def test_rated_load_gives_the_rated_rises() -> None:
    """K = 1 on the top stage: top oil = ambient + 55, hot spot = ambient + 55 + 25 (the nameplate)."""
    model = _model(_params(**FANS_ALWAYS_ON))
    state = model.equilibrium(0.0, RATING_VA, VOLTAGE_V)
    assert state.fans_on
    assert state.top_oil_c == pytest.approx(AMBIENT_C + 55.0)
    assert state.hot_spot_c == pytest.approx(AMBIENT_C + 80.0)
    assert state.load_pu == pytest.approx(1.0)
    assert state.load_current_a == pytest.approx(RATING_VA / (3.0 * VOLTAGE_V))


@given(k=st.floats(0.05, 1.6), r=st.floats(1.0, 10.0), n=st.floats(0.7, 1.0), m=st.floats(0.7, 1.0))
def test_a_held_load_settles_at_the_closed_form_ultimate_rises(k: float, r: float, n: float, m: float) -> None:
    params = _params(loss_ratio=r, n=n, m=m, **ONAN)
    model = _model(params)
    start = model.equilibrium(0.0, 0.2 * RATING_VA, VOLTAGE_V)
    settled = _hold(model, start, k * RATING_VA, hours=40.0, dt_s=600.0)  # > 13 oil time constants
    top_rise = 55.0 * ((k * k * r + 1.0) / (r + 1.0)) ** n
    assert settled.top_oil_c == pytest.approx(AMBIENT_C + top_rise, abs=1e-3)
    assert settled.hot_spot_c == pytest.approx(AMBIENT_C + top_rise + 25.0 * k ** (2.0 * m), abs=1e-3)
    assert model.equilibrium(0.0, k * RATING_VA, VOLTAGE_V).hot_spot_c == pytest.approx(settled.hot_spot_c, abs=1e-3)


def test_with_the_fans_off_an_onaf_unit_runs_on_its_onan_rating() -> None:
    """Fans off: K relative to 0.8 x rating, R x 0.64, n_onan; the hot-spot gradient follows the current alone."""
    params = _params(fan_on_top_oil_c=150.0, fan_off_top_oil_c=149.0, onan_rating_pu=0.8, n_onan=0.8, loss_ratio=4.5)
    state = _model(params).equilibrium(0.0, 0.8 * RATING_VA, VOLTAGE_V)
    assert not state.fans_on
    assert state.top_oil_rise_c == pytest.approx(55.0)  # rated load of the ONAN stage
    assert state.hot_spot_rise_c == pytest.approx(25.0 * 0.8**1.6)


# -- time response -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dt_s", [1.0, 60.0, 3.0 * 3600.0])
def test_after_one_oil_time_constant_the_top_oil_has_gone_63_percent_of_the_way(dt_s: float) -> None:
    model = _model(_params(tau_oil_h=3.0, **ONAN))
    before = model.equilibrium(0.0, 0.3 * RATING_VA, VOLTAGE_V)
    after = model.equilibrium(0.0, 1.2 * RATING_VA, VOLTAGE_V)
    state = _hold(model, before, 1.2 * RATING_VA, hours=3.0, dt_s=dt_s)
    share = (state.top_oil_rise_c - before.top_oil_rise_c) / (after.top_oil_rise_c - before.top_oil_rise_c)
    assert share == pytest.approx(1.0 - math.exp(-1.0), abs=1e-9)


def test_after_one_winding_time_constant_the_hot_spot_gradient_has_gone_63_percent_of_the_way() -> None:
    model = _model(_params(tau_winding_min=7.0, **ONAN))
    before = model.equilibrium(0.0, 0.5 * RATING_VA, VOLTAGE_V)
    after = model.equilibrium(0.0, 1.0 * RATING_VA, VOLTAGE_V)
    state = _hold(model, before, 1.0 * RATING_VA, hours=7.0 / 60.0, dt_s=1.0)
    share = (state.hot_spot_rise_c - before.hot_spot_rise_c) / (after.hot_spot_rise_c - before.hot_spot_rise_c)
    assert share == pytest.approx(1.0 - math.exp(-1.0), abs=1e-9)


def test_the_onan_stage_has_the_longer_oil_time_constant_of_its_lower_losses() -> None:
    params = _params(loss_ratio=4.5, onan_rating_pu=0.8, tau_oil_h=3.0)
    assert params.stage(fans_on=True).tau_oil_s == pytest.approx(3.0 * 3600.0)
    assert params.stage(fans_on=False).tau_oil_s == pytest.approx(3.0 * 3600.0 * 5.5 / (1.0 + 4.5 * 0.64))


# -- fans ----------------------------------------------------------------------------------------------


def test_the_fans_switch_on_above_and_off_below_their_thresholds_with_hysteresis() -> None:
    model = _model(_params(fan_on_top_oil_c=65.0, fan_off_top_oil_c=58.0))
    state = model.equilibrium(0.0, 0.3 * RATING_VA, VOLTAGE_V)
    assert not state.fans_on and state.top_oil_c < 58.0
    seen: list[tuple[float, bool]] = []
    for load_pu, hours in ((1.2, 6.0), (0.3, 12.0)):
        for _ in range(int(hours * 60)):
            state = model.step(state, state.t_s + 60.0, load_pu * RATING_VA, VOLTAGE_V)
            seen.append((state.top_oil_c, state.fans_on))
    switched_on = next(i for i, (_, on) in enumerate(seen) if on)
    assert seen[switched_on][0] > 65.0 and seen[switched_on - 1][0] <= 65.0
    switched_off = next(i for i, (_, on) in enumerate(seen) if i > switched_on and not on)
    assert seen[switched_off][0] < 58.0 and seen[switched_off - 1][0] >= 58.0
    assert all(on for top, on in seen[switched_on:switched_off])  # on all the way down through 65..58
    assert any(58.0 < top < 65.0 for top, _ in seen[switched_on:switched_off])


def test_an_onan_unit_never_runs_fans() -> None:
    model = _model(_params(**ONAN))
    state = _hold(model, model.equilibrium(0.0, RATING_VA, VOLTAGE_V), 1.5 * RATING_VA, hours=6.0)
    assert state.top_oil_c > 100.0 and not state.fans_on


def test_a_fan_failure_holds_the_fans_off_and_raises_the_top_oil() -> None:
    params = _params(fan_on_top_oil_c=65.0, fan_off_top_oil_c=58.0)
    failure = FanFailure(at_s=3600.0, duration_s=4 * 3600.0)
    healthy, failed = _model(params), _model(params, failure)
    a = b = healthy.equilibrium(0.0, 1.0 * RATING_VA, VOLTAGE_V)
    assert a.fans_on
    for _ in range(5 * 60 - 1):  # to one minute before the fans come back
        a = healthy.step(a, a.t_s + 60.0, RATING_VA, VOLTAGE_V)
        b = failed.step(b, b.t_s + 60.0, RATING_VA, VOLTAGE_V)
        if b.t_s >= failure.at_s:
            assert b.fans_failed and not b.fans_on
    assert a.fans_on and not b.fans_on
    assert a.top_oil_c == pytest.approx(AMBIENT_C + 55.0)
    assert b.top_oil_c > a.top_oil_c + 8.0  # ONAN at 1.25 pu of its rating vs ONAF at 1 pu
    assert b.hot_spot_rise_c == pytest.approx(a.hot_spot_rise_c)  # the gradient follows the current
    b = _hold(failed, b, RATING_VA, hours=0.5)
    assert b.fans_on and not b.fans_failed  # repaired: the hot oil switches them on at once


# -- heat wave and sensor drift ------------------------------------------------------------------------


def test_a_heat_wave_eases_in_holds_and_eases_out() -> None:
    wave = HeatWave(at_s=3600.0, duration_s=10 * 3600.0, ambient_rise_c=12.0, ramp_s=2 * 3600.0)
    model = _model(_params(**ONAN), wave)
    assert model.ambient_c(3599.0) == AMBIENT_C
    assert model.ambient_c(3600.0 + 3600.0) == pytest.approx(AMBIENT_C + 6.0)  # half-way up the ramp
    assert model.ambient_c(6 * 3600.0) == pytest.approx(AMBIENT_C + 12.0)
    assert model.ambient_c(11 * 3600.0 - 3600.0) == pytest.approx(AMBIENT_C + 6.0)
    assert model.ambient_c(11 * 3600.0 + 1.0) == AMBIENT_C
    samples = [model.ambient_c(3600.0 + i * 60.0) for i in range(121)]
    assert samples == sorted(samples)  # eased in: never a step down


def test_the_ambient_follows_a_daily_sine_peaking_at_the_given_hour() -> None:
    model = TransformerModel(_params(ambient_amplitude_c=6.0, ambient_peak_h=15.0), (), start_hour=9.0)
    assert model.ambient_c(6 * 3600.0) == pytest.approx(AMBIENT_C + 6.0)  # 15:00
    assert model.ambient_c(18 * 3600.0) == pytest.approx(AMBIENT_C - 6.0)  # 03:00
    assert model.ambient_c(0.0) == pytest.approx(AMBIENT_C)  # 09:00, a quarter day before the peak


def test_the_top_oil_carries_a_heat_wave_on_top_of_its_rise() -> None:
    wave = HeatWave(at_s=0.0, duration_s=100 * 3600.0, ambient_rise_c=10.0, ramp_s=3600.0)
    calm, hot = _model(_params(**ONAN)), _model(_params(**ONAN), wave)
    a = _hold(calm, calm.equilibrium(0.0, RATING_VA, VOLTAGE_V), RATING_VA, hours=24.0)
    b = _hold(hot, hot.equilibrium(0.0, RATING_VA, VOLTAGE_V), RATING_VA, hours=24.0)
    assert b.top_oil_c - a.top_oil_c == pytest.approx(10.0)
    assert b.hot_spot_c - a.hot_spot_c == pytest.approx(10.0)


def test_a_drifting_sensor_shows_in_the_reading_but_not_in_the_true_state() -> None:
    drift = SensorDrift(at_s=3600.0, rate_c_per_h=-1.5, duration_s=10 * 3600.0)
    model = _model(_params(**ONAN), drift)
    clean = _model(_params(**ONAN))
    state = model.equilibrium(0.0, 0.8 * RATING_VA, VOLTAGE_V)
    reference = clean.equilibrium(0.0, 0.8 * RATING_VA, VOLTAGE_V)
    for hour, offset in ((0.5, 0.0), (3.0, -3.0), (11.0 - 1.0 / 60.0, -14.975), (12.0, 0.0)):
        state = _hold(model, state, 0.8 * RATING_VA, hours=hour - state.t_s / 3600.0)
        reference = _hold(clean, reference, 0.8 * RATING_VA, hours=hour - reference.t_s / 3600.0)
        assert state == reference  # the truth knows nothing of the drift
        readings = model.readings(state)
        assert readings.top_oil_c - state.top_oil_c == pytest.approx(offset)
        assert readings.hot_spot_c == state.hot_spot_c  # the fibre-optic probe does not drift


# -- driven by the plant -------------------------------------------------------------------------------


def _plant_state(t_s: float, meter_w: float, load_var: float, voltage_v: float = VOLTAGE_V) -> PlantState:
    return PlantState(
        t_s=t_s, pv_available_w=0.0, pv_w=0.0, load_w=0.0, load_var=load_var, bess_w=0.0, soc_pct=50.0,
        meter_w=meter_w, voltage_v=voltage_v, frequency_hz=50.0, import_wh=0.0, export_wh=0.0, pv_wh=0.0,
        bess_charged_wh=0.0, bess_discharged_wh=0.0,
    )  # fmt: skip


def test_the_load_is_the_apparent_power_through_the_pcc_in_either_direction() -> None:
    model = _model(_params(**ONAN))
    exporting = TransformerSimulation(model, _plant_state(0.0, meter_w=-120_000.0, load_var=50_000.0))
    importing = TransformerSimulation(model, _plant_state(0.0, meter_w=120_000.0, load_var=50_000.0))
    assert exporting.state.load_va == pytest.approx(130_000.0)
    assert exporting.state == importing.state
    state = exporting.advance(_plant_state(0.1, meter_w=-240_000.0, load_var=-70_000.0, voltage_v=240.0))
    assert state.load_pu == pytest.approx(1.0)
    assert state.load_current_a == pytest.approx(250_000.0 / (3.0 * 240.0))
    assert state.t_s == 0.1
