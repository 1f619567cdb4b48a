"""Thermal models: IEEE C57.91 Clause 7 and IEC 60076-7 difference equations, and their parameters.

Values from the standards' text: the presets' table values and the 98 °C hot spot at rated load and
20 °C ambient that IEC 60076-7 Table 4 states for every column. Everything else is derived: closed-form
properties (steady state, 63.2 % after one time constant, step-size invariance, agreement of the two
models, monotonicity), a literal transcription of the IEC difference equations as an oracle, and
one hand-computed IEEE example.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.analytics.thermal import (
    Iec60076Model,
    IecState,
    IeeeClause7Model,
    IeeeState,
    LoadSeries,
    ThermalInputs,
)
from edgeagent.analytics.thermal_params import (
    ONAF_POWER,
    ONAN_DISTRIBUTION,
    PRESETS,
    CoolingMode,
    ThermalParamError,
    ThermalParams,
)

ONE_TAU = 1 - math.exp(-1)  # 0.632…


@st.composite
def params_st(draw: st.DrawFn, equivalent: bool = False) -> ThermalParams:
    """Random but plausible parameters; `equivalent` ties IEC x, y to IEEE n, m (x = n, y = 2m)."""
    n = draw(st.floats(0.6, 1.2))
    m = draw(st.floats(0.6, 1.2))
    return ThermalParams(
        cooling=draw(st.sampled_from(list(CoolingMode))),
        top_oil_rise_rated_k=draw(st.floats(20, 70)),
        hot_spot_gradient_rated_k=draw(st.floats(5, 40)),
        loss_ratio=draw(st.floats(0.5, 20)),
        exponent_n=n,
        exponent_m=m,
        exponent_x=n if equivalent else draw(st.floats(0.6, 1.2)),
        exponent_y=2 * m if equivalent else draw(st.floats(1.0, 2.4)),
        oil_time_constant_min=draw(st.floats(60, 300)),
        winding_time_constant_min=draw(st.floats(3, 20)),
        k11=draw(st.floats(0.4, 1.2)),
        k21=draw(st.floats(1.0, 3.0)),
        k22=draw(st.floats(1.0, 2.5)),
    )


loads = st.floats(0.0, 2.0)
ambients = st.floats(-30.0, 45.0)


def piecewise_series(breaks_min: list[float], loads_pu: list[float], ambients_c: list[float],
                     end_min: float, dt_min: float) -> LoadSeries:
    """Sample a piecewise-constant schedule every `dt_min` (breaks must fall on the grid)."""
    t = np.arange(0.0, end_min + dt_min / 2, dt_min)
    idx = np.searchsorted(np.asarray(breaks_min), t + 1e-9, side="right") - 1
    return LoadSeries(t, np.asarray(loads_pu)[idx], np.asarray(ambients_c)[idx])


def iec_literal(params: ThermalParams, state: tuple[float, float, float], load_pu: float, ambient_c: float,
                dt_min: float, substeps: int) -> tuple[float, float, float]:
    """The IEC 60076-7 difference equations, iterated literally (the oracle for the closed-form sum)."""
    theta_o, h1, h2 = state
    p = params
    step = dt_min / substeps
    for _ in range(substeps):
        d_o = step / (p.k11 * p.oil_time_constant_min) * (
            ((1 + load_pu**2 * p.loss_ratio) / (1 + p.loss_ratio)) ** p.exponent_x * p.top_oil_rise_rated_k
            - (theta_o - ambient_c))
        d_h1 = step / (p.k22 * p.winding_time_constant_min) * (
            p.k21 * p.hot_spot_gradient_rated_k * load_pu**p.exponent_y - h1)
        d_h2 = step / (p.oil_time_constant_min / p.k22) * (
            (p.k21 - 1) * p.hot_spot_gradient_rated_k * load_pu**p.exponent_y - h2)
        theta_o, h1, h2 = theta_o + d_o, h1 + d_h1, h2 + d_h2
    return theta_o, h1, h2


# ---- values from the standards' tables ---------------------------------------------------------------------

@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_reaches_98c_hot_spot_at_rated_load_and_20c_from_cold(name: str) -> None:
    """IEC 60076-7 Table 4 gives θh = 98 °C at K = 1, θa = 20 °C for each column (= 20 + Δθor + Δθhr)."""
    params = PRESETS[name]
    end_min = 30 * params.oil_time_constant_min
    series = LoadSeries([0.0, end_min / 2, end_min], [1.0, 1.0, 1.0], [20.0, 20.0, 20.0])
    ieee = IeeeClause7Model(params).simulate(series, IeeeState(0.0, 0.0))
    iec = Iec60076Model(params).simulate(series, IecState(20.0, 0.0, 0.0))
    assert ieee.hot_spot_c[0] == pytest.approx(20.0)
    assert ieee.hot_spot_c[-1] == pytest.approx(98.0, abs=1e-6)
    assert iec.hot_spot_c[-1] == pytest.approx(98.0, abs=1e-6)
    assert iec.top_oil_c[-1] == pytest.approx(20.0 + params.top_oil_rise_rated_k, abs=1e-6)


def test_presets_carry_the_table_exponents_and_constants() -> None:
    """IEEE C57.91 Table 4: ONAN n = m = 0.8, ONAF n = 0.9, m = 0.8. IEC 60076-7 Table 4 k's and τ's."""
    assert (ONAN_DISTRIBUTION.exponent_n, ONAN_DISTRIBUTION.exponent_m) == (0.8, 0.8)
    assert (ONAF_POWER.exponent_n, ONAF_POWER.exponent_m) == (0.9, 0.8)
    assert (ONAN_DISTRIBUTION.k11, ONAN_DISTRIBUTION.k21, ONAN_DISTRIBUTION.k22) == (1.0, 1.0, 2.0)
    assert (ONAF_POWER.k11, ONAF_POWER.k21, ONAF_POWER.k22) == (0.5, 2.0, 2.0)
    assert PRESETS["onaf_power_restricted"].k21 == 3.0
    assert (ONAF_POWER.oil_time_constant_min, ONAF_POWER.winding_time_constant_min) == (150.0, 7.0)


# ---- IEEE C57.91 Clause 7 ------------------------------------------------------------------------------

def test_ieee_ultimate_rises_hand_computed_example() -> None:
    """ONAN distribution preset at K = 1.5, θa = 30 °C, by hand: 55·(12.25/6)^0.8 = 97.35 K, 23·1.5^1.6 = 44.00 K."""
    model = IeeeClause7Model(ONAN_DISTRIBUTION)
    state = model.steady_state(ThermalInputs(1.5, 30.0))
    assert state.top_oil_rise_k == pytest.approx(97.35, abs=0.01)
    assert state.hot_spot_gradient_k == pytest.approx(44.00, abs=0.01)
    assert state.hot_spot_c(30.0) == pytest.approx(171.36, abs=0.02)
    assert model.ultimate_top_oil_rise_k(1.0) == pytest.approx(55.0)
    assert model.ultimate_hot_spot_gradient_k(0.0) == 0.0


@given(params_st(), loads, loads, ambients)
def test_ieee_covers_63_percent_of_a_step_after_one_time_constant(
        params: ThermalParams, k0: float, k1: float, ambient_c: float) -> None:
    model = IeeeClause7Model(params)
    start = model.steady_state(ThermalInputs(k0, ambient_c))
    end = model.steady_state(ThermalInputs(k1, ambient_c))
    after_oil = model.step(start, ThermalInputs(k1, ambient_c), params.top_oil_time_constant_min)
    after_winding = model.step(start, ThermalInputs(k1, ambient_c), params.winding_time_constant_min)
    assert after_oil.top_oil_rise_k - start.top_oil_rise_k == pytest.approx(
        ONE_TAU * (end.top_oil_rise_k - start.top_oil_rise_k), abs=1e-9)
    assert after_winding.hot_spot_gradient_k - start.hot_spot_gradient_k == pytest.approx(
        ONE_TAU * (end.hot_spot_gradient_k - start.hot_spot_gradient_k), abs=1e-9)


@given(params_st(), loads, loads, ambients, st.floats(0.01, 5000), st.integers(2, 50))
def test_ieee_step_is_invariant_to_splitting(
        params: ThermalParams, k0: float, k1: float, ambient_c: float, dt_min: float, parts: int) -> None:
    model = IeeeClause7Model(params)
    start = model.steady_state(ThermalInputs(k0, ambient_c))
    inputs = ThermalInputs(k1, ambient_c)
    whole = model.step(start, inputs, dt_min)
    split = start
    for _ in range(parts):
        split = model.step(split, inputs, dt_min / parts)
    assert split.top_oil_rise_k == pytest.approx(whole.top_oil_rise_k, rel=1e-9, abs=1e-9)
    assert split.hot_spot_gradient_k == pytest.approx(whole.hot_spot_gradient_k, rel=1e-9, abs=1e-9)


def test_ieee_simulation_is_the_same_for_coarse_and_fine_sampling_of_one_schedule() -> None:
    breaks, ks, ambs = [0.0, 60.0, 240.0, 300.0], [0.7, 1.4, 0.2, 1.0], [15.0, 25.0, 25.0, 10.0]
    coarse = IeeeClause7Model(ONAF_POWER).simulate(piecewise_series(breaks, ks, ambs, 600.0, 60.0))
    fine = IeeeClause7Model(ONAF_POWER).simulate(piecewise_series(breaks, ks, ambs, 600.0, 0.5))
    np.testing.assert_allclose(fine.hot_spot_c[::120], coarse.hot_spot_c, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fine.top_oil_c[::120], coarse.top_oil_c, rtol=0, atol=1e-9)


def test_ieee_step_of_huge_length_lands_on_steady_state() -> None:
    model = IeeeClause7Model(ONAF_POWER)
    state = model.step(IeeeState(0.0, 0.0), ThermalInputs(1.2, 20.0), 1e9)
    assert state == model.steady_state(ThermalInputs(1.2, 20.0))


# ---- IEC 60076-7 difference equations ------------------------------------------------------------------

def test_iec_substep_limit_is_half_the_smallest_time_constant() -> None:
    # ONAF power: k11·τo = 75, k22·τw = 14, τo/k22 = 75 → 7 min; ONAN distribution: 180, 8, 90 → 4 min.
    assert Iec60076Model(ONAF_POWER).substep_limit_min == pytest.approx(7.0)
    assert Iec60076Model(ONAN_DISTRIBUTION).substep_limit_min == pytest.approx(4.0)
    with pytest.raises(ValueError, match="max_substep_min"):
        Iec60076Model(ONAF_POWER, max_substep_min=7.5)
    with pytest.raises(ValueError, match="max_substep_min"):
        Iec60076Model(ONAF_POWER, max_substep_min=0.0)


@given(params_st(), loads, loads, ambients, ambients, st.floats(0.1, 600))
def test_iec_step_equals_the_literal_difference_equations(
        params: ThermalParams, k0: float, k1: float, amb0: float, amb1: float, dt_min: float) -> None:
    model = Iec60076Model(params)
    start = model.steady_state(ThermalInputs(k0, amb0))
    got = model.step(start, ThermalInputs(k1, amb1), dt_min)
    substeps = math.ceil(dt_min / model.substep_limit_min)
    want = iec_literal(params, (start.top_oil_c, start.hot_spot_rise_1_k, start.hot_spot_rise_2_k),
                       k1, amb1, dt_min, substeps)
    assert (got.top_oil_c, got.hot_spot_rise_1_k, got.hot_spot_rise_2_k) == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_iec_top_oil_converges_to_the_exponential_as_the_substep_shrinks() -> None:
    """The top-oil equation is first order: Euler error shrinks ~linearly with Dt towards 63.2 % at k11·τo."""
    params = ONAF_POWER
    tau_min = params.top_oil_time_constant_min
    errors = []
    for substep_min in (7.0, 1.0, 0.1):
        model = Iec60076Model(params, max_substep_min=substep_min)
        start = model.steady_state(ThermalInputs(0.5, 20.0))
        end = model.steady_state(ThermalInputs(1.3, 20.0))
        after = model.step(start, ThermalInputs(1.3, 20.0), tau_min)
        fraction = (after.top_oil_c - start.top_oil_c) / (end.top_oil_c - start.top_oil_c)
        errors.append(abs(fraction - ONE_TAU))
    assert errors[2] < 1e-3
    assert errors[0] > errors[1] > errors[2]


def test_iec_hot_spot_overshoots_after_a_load_step_only_when_k21_exceeds_1() -> None:
    """k21 > 1 gives the hot-spot rise overshoot the IEC model exists for; k21 = 1 makes it first order."""
    series = piecewise_series([0.0, 60.0], [0.5, 1.0], [20.0, 20.0], 1200.0, 1.0)
    for k21, overshoots in ((2.0, True), (1.0, False)):
        params = replace(ONAF_POWER, k21=k21)
        trace = Iec60076Model(params).simulate(series)
        rise_k = trace.hot_spot_c - trace.top_oil_c
        final_k = params.hot_spot_gradient_rated_k
        assert rise_k[-1] == pytest.approx(final_k, abs=0.05)
        assert bool(rise_k.max() > final_k + 1.0) is overshoots
        assert rise_k.max() <= final_k * k21 + 1e-9


def test_iec_top_oil_follows_an_ambient_step_with_its_time_constant_while_ieee_follows_at_once() -> None:
    series = piecewise_series([0.0, 10.0], [1.0, 1.0], [20.0, 30.0], 10.0 + ONAF_POWER.top_oil_time_constant_min, 0.05)
    iec = Iec60076Model(ONAF_POWER, max_substep_min=0.05).simulate(series)
    ieee = IeeeClause7Model(ONAF_POWER).simulate(series)
    assert iec.top_oil_c[-1] - iec.top_oil_c[0] == pytest.approx(10.0 * ONE_TAU, abs=0.01)
    assert ieee.top_oil_c[-1] - ieee.top_oil_c[0] == pytest.approx(10.0)


# ---- both models -------------------------------------------------------------------------------------------

@given(params_st(equivalent=True), loads, ambients)
def test_ieee_and_iec_agree_at_steady_state_for_equivalent_parameters(
        params: ThermalParams, load_pu: float, ambient_c: float) -> None:
    inputs = ThermalInputs(load_pu, ambient_c)
    ieee = IeeeClause7Model(params)
    iec = Iec60076Model(params)
    assert iec.steady_state(inputs).hot_spot_c == pytest.approx(ieee.steady_state(inputs).hot_spot_c(ambient_c))
    long_min = 40 * max(params.oil_time_constant_min * max(params.k11, 1 / params.k22),
                        params.k22 * params.winding_time_constant_min)
    from_cold_iec = iec.step(IecState(ambient_c, 0.0, 0.0), inputs, long_min)
    from_cold_ieee = ieee.step(IeeeState(0.0, 0.0), inputs, long_min)
    assert from_cold_iec.hot_spot_c == pytest.approx(from_cold_ieee.hot_spot_c(ambient_c), abs=1e-6)


@given(params_st(equivalent=True), st.lists(st.tuples(loads, ambients), min_size=2, max_size=8))
def test_iec_top_oil_with_fine_substeps_matches_ieee_exact_exponential(
        params: ThermalParams, schedule: list[tuple[float, float]]) -> None:
    """Same first-order top-oil ODE in both (IEEE ambient-free rise + ambient vs IEC θo) once ambient is steady."""
    breaks = [60.0 * i for i in range(len(schedule))]
    ks = [k for k, _ in schedule]
    ambs = [schedule[0][1]] * len(schedule)
    series = piecewise_series(breaks, ks, ambs, 60.0 * len(schedule), 60.0)
    iec = Iec60076Model(params, max_substep_min=0.02).simulate(series)
    ieee = IeeeClause7Model(params).simulate(series)
    np.testing.assert_allclose(iec.top_oil_c, ieee.top_oil_c, rtol=1e-3, atol=0.02)


schedules = st.lists(st.tuples(st.floats(1, 240), loads, ambients, st.floats(0, 1), st.floats(0, 15)),
                     min_size=1, max_size=10)


def _pair(schedule: list[tuple[float, float, float, float, float]]) -> tuple[LoadSeries, LoadSeries, LoadSeries]:
    """A series, the same with more load, and the same with a warmer ambient."""
    t = np.concatenate([[0.0], np.cumsum([dt for dt, *_ in schedule])])
    k = np.array([k for _, k, *_ in schedule] + [schedule[-1][1]])
    amb = np.array([a for _, _, a, *_ in schedule] + [schedule[-1][2]])
    dk = np.array([d for *_, d, _ in schedule] + [schedule[-1][3]])
    da = np.array([d for *_, d in schedule] + [schedule[-1][4]])
    return LoadSeries(t, k, amb), LoadSeries(t, k + dk, amb), LoadSeries(t, k, amb + da)


@given(params_st(), schedules)
def test_ieee_hot_spot_is_monotone_in_load_and_ambient(
        params: ThermalParams, schedule: list[tuple[float, float, float, float, float]]) -> None:
    base, more_load, warmer = _pair(schedule)
    model = IeeeClause7Model(params)
    hot = model.simulate(base).hot_spot_c
    assert np.all(model.simulate(more_load).hot_spot_c >= hot - 1e-9)
    assert np.all(model.simulate(warmer).hot_spot_c >= hot - 1e-9)


@given(params_st(), schedules)
def test_iec_top_oil_is_monotone_in_load_and_ambient_and_hot_spot_in_ambient(
        params: ThermalParams, schedule: list[tuple[float, float, float, float, float]]) -> None:
    """Not the hot spot in load: k21 > 1 makes Δθh undershoot after a load drop, a real feature of the model."""
    base, more_load, warmer = _pair(schedule)
    model = Iec60076Model(params)
    trace = model.simulate(base)
    assert np.all(model.simulate(more_load).top_oil_c >= trace.top_oil_c - 1e-9)
    hotter = model.simulate(warmer)
    assert np.all(hotter.top_oil_c >= trace.top_oil_c - 1e-9)
    assert np.all(hotter.hot_spot_c >= trace.hot_spot_c - 1e-9)


@given(params_st(), st.floats(0, 2), st.floats(0.001, 1), ambients)
def test_steady_state_hot_spot_rises_with_load(params: ThermalParams, k: float, dk: float, ambient_c: float) -> None:
    for model in (IeeeClause7Model(params), Iec60076Model(params)):
        low = model.steady_state(ThermalInputs(k, ambient_c))
        high = model.steady_state(ThermalInputs(k + dk, ambient_c))
        low_c = low.hot_spot_c if isinstance(low, IecState) else low.hot_spot_c(ambient_c)
        high_c = high.hot_spot_c if isinstance(high, IecState) else high.hot_spot_c(ambient_c)
        assert high_c > low_c


def test_trace_holds_each_sample_until_the_next_and_is_read_only() -> None:
    """Zero-order hold: the load at time_min[i] acts on [time_min[i], time_min[i + 1])."""
    series = LoadSeries([0, 30, 90], [1.0, 1.2, 0.8], [20, 20, 20])
    for model in (IeeeClause7Model(ONAF_POWER), Iec60076Model(ONAF_POWER)):
        trace = model.simulate(series)
        assert trace.hot_spot_c.shape == trace.top_oil_c.shape == (3,)
        assert trace.hot_spot_c[0] == pytest.approx(98.0)
        assert trace.hot_spot_c[1] == pytest.approx(98.0)
        assert trace.hot_spot_c[2] > trace.hot_spot_c[1] + 5
        with pytest.raises(ValueError, match="read-only"):
            trace.hot_spot_c[0] = 0.0


# ---- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "match"), [
    (([0, 1], [1.0], [20, 20]), "differ in length.*time_min 2, load_pu 1, ambient_c 2"),
    (([0, 1, 1], [1, 1, 1], [20, 20, 20]), r"time_min: must increase strictly; index 2"),
    (([0, 1, 2], [1, float("nan"), 1], [20, 20, 20]), r"load_pu: index 1 is nan"),
    (([0, 1, 2], [1, 1, 1], [20, 20, float("inf")]), r"ambient_c: index 2 is inf"),
    (([0, 1], [1, -0.1], [20, 20]), r"load_pu: must be >= 0; index 1"),
    (([], [], []), r"time_min: must be a non-empty 1-D array"),
    (([[0, 1]], [[1, 1]], [[2, 2]]), r"time_min: must be a non-empty 1-D array"),
    ((["a"], [1], [2]), r"time_min: not an array of numbers"),
])
def test_load_series_rejects_bad_input(args: tuple[Any, Any, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        LoadSeries(*args)


def test_step_rejects_bad_inputs_and_states() -> None:
    model = IeeeClause7Model(ONAF_POWER)
    with pytest.raises(ValueError, match="load_pu"):
        ThermalInputs(float("nan"), 20.0)
    with pytest.raises(ValueError, match="ambient_c"):
        ThermalInputs(1.0, float("inf"))
    with pytest.raises(ValueError, match="dt_min"):
        model.step(IeeeState(1.0, 1.0), ThermalInputs(1.0, 20.0), -1.0)
    with pytest.raises(ValueError, match=r"IecState\.top_oil_c"):
        IecState(float("nan"), 0.0, 0.0)
    with pytest.raises(ValueError, match="load_pu"):
        model.ultimate_hot_spot_gradient_k(-1.0)


# ---- parameters ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("change", "field"), [
    ({"loss_ratio": 0.0}, "loss_ratio"),
    ({"top_oil_rise_rated_k": 550.0}, "top_oil_rise_rated_k"),
    ({"exponent_m": 8.0}, "exponent_m"),
    ({"winding_time_constant_min": float("nan")}, "winding_time_constant_min"),
    ({"k21": 0.9}, "k21"),
    ({"k22": -1.0}, "k22"),
    ({"k11": True}, "k11"),
    ({"cooling": "ONAN"}, "cooling"),
])
def test_params_reject_bad_values_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ThermalParamError, match=f"^{field}: ") as info:
        replace(ONAF_POWER, **change)
    assert info.value.field == field


def _as_mapping(params: ThermalParams) -> dict[str, Any]:
    return {name: (str(value) if name == "cooling" else value)
            for name, value in ((n, getattr(params, n)) for n in ThermalParams.__dataclass_fields__)}


def test_from_mapping_round_trips_a_full_table_and_applies_preset_overrides() -> None:
    assert ThermalParams.from_mapping(_as_mapping(ONAN_DISTRIBUTION), "t1") == ONAN_DISTRIBUTION
    got = ThermalParams.from_mapping({"preset": "onaf_power", "top_oil_rise_rated_k": 50, "cooling": "onaf"}, "t1")
    assert got == replace(ONAF_POWER, top_oil_rise_rated_k=50.0)


@pytest.mark.parametrize(("mapping", "message"), [
    ({"preset": "onaf_power", "k12": 1.0}, "t1.thermal.k12: unknown key"),
    ({"preset": "onaf_pwr"}, "t1.thermal.preset: unknown preset 'onaf_pwr'"),
    ({"preset": "onaf_power", "k21": "2"}, "t1.thermal.k21: must be a number"),
    ({"preset": "onaf_power", "k21": True}, "t1.thermal.k21: must be a number"),
    ({"preset": "onaf_power", "k21": 0.5}, r"t1.thermal.k21: must be >= 1 \(got 0.5\)"),
    ({"preset": "onaf_power", "cooling": "AF"}, "t1.thermal.cooling: must be one of ONAN, ONAF, OF, OD"),
    ({"cooling": "ONAN"}, r"t1.thermal.top_oil_rise_rated_k: missing \(and no 'preset'"),
    ([1, 2], "t1.thermal: expected a table"),
])
def test_from_mapping_errors_name_the_key(mapping: Any, message: str) -> None:
    with pytest.raises(ThermalParamError, match=f"^{message}"):
        ThermalParams.from_mapping(mapping, "t1.thermal")


def test_from_mapping_names_a_bad_value_in_a_full_table() -> None:
    table = _as_mapping(ONAN_DISTRIBUTION) | {"winding_time_constant_min": 0}
    with pytest.raises(ThermalParamError, match=r"^tx.winding_time_constant_min: must be > 0"):
        ThermalParams.from_mapping(table, "tx")
