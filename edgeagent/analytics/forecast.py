"""Top-oil forecaster runtime: the shipped ONNX model behind checks, in a worker thread with a timeout.

The model maps a lookback window of hourly top-oil temperatures (°C) to P10/P50/P90 forecasts for the
next `horizon_h` hours. It normalises each window by its own last value and spread, so it needs no
per-site statistics. Everything that can go wrong is an exception naming what was wrong:

- `ModelFileError` (from `forecast_manifest`): missing, corrupt or mismatched model or manifest;
- `ForecastInputError`: a window of the wrong shape, with NaN, or outside the plausible °C range;
- `ForecastOutputError`: the model produced non-finite, implausible or crossed quantiles;
- `ForecastTimeout`: inference did not finish in time.

The caller (the daemon) turns each into an event and falls back to the physics model.
"""

from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import ArrayLike, NDArray

from edgeagent.analytics.forecast_manifest import ForecastManifest, ModelFileError, load_manifest

FloatArray = NDArray[np.float64]

DEFAULT_TIMEOUT_S = 2.0


class ForecastInputError(ValueError):
    """The window handed to the forecaster is unusable (shape, NaN, units/range)."""


class ForecastOutputError(RuntimeError):
    """The model's output failed the sanity checks (non-finite, implausible, quantiles out of order)."""


class ForecastTimeout(TimeoutError):
    """Inference did not finish within the timeout."""


@dataclass(frozen=True, slots=True, eq=False)
class TopOilForecast:
    """Forecasts for a batch of windows, °C, shape (batch, horizon_h) each; `features` feed the recalibration."""

    p10_c: FloatArray
    p50_c: FloatArray
    p90_c: FloatArray
    features: FloatArray

    @property
    def horizon_h(self) -> int:
        return int(self.p50_c.shape[1])


