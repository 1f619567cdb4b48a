"""Ageing: IEEE C57.91 F_AA / F_EQA / loss of life and IEC 60076-7 relative ageing rate.

From the standards' text: F_AA = 1 at 110 °C (IEEE's definition of the reference), V = 1 at 98 °C and
doubling every 6 K for non-upgraded paper (IEC), the IEC relative-ageing table for non-upgraded paper
(powers of two), 180 000 h = 20.55 years (IEEE normal-life table), and F_AA ≈ 6.98 at 130 °C. The
upgraded-paper row of the IEC relative-ageing table is quoted from memory (3 significant figures);
it agrees with the closed form. Everything else is derived (time weighting, splitting invariance,
bounds, monotonicity).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.analytics.ageing import (
    NORMAL_INSULATION_LIFE_H,
    Paper,
    aging_acceleration_factor,
    equivalent_aging_factor,
    loss_of_life,
    relative_ageing_rate,
)
from edgeagent.analytics.thermal import IeeeClause7Model, LoadSeries
from edgeagent.analytics.thermal_params import ONAN_DISTRIBUTION

hot_spots = st.floats(-40.0, 200.0)


def test_aging_acceleration_factor_is_1_at_110c_and_about_6_98_at_130c() -> None:
    assert aging_acceleration_factor(110.0) == pytest.approx(1.0, abs=1e-12)
    assert aging_acceleration_factor(130.0) == pytest.approx(6.98, abs=0.01)


IEC_TABLE_C = [80.0, 86.0, 92.0, 98.0, 104.0, 110.0, 116.0, 122.0, 128.0, 134.0, 140.0]
IEC_NON_UPGRADED = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
IEC_UPGRADED = [0.036, 0.073, 0.145, 0.282, 0.536, 1.0, 1.83, 3.29, 5.8, 10.1, 17.2]  # recalled, 3 s.f.


def test_relative_ageing_rate_matches_the_iec_table() -> None:
    theta = np.array(IEC_TABLE_C)
    np.testing.assert_allclose(relative_ageing_rate(theta, Paper.NON_UPGRADED), IEC_NON_UPGRADED, rtol=1e-12)
    got = relative_ageing_rate(theta, Paper.THERMALLY_UPGRADED)
    np.testing.assert_allclose(got, IEC_UPGRADED, rtol=0.006)


@given(hot_spots)
def test_non_upgraded_rate_doubles_every_6k(theta_c: float) -> None:
    assert relative_ageing_rate(theta_c + 6.0, Paper.NON_UPGRADED) == pytest.approx(
        2 * relative_ageing_rate(theta_c, Paper.NON_UPGRADED), rel=1e-12)
    assert relative_ageing_rate(98.0, Paper.NON_UPGRADED) == 1.0


@given(hot_spots, st.floats(0.01, 50.0))
def test_rates_increase_with_hot_spot_and_arrays_match_scalars(theta_c: float, d_k: float) -> None:
    for paper in Paper:
        low, high = relative_ageing_rate(theta_c, paper), relative_ageing_rate(theta_c + d_k, paper)
        assert 0 < low < high
        array = relative_ageing_rate(np.array([theta_c, theta_c + d_k]), paper)
        np.testing.assert_allclose(array, [low, high], rtol=1e-12)
    assert aging_acceleration_factor(theta_c) == relative_ageing_rate(theta_c, Paper.THERMALLY_UPGRADED)


def test_equivalent_aging_is_time_weighted() -> None:
    """1 h at 130 °C and 3 h at 110 °C: (F_AA(130) · 1 + 1 · 3) / 4."""
    f_eqa = equivalent_aging_factor([130.0, 110.0], [1.0, 3.0])
    assert f_eqa == pytest.approx((aging_acceleration_factor(130.0) + 3.0) / 4.0)
    assert f_eqa == pytest.approx(2.496, abs=0.001)


@given(st.lists(st.tuples(hot_spots, st.floats(0.01, 24.0)), min_size=1, max_size=20), st.integers(2, 5))
def test_equivalent_aging_is_bounded_and_invariant_to_splitting_intervals(
        rows: list[tuple[float, float]], parts: int) -> None:
    theta = [t for t, _ in rows]
    hours = [h for _, h in rows]
    f_eqa = equivalent_aging_factor(theta, hours)
    rates = [aging_acceleration_factor(t) for t in theta]
    assert min(rates) * (1 - 1e-12) <= f_eqa <= max(rates) * (1 + 1e-12)
    split_theta = [t for t in theta for _ in range(parts)]
    split_hours = [h / parts for h in hours for _ in range(parts)]
    assert equivalent_aging_factor(split_theta, split_hours) == pytest.approx(f_eqa, rel=1e-12)


def test_a_day_at_the_reference_hot_spot_uses_a_day_of_life() -> None:
    day = loss_of_life([110.0] * 24, [1.0] * 24)
    assert day.equivalent_aging_factor == pytest.approx(1.0)
    assert day.loss_of_life_h == pytest.approx(24.0)
    assert day.loss_of_life_pct == pytest.approx(100 * 24 / 180_000)
    iec_day = loss_of_life([98.0], [24.0], Paper.NON_UPGRADED, normal_life_h=150_000.0)
    assert iec_day.loss_of_life_h == pytest.approx(24.0)
    assert iec_day.loss_of_life_pct == pytest.approx(100 * 24 / 150_000)


def test_normal_life_is_180000_h_or_20_55_years_and_a_whole_life_at_110c_is_100_percent() -> None:
    assert NORMAL_INSULATION_LIFE_H == 180_000.0
    years = NORMAL_INSULATION_LIFE_H / 8760
    assert years == pytest.approx(20.55, abs=0.005)
    assert loss_of_life([110.0], [180_000.0]).loss_of_life_pct == pytest.approx(100.0)


def test_loss_of_life_over_a_simulated_overload() -> None:
    """A 2 h 1.5 pu overload on a distribution transformer costs more than the same hours at rated load."""
    t_min = np.arange(0.0, 24 * 60 + 1, 10.0)
    load = np.where((t_min >= 600) & (t_min < 720), 1.5, 1.0)
    trace = IeeeClause7Model(ONAN_DISTRIBUTION).simulate(LoadSeries(t_min, load, np.full_like(t_min, 30.0)))
    result = loss_of_life(trace.hot_spot_c[:-1], np.diff(trace.time_min) / 60)
    assert result.duration_h == pytest.approx(24.0)
    at_rated = loss_of_life([30.0 + 55.0 + 23.0], [24.0])
    assert result.loss_of_life_h > at_rated.loss_of_life_h


def test_non_upgraded_loss_of_life_needs_an_explicit_normal_life() -> None:
    with pytest.raises(ValueError, match="normal_life_h: required for non-upgraded paper"):
        loss_of_life([98.0], [1.0], Paper.NON_UPGRADED)
    with pytest.raises(ValueError, match="normal_life_h: must be finite and > 0"):
        loss_of_life([98.0], [1.0], normal_life_h=0.0)


@pytest.mark.parametrize(("theta", "hours", "match"), [
    ([100.0, float("nan")], [1.0, 1.0], r"hot_spot_c: index 1 is nan"),
    ([100.0, 120.0], [1.0], r"unequal lengths \(2 and 1\)"),
    ([100.0], [-1.0], r"duration_h: index 0 is -1.0"),
    ([100.0], [float("inf")], r"duration_h: index 0 is inf"),
    ([100.0, 100.0], [0.0, 0.0], r"durations add up to zero"),
    ([-300.0], [1.0], r"hot_spot_c: index 0 is -300.0"),
    ([5000.0], [1.0], r"hot_spot_c: index 0 is 5000.0"),
    ([[100.0]], [[1.0]], r"must be 1-D"),
    (["hot"], [1.0], r"hot_spot_c: not an array of numbers"),
    ([100.0], ["long"], r"duration_h: not an array of numbers"),
])
def test_series_functions_reject_bad_input(theta: Any, hours: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        equivalent_aging_factor(theta, hours)
    with pytest.raises(ValueError, match=match):
        loss_of_life(theta, hours)


def test_rate_functions_reject_bad_input() -> None:
    with pytest.raises(ValueError, match=r"hot_spot_c: must be finite \(got nan\)"):
        aging_acceleration_factor(float("nan"))
    with pytest.raises(ValueError, match=r"hot_spot_c: index \(1, 0\) is nan"):
        aging_acceleration_factor(np.array([[100.0], [float("nan")]]))
    with pytest.raises(ValueError, match=r"hot_spot_c: -273.0 °C is outside"):
        relative_ageing_rate(-273.0, Paper.NON_UPGRADED)
