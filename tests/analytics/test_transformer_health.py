"""Transformer findings and recommendations: projection, BESS sizing on the physics, cooling CUSUM."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.analytics.ageing import loss_of_life
from edgeagent.analytics.thermal import IeeeClause7Model, LoadSeries
from edgeagent.analytics.thermal_params import ONAF_POWER, ONAN_POWER
from edgeagent.analytics.transformer_health import HotSpotLimits, project, repeat_daily_profile, window_sha256
from edgeagent.analytics.transformer_health_cusum import cooling_anomaly, cooling_recommendation
from edgeagent.analytics.transformer_health_plan import BessLimits, Site, apply_plan, recommend
from edgeagent.decisions.recommendation import Inspection, Proposer, SetpointAction
from edgeagent.safety.presets import get_preset

RULE = Proposer("rule", "transformer-physics", "1")
MODEL = Proposer("model", "top-oil-forecaster", "1.2.0", "ab" * 32)
SITE = Site(rated_kva=10_000.0, power_factor=0.95)
HOURS = np.arange(72.0)


def heat_wave(peak_ambient_c: tuple[float, float, float] = (22.0, 28.0, 34.0), peak_load_pu: float = 0.35,
              ) -> tuple[np.ndarray, np.ndarray]:
    hour_of_day = HOURS % 24
    load = 0.75 + peak_load_pu * np.exp(-(((hour_of_day - 17) / 4) ** 2))
    ambient = np.array(peak_ambient_c)[(HOURS // 24).astype(int)] + 8 * np.sin((hour_of_day - 9) / 24 * 2 * np.pi)
    return load, ambient


def physics_top_oil(load: np.ndarray, ambient: np.ndarray, params=ONAF_POWER):  # type: ignore[no-untyped-def]
    return IeeeClause7Model(params).simulate(LoadSeries(HOURS * 60, load, ambient))


def test_limits_default_to_the_c57_91_presets() -> None:
    limits = HotSpotLimits()
    assert limits.normal_c == get_preset("transformer/c57_91/hot_spot/normal").limit
    assert limits.emergency_c == get_preset("transformer/c57_91/hot_spot/long_time_emergency").limit


def test_projection_matches_the_physics_hot_spot_and_ageing() -> None:
    load, ambient = heat_wave()
    trace = physics_top_oil(load, ambient)
    proj = project(trace.top_oil_c, trace.top_oil_c + 2.0, load, ONAF_POWER)
    np.testing.assert_allclose(proj.hot_spot_p50_c, trace.hot_spot_c, atol=1e-9)
    np.testing.assert_allclose(proj.hot_spot_p90_c, trace.hot_spot_c + 2.0, atol=1e-9)
    assert proj.max_hot_spot_p50_c == pytest.approx(trace.hot_spot_c.max())
    assert proj.hours_over(120.0, "p50") == np.count_nonzero(trace.hot_spot_c > 120.0)
    expected = loss_of_life(trace.hot_spot_c, np.ones(72)).loss_of_life_h
    assert proj.loss_of_life_p50.loss_of_life_h == pytest.approx(expected)
    assert proj.loss_of_life_p90.loss_of_life_h > proj.loss_of_life_p50.loss_of_life_h


def test_heat_wave_recommends_a_discharge_a_day_ahead_that_holds_the_limit_in_the_physics() -> None:
    load, ambient = heat_wave()
    trace = physics_top_oil(load, ambient)
    proj = project(trace.top_oil_c, trace.top_oil_c + 2.0, load, ONAF_POWER)
    sha = window_sha256(load_pu=load, ambient_c=ambient, top_oil_c=trace.top_oil_c)
    rec = recommend(proj, ONAF_POWER, SITE, proposer=MODEL, input_sha256=sha, bess=BessLimits(4000.0, 20_000.0))
    assert rec is not None and rec.plan is not None
    assert rec.lead_time_h is not None and rec.lead_time_h >= 24
    assert rec.key == "transformer.hotspot.normal"
    (action,) = rec.actions
    assert isinstance(action, SetpointAction) and 0 < action.value <= 4000.0
    start_h, end_h = rec.plan.windows_h[0]
    assert start_h < rec.lead_time_h <= end_h
    assert action.duration_s == (end_h - start_h) * 3600
    assert f"{rec.plan.power_kw:.1f} kW" in rec.rationale and "120 °C" in rec.rationale
    figures = rec.evidence.figures
    assert figures["model_sha256"] == "ab" * 32 and rec.evidence.input_sha256 == sha
    assert figures["max_hotspot_c_projected_p90"] == pytest.approx(proj.max_hot_spot_p90_c, abs=0.01)
    assert figures["hours_over_normal_p90"] > 0 and figures["loss_of_life_h_p90"] > 0
    # the plan carried out in an independent run of the physics (P90 = physics + 2 K)
    change_kw = np.zeros(72)
    for start, end in rec.plan.windows_h:
        change_kw[int(start):int(end)] -= rec.plan.power_kw
    relieved = physics_top_oil(SITE.load_with_change(load, change_kw), ambient)
    assert (relieved.hot_spot_c + 2.0).max() <= 120.0 + 1e-6
    assert (trace.hot_spot_c + 2.0).max() > 120.0
    assert set(rec.propose_kwargs()) == {"key", "proposer", "evidence", "rationale", "actions"}


def test_no_recommendation_under_the_limits() -> None:
    load, ambient = heat_wave(peak_ambient_c=(18.0, 20.0, 22.0), peak_load_pu=0.1)
    trace = physics_top_oil(load, ambient)
    proj = project(trace.top_oil_c, trace.top_oil_c + 2.0, load, ONAF_POWER)
    assert proj.max_hot_spot_p90_c < 120.0
    assert recommend(proj, ONAF_POWER, SITE, proposer=RULE, input_sha256="0" * 64,
                     bess=BessLimits(4000.0, 20_000.0)) is None


def test_too_small_a_battery_falls_back_to_load_shift_then_to_an_inspection() -> None:
    load, ambient = heat_wave()
    trace = physics_top_oil(load, ambient)
    proj = project(trace.top_oil_c, trace.top_oil_c + 2.0, load, ONAF_POWER)
    small = BessLimits(50.0, 100.0)
    shift = recommend(proj, ONAF_POWER, SITE, proposer=RULE, input_sha256="0" * 64, bess=small, max_shift_kw=5000.0)
    assert shift is not None and shift.plan is not None and shift.plan.kind == "load_shift"
    assert apply_plan(proj, ONAF_POWER, SITE, shift.plan)[1:].max() <= 120.0 + 1e-9
    assert isinstance(shift.actions[0], Inspection) and "Shift" in shift.rationale
    stuck = recommend(proj, ONAF_POWER, SITE, proposer=RULE, input_sha256="0" * 64, bess=small)
    assert stuck is not None and stuck.plan is None and "Reduce the transformer load" in stuck.rationale


@settings(max_examples=25)
@given(peak_c=st.floats(30.0, 40.0), peak_load=st.floats(0.25, 0.5), tolerance_kw=st.sampled_from([1.0, 5.0]))
def test_recommended_discharge_is_minimal_within_tolerance(peak_c: float, peak_load: float,
                                                           tolerance_kw: float) -> None:
    load, ambient = heat_wave((22.0, 28.0, peak_c), peak_load)
    trace = physics_top_oil(load, ambient)
    proj = project(trace.top_oil_c, trace.top_oil_c + 2.0, load, ONAF_POWER)
    rec = recommend(proj, ONAF_POWER, SITE, proposer=RULE, input_sha256="0" * 64,
                    bess=BessLimits(6000.0, 60_000.0), tolerance_kw=tolerance_kw)
    if rec is None:
        assert proj.max_hot_spot_p90_c <= 120.0
        return
    assert rec.plan is not None
    x_kw = rec.plan.power_kw
    assert apply_plan(proj, ONAF_POWER, SITE, rec.plan)[1:].max() <= rec.plan.limit_c
    assert apply_plan(proj, ONAF_POWER, SITE, rec.plan, max(0.0, x_kw - tolerance_kw))[1:].max() > rec.plan.limit_c


def test_projection_rejects_bad_inputs_with_clear_errors() -> None:
    load, ambient = heat_wave()
    top = physics_top_oil(load, ambient).top_oil_c
    with_nan = top.copy()
    with_nan[5] = np.nan
    with pytest.raises(ValueError, match=r"top_oil_p50_c: index 5 is nan"):
        project(with_nan, top + 2, load, ONAF_POWER)
    with pytest.raises(ValueError, match=r"differ in length.*load_pu 71"):
        project(top, top + 2, load[:-1], ONAF_POWER)
    with pytest.raises(ValueError, match=r"top_oil_p90_c: below top_oil_p50_c at index 0"):
        project(top, top - 1, load, ONAF_POWER)
    with pytest.raises(ValueError, match=r"kelvin"):
        project(top + 273.15, top + 275.15, load, ONAF_POWER)
    with pytest.raises(ValueError, match=r"load_pu: must be >= 0; index 3"):
        project(top, top + 2, np.where(HOURS == 3, -0.1, load), ONAF_POWER)
    with pytest.raises(ValueError, match=r"BessLimits.power_kw"):
        BessLimits(float("nan"), 10.0)


def test_repeat_daily_profile_and_window_hash() -> None:
    recent = np.arange(48.0) / 48
    forecast = repeat_daily_profile(recent, 72)
    np.testing.assert_array_equal(forecast, np.tile(recent[24:], 3))
    with pytest.raises(ValueError, match="at least one day"):
        repeat_daily_profile(recent[:10], 72)
    assert window_sha256(a=recent) != window_sha256(a=forecast[:48])
    assert window_sha256(a=recent, b=forecast) == window_sha256(b=forecast, a=recent)


def _site_week(days: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hours = np.arange(24.0 * days)
    rng = np.random.default_rng(seed)
    load = 0.7 + 0.3 * np.exp(-(((hours % 24) - 17) / 4) ** 2)
    ambient = 25 + 7 * np.sin(((hours % 24) - 9) / 24 * 2 * np.pi) + rng.normal(0, 0.3, hours.size)
    return hours, load, ambient


def test_cusum_stays_quiet_on_a_healthy_unit_with_noise() -> None:
    hours, load, ambient = _site_week()
    for seed in range(5):
        measured = physics_top_oil_h(hours, load, ambient, ONAF_POWER)
        measured = measured + np.random.default_rng(seed).normal(0, 1.0, hours.size)
        result = cooling_anomaly(hours * 60, measured, load, ambient, ONAF_POWER)
        assert not result.alarm, f"seed {seed}: false alarm at {result.alarm_time_min} min"
        assert cooling_recommendation(result, proposer=RULE, input_sha256="0" * 64) is None


def physics_top_oil_h(hours: np.ndarray, load: np.ndarray, ambient: np.ndarray, params=ONAF_POWER):  # type: ignore[no-untyped-def]
    return IeeeClause7Model(params).simulate(LoadSeries(hours * 60, load, ambient)).top_oil_c


def test_cusum_alarms_within_hours_of_a_fan_failure() -> None:
    hours, load, ambient = _site_week()
    healthy = physics_top_oil_h(hours, load, ambient, ONAF_POWER)
    # fans lost at hour 72: the unit runs ONAN, whose rating is ~80 % of the ONAF one, so the same load is
    # 1.25 times as many ONAN per-unit amps
    onan = replace(ONAN_POWER, exponent_n=ONAF_POWER.exponent_n)
    failed = physics_top_oil_h(hours, load * 1.25, ambient, onan)
    measured = np.where(hours < 72, healthy, failed) + np.random.default_rng(1).normal(0, 1.0, hours.size)
    result = cooling_anomaly(hours * 60, measured, load, ambient, ONAF_POWER)
    assert result.alarm and result.alarm_time_min is not None
    delay_h = result.alarm_time_min / 60 - 72
    assert 0 < delay_h <= 24, f"alarm {delay_h:.1f} h after the failure"
    rec = cooling_recommendation(result, proposer=RULE, input_sha256="1" * 64)
    assert rec is not None and rec.key == "transformer.cooling"
    (action,) = rec.actions
    assert isinstance(action, Inspection) and action.text.startswith("inspect cooling fans")
    assert rec.evidence.figures["mean_excess_k"] > result.drift_k


def test_cusum_rejects_bad_inputs() -> None:
    hours, load, ambient = _site_week(1)
    top = physics_top_oil_h(hours, load, ambient)
    with pytest.raises(ValueError, match=r"ambient_c: index 2 is nan"):
        cooling_anomaly(hours * 60, top, load, np.where(hours == 2, np.nan, ambient), ONAF_POWER)
    with pytest.raises(ValueError, match=r"differ in length"):
        cooling_anomaly(hours * 60, top[:-1], load, ambient, ONAF_POWER)
    with pytest.raises(ValueError, match=r"drift_k"):
        cooling_anomaly(hours * 60, top, load, ambient, ONAF_POWER, drift_k=0.0)
    with pytest.raises(ValueError, match=r"time_min: must increase"):
        cooling_anomaly(hours[::-1] * 60, top, load, ambient, ONAF_POWER)