class TopOilForecaster:
    """One onnxruntime session (one intra-op thread) for one verified model; call `close()` when done."""

    def __init__(self, manifest: ForecastManifest, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 (got {timeout_s!r})")
        self.manifest = manifest
        self.timeout_s = timeout_s
        self._session = _open_session(manifest)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast")

    @classmethod
    def load(cls, manifest_path: Path | str, timeout_s: float = DEFAULT_TIMEOUT_S) -> TopOilForecaster:
        """Verify the manifest and the model's sha256, open the session and check its tensors against the manifest."""
        return cls(load_manifest(manifest_path, verify_hash=True), timeout_s=timeout_s)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> TopOilForecaster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def predict(self, top_oil_c: ArrayLike) -> TopOilForecast:
        """Forecast from one window (lookback_h,) or a batch (n, lookback_h) of hourly top-oil temperatures, °C."""
        window = self.check_input(top_oil_c)
        future = self._executor.submit(self._run, window)
        try:
            forecast, features = future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ForecastTimeout(f"forecast model {self.manifest.name} {self.manifest.version}: inference took "
                                  f"longer than {self.timeout_s:g} s") from None
        return self.check_output(forecast, features, window)

    def check_input(self, top_oil_c: ArrayLike) -> NDArray[np.float32]:
        try:
            window = np.asarray(top_oil_c, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ForecastInputError(f"top-oil window is not numeric ({exc})") from None
        if window.ndim == 1:
            window = window[np.newaxis, :]
        lookback = self.manifest.lookback_h
        if window.ndim != 2 or window.shape[1] != lookback or window.shape[0] < 1:
            raise ForecastInputError(f"top-oil window must have shape ({lookback},) or (n, {lookback}) hourly "
                                     f"values; got {np.shape(top_oil_c)}")
        bad = ~np.isfinite(window)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise ForecastInputError(f"top-oil window has {int(bad.sum())} NaN/inf value(s); first at window {row}, "
                                     f"hour {col}: fill or drop gaps before forecasting")
        low, high = self.manifest.input_range_c
        if window.min() < low or window.max() > high:
            hint = " (kelvin? the model takes °C)" if window.min() > 200 else ""
            raise ForecastInputError(f"top-oil window outside the plausible range [{low:g}, {high:g}] °C: "
                                     f"min {window.min():.2f}, max {window.max():.2f}{hint}")
        return window.astype(np.float32)

    def check_output(self, forecast: NDArray[np.float32], features: NDArray[np.float32],
                     window: NDArray[np.float32]) -> TopOilForecast:
        name = f"forecast model {self.manifest.name} {self.manifest.version}"
        expected = (window.shape[0], self.manifest.horizon_h, len(self.manifest.quantiles))
        if forecast.shape != expected or features.shape != (window.shape[0], self.manifest.feature_count):
            raise ForecastOutputError(f"{name}: output shapes {forecast.shape}/{features.shape} do not match the "
                                      f"manifest {expected}/({window.shape[0]}, {self.manifest.feature_count})")
        if not (np.all(np.isfinite(forecast)) and np.all(np.isfinite(features))):
            raise ForecastOutputError(f"{name}: output contains NaN or inf")
        low, high = self.manifest.output_range_c
        if forecast.min() < low or forecast.max() > high:
            raise ForecastOutputError(f"{name}: forecast outside the physically plausible range [{low:g}, {high:g}] "
                                      f"°C (min {forecast.min():.1f}, max {forecast.max():.1f})")
        if np.any(np.diff(forecast, axis=2) < -1e-4):
            raise ForecastOutputError(f"{name}: quantiles out of order (P10 <= P50 <= P90 violated)")
        median = self.manifest.quantiles.index(0.5)
        as64 = forecast.astype(np.float64)
        return TopOilForecast(p10_c=as64[:, :, 0], p50_c=as64[:, :, median], p90_c=as64[:, :, -1],
                              features=features.astype(np.float64))

    def _run(self, window: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        names = [self.manifest.forecast_output.name, self.manifest.features_output.name]
        forecast, features = self._session.run(names, {self.manifest.input.name: window})
        return np.asarray(forecast), np.asarray(features)


def _open_session(manifest: ForecastManifest) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        session = ort.InferenceSession(str(manifest.onnx_path), sess_options=options,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable or invalid graphs
        raise ModelFileError(manifest.onnx_path, f"onnxruntime cannot load the model ({exc})") from None
    _check_tensors(manifest, session)
    return session


def _check_tensors(manifest: ForecastManifest, session: ort.InferenceSession) -> None:
    """The graph must have exactly the manifest's tensors, with compatible shapes (a free batch dimension)."""
    declared = {"input": [manifest.input], "output": [manifest.forecast_output, manifest.features_output]}
    actual = {"input": session.get_inputs(), "output": session.get_outputs()}
    for kind, specs in declared.items():
        graph = {t.name: t for t in actual[kind]}
        if set(graph) != {s.name for s in specs}:
            raise ModelFileError(manifest.onnx_path, f"graph {kind}s {sorted(graph)} do not match the manifest "
                                                     f"{sorted(s.name for s in specs)}")
        for spec in specs:
            node = graph[spec.name]
            dims = list(node.shape)
            fixed = [None if not isinstance(d, int) else d for d in dims]
            if len(fixed) != len(spec.shape) or any(s is not None and f != s for f, s in zip(fixed, spec.shape,
                                                                                              strict=True)):
                raise ModelFileError(manifest.onnx_path, f"graph {kind} {spec.name!r} has shape {dims}, manifest "
                                                         f"says {list(spec.shape)}")
            if node.type != "tensor(float)":
                raise ModelFileError(manifest.onnx_path, f"graph {kind} {spec.name!r} is {node.type}, "
                                                         "manifest says float32")


__all__ = [
    "ForecastInputError",
    "ForecastOutputError",
    "ForecastTimeout",
    "ModelFileError",
    "TopOilForecast",
    "TopOilForecaster",
]
