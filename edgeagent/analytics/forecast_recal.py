"""On-device recalibration of the top-oil forecaster: a closed-form refit of its last layer, tried in shadow.

The shipped model ends in a linear head over features it also outputs (`features`). On a new transformer
we fit a correction ΔW to that head by ridge regression on the device's own history:

    ΔW = argmin ||(Y − P50_shipped) − Φ ΔW||² + λ·n·||ΔW||²

which is the same as refitting the head with a prior pulling it towards the shipped weights (so we never
need the weights themselves, only the model's outputs). The correction is fitted on the older part of the
history and judged on the newer part ("shadow"), against the shipped model on the same windows; it is
promoted only when it lowers the shadow MSE by at least `min_improvement`. The caller audits the decision.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgeagent.analytics.forecast import ForecastInputError, TopOilForecast, TopOilForecaster

FloatArray = NDArray[np.float64]

_BATCH = 1024  # windows per inference call: bounded memory and time per call


@dataclass(frozen=True, slots=True, eq=False)
class AdaptedHead:
    """A correction to the shipped head: add `features @ delta_weight` to every quantile."""

    delta_weight: FloatArray  # (features, horizon_h)

    def apply(self, forecast: TopOilForecast) -> TopOilForecast:
        shift = forecast.features @ self.delta_weight[:, : forecast.horizon_h]
        return TopOilForecast(p10_c=forecast.p10_c + shift, p50_c=forecast.p50_c + shift,
                              p90_c=forecast.p90_c + shift, features=forecast.features)


@dataclass(frozen=True, slots=True, eq=False)
class RecalibrationDecision:
    """The outcome of one recalibration: promote or not, and the shadow metrics it was decided on (°C²)."""

    promoted: bool
    shipped_mse_c2: float
    adapted_mse_c2: float
    fit_windows: int
    shadow_windows: int
    min_improvement: float
    head: AdaptedHead

    def as_dict(self) -> dict[str, float | int | bool]:
        return {"promoted": self.promoted, "shipped_mse_c2": self.shipped_mse_c2,
                "adapted_mse_c2": self.adapted_mse_c2, "fit_windows": self.fit_windows,
                "shadow_windows": self.shadow_windows, "min_improvement": self.min_improvement}


def history_windows(history_c: ArrayLike, lookback_h: int, horizon_h: int,
                    stride: int = 1) -> tuple[FloatArray, FloatArray]:
    """All (input, target) pairs of a contiguous hourly series: inputs (n, lookback_h), targets (n, horizon_h)."""
    series = np.asarray(history_c, dtype=np.float64)
    if series.ndim != 1:
        raise ForecastInputError(f"history must be a 1-D hourly series (got shape {series.shape})")
    if stride < 1:
        raise ValueError(f"stride must be >= 1 (got {stride})")
    count = len(series) - lookback_h - horizon_h + 1
    if count < 1:
        raise ForecastInputError(f"history of {len(series)} h is too short: one window needs "
                                 f"{lookback_h + horizon_h} h (lookback {lookback_h} + horizon {horizon_h})")
    view = np.lib.stride_tricks.sliding_window_view(series, lookback_h + horizon_h)[::stride]
    return view[:, :lookback_h], view[:, lookback_h:]


def predict_batched(forecaster: TopOilForecaster, windows_c: FloatArray) -> TopOilForecast:
    """`forecaster.predict` over many windows, in bounded batches."""
    parts = [forecaster.predict(windows_c[i:i + _BATCH]) for i in range(0, len(windows_c), _BATCH)]
    return TopOilForecast(p10_c=np.concatenate([p.p10_c for p in parts]),
                          p50_c=np.concatenate([p.p50_c for p in parts]),
                          p90_c=np.concatenate([p.p90_c for p in parts]),
                          features=np.concatenate([p.features for p in parts]))


def fit_head(features: FloatArray, residual_c: FloatArray, ridge_lambda: float) -> AdaptedHead:
    """Closed-form ridge fit of the head correction (λ scaled by the number of windows)."""
    count, width = features.shape
    gram = features.T @ features + ridge_lambda * count * np.eye(width)
    return AdaptedHead(delta_weight=np.linalg.solve(gram, features.T @ residual_c))


def recalibrate(forecaster: TopOilForecaster, history_c: ArrayLike, *, shadow_fraction: float = 0.3,
                min_improvement: float = 0.02, ridge_lambda: float | None = None,
                stride: int = 1) -> RecalibrationDecision:
    """Fit a head correction on the older history, judge it on the newer part, promote only when it is better.

    The shadow windows' targets all lie after every fit window's target, so the shadow score is honest.
    """
    if not 0 < shadow_fraction < 1:
        raise ValueError(f"shadow_fraction must be in (0, 1) (got {shadow_fraction!r})")
    if not 0 <= min_improvement < 1:
        raise ValueError(f"min_improvement must be in [0, 1) (got {min_improvement!r})")
    series = np.asarray(history_c, dtype=np.float64)
    manifest = forecaster.manifest
    lookback, horizon = manifest.lookback_h, manifest.horizon_h
    cut = round(len(series) * (1 - shadow_fraction))
    fit_x, fit_y = history_windows(series[:cut], lookback, horizon, stride)
    shadow_x, shadow_y = history_windows(series[cut - lookback:], lookback, horizon, stride)
    fit = predict_batched(forecaster, fit_x)
    head = fit_head(fit.features, fit_y - fit.p50_c, ridge_lambda or manifest.recalibration_lambda)
    shipped = predict_batched(forecaster, shadow_x)
    adapted = head.apply(shipped)
    shipped_mse = float(np.mean((shipped.p50_c - shadow_y) ** 2))
    adapted_mse = float(np.mean((adapted.p50_c - shadow_y) ** 2))
    return RecalibrationDecision(
        promoted=adapted_mse < shipped_mse * (1 - min_improvement), shipped_mse_c2=shipped_mse,
        adapted_mse_c2=adapted_mse, fit_windows=len(fit_x), shadow_windows=len(shadow_x),
        min_improvement=min_improvement, head=head,
    )
