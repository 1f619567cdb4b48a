"""On-device recalibration: a closed-form head correction, promoted only when it beats the shipped head in shadow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeagent.analytics.forecast import ForecastInputError, TopOilForecaster
from edgeagent.analytics.forecast_recal import history_windows, predict_batched, recalibrate
from edgeagent.analytics.thermal import IeeeClause7Model, ThermalInputs
from edgeagent.analytics.thermal_params import ONAN_DISTRIBUTION

REPO = Path(__file__).resolve().parents[2]
SHIPPED = TopOilForecaster.load(REPO / "models/transformer-topoil-1.0.0.manifest.json")


def _physics_transformer(hours: int, seed: int) -> np.ndarray:
    """Hourly top-oil of an ONAN distribution transformer with a sharp evening peak (unlike ETTh1's)."""
    rng = np.random.default_rng(seed)
    t = np.arange(hours)
    load = 0.35 + 0.7 * (np.abs(t % 24 - 19) < 3) * (1 + 0.1 * rng.standard_normal(hours))
    ambient = 22 + 6 * np.cos(2 * np.pi * (t % 24 - 15) / 24)
    model = IeeeClause7Model(ONAN_DISTRIBUTION)
    state = model.steady_state(ThermalInputs(float(load[0]), float(ambient[0])))
    top_oil = np.empty(hours)
    for i in range(hours):
        top_oil[i] = state.top_oil_c(float(ambient[i]))
        state = model.step(state, ThermalInputs(float(max(load[i], 0.0)), float(ambient[i])), 60.0)
    return top_oil + rng.normal(0, 0.1, hours)


def test_refit_on_an_unseen_physics_transformer_is_promoted_and_really_better() -> None:
    history = _physics_transformer(2400, seed=1)
    decision = recalibrate(SHIPPED, history, stride=2)
    assert decision.promoted
    assert decision.adapted_mse_c2 < decision.shipped_mse_c2 * (1 - decision.min_improvement)
    # the metrics are what applying the head to fresh data from the same transformer gives
    fresh_x, fresh_y = history_windows(_physics_transformer(1200, seed=2), 240, 96, stride=4)
    shipped = predict_batched(SHIPPED, fresh_x)
    adapted = decision.head.apply(shipped)
    assert np.mean((adapted.p50_c - fresh_y) ** 2) < np.mean((shipped.p50_c - fresh_y) ** 2)
    assert np.all(adapted.p10_c <= adapted.p50_c) and np.all(adapted.p50_c <= adapted.p90_c)


def test_refit_is_not_promoted_where_the_shipped_model_already_fits() -> None:
    """On a slice of its own training data the correction can only chase noise: the shadow score says no."""
    ot = np.genfromtxt(REPO / "data/ett/ETTh1.csv", delimiter=",", skip_header=1, usecols=7, max_rows=4000)
    decision = recalibrate(SHIPPED, ot, stride=2)
    assert not decision.promoted
    assert decision.adapted_mse_c2 >= decision.shipped_mse_c2 * (1 - decision.min_improvement)
    assert decision.as_dict()["promoted"] is False


def test_promotion_margin_is_honoured() -> None:
    history = _physics_transformer(2400, seed=1)
    strict = recalibrate(SHIPPED, history, stride=2, min_improvement=0.99)
    assert not strict.promoted and strict.adapted_mse_c2 < strict.shipped_mse_c2


def test_too_short_history_is_refused_clearly() -> None:
    with pytest.raises(ForecastInputError, match="too short: one window needs 336 h"):
        recalibrate(SHIPPED, np.full(300, 40.0))
    with pytest.raises(ValueError, match="shadow_fraction"):
        recalibrate(SHIPPED, np.full(3000, 40.0), shadow_fraction=1.5)
