"""The forecaster runtime: a model is trusted only when manifest, hash and graph agree; inputs and outputs checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.analytics.forecast import (
    ForecastInputError,
    ForecastOutputError,
    ForecastTimeout,
    ModelFileError,
    TopOilForecaster,
)
from edgeagent.analytics.forecast_manifest import load_manifest, sha256_of

MODELS = Path(__file__).resolve().parents[2] / "models"
MANIFEST = MODELS / "transformer-topoil-1.0.0.manifest.json"
SHIPPED = TopOilForecaster.load(MANIFEST)


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A private copy of the shipped model and manifest, free to be damaged."""
    for path in (MANIFEST, MODELS / "transformer-topoil-1.0.0.onnx"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path / MANIFEST.name


def _edit_manifest(path: Path, **changes: object) -> None:
    raw = json.loads(path.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


def _window(level_c: float = 45.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hours = np.arange(SHIPPED.manifest.lookback_h)
    return level_c + 4 * np.sin(2 * np.pi * hours / 24) + np.cumsum(rng.normal(0, 0.2, hours.size))


def test_shipped_model_meets_size_and_declares_its_tensors() -> None:
    manifest = SHIPPED.manifest
    assert manifest.onnx_path.stat().st_size <= 1_000_000
    assert manifest.input.name == "top_oil_c" and manifest.input.unit == "degC"
    assert manifest.forecast_output.shape == (None, manifest.horizon_h, 3)
    assert manifest.horizon_h >= 72 and manifest.quantiles == (0.1, 0.5, 0.9)


def test_training_data_hash_matches_the_shipped_csv() -> None:
    raw = json.loads(MANIFEST.read_text())
    assert sha256_of(MODELS.parent / raw["training_data"]["file"]) == raw["training_data"]["sha256"]


def test_hash_mismatch_is_refused(model_copy: Path) -> None:
    onnx_path = model_copy.parent / "transformer-topoil-1.0.0.onnx"
    data = bytearray(onnx_path.read_bytes())
    data[-10] ^= 0xFF
    onnx_path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256 mismatch"):
        TopOilForecaster.load(model_copy)


def test_corrupt_file_with_matching_hash_is_refused_by_the_runtime(model_copy: Path) -> None:
    onnx_path = model_copy.parent / "transformer-topoil-1.0.0.onnx"
    onnx_path.write_bytes(b"not an onnx graph at all")
    _edit_manifest(model_copy, sha256=sha256_of(onnx_path))
    with pytest.raises(ModelFileError, match="onnxruntime cannot load"):
        TopOilForecaster.load(model_copy)


def test_missing_model_and_missing_manifest_are_refused(model_copy: Path, tmp_path: Path) -> None:
    (model_copy.parent / "transformer-topoil-1.0.0.onnx").unlink()
    with pytest.raises(ModelFileError, match="model file not found"):
        TopOilForecaster.load(model_copy)
    with pytest.raises(ModelFileError, match="manifest file not found"):
        TopOilForecaster.load(tmp_path / "nothing.manifest.json")


def test_manifest_shape_that_disagrees_with_the_graph_is_refused(model_copy: Path) -> None:
    raw = json.loads(model_copy.read_text())
    raw["lookback_h"] = 200
    raw["inputs"][0]["shape"] = [None, 200]
    model_copy.write_text(json.dumps(raw))
    with pytest.raises(ModelFileError, match=r"'top_oil_c' has shape \['batch', 240\], manifest says \[None, 200\]"):
        TopOilForecaster.load(model_copy)


def test_manifest_with_a_malformed_field_is_refused(model_copy: Path) -> None:
    _edit_manifest(model_copy, sha256="abc")
    with pytest.raises(ModelFileError, match="not a lower-case hex sha256"):
        load_manifest(model_copy)
    model_copy.write_text("{not json")
    with pytest.raises(ModelFileError, match="not readable JSON"):
        load_manifest(model_copy)


@pytest.mark.parametrize(("window", "message"), [
    (np.full(100, 40.0), r"shape \(240,\) or \(n, 240\)"),
    (np.full((2, 3, 240), 40.0), r"shape \(240,\) or \(n, 240\)"),
    (np.where(np.arange(240) == 17, np.nan, 40.0), "NaN/inf value.*hour 17"),
    (np.full(240, 313.0), "kelvin"),
    (np.full(240, -80.0), "plausible range"),
])
def test_bad_inputs_are_refused_clearly(window: np.ndarray, message: str) -> None:
    with pytest.raises(ForecastInputError, match=message):
        SHIPPED.predict(window)


def test_forecast_is_sane_for_a_realistic_window() -> None:
    forecast = SHIPPED.predict(_window())
    assert forecast.p50_c.shape == (1, SHIPPED.manifest.horizon_h)
    assert np.all(forecast.p10_c <= forecast.p50_c) and np.all(forecast.p50_c <= forecast.p90_c)
    assert np.all(forecast.p90_c > forecast.p10_c)
    assert forecast.p50_c.min() > 30 and forecast.p50_c.max() < 60


def test_flat_window_forecasts_the_same_temperature() -> None:
    forecast = SHIPPED.predict(np.full(240, 52.5))
    np.testing.assert_allclose(forecast.p50_c, 52.5, atol=1e-4)


@given(shift_c=st.floats(-30, 60), seed=st.integers(0, 50))
def test_forecast_moves_with_the_window(shift_c: float, seed: int) -> None:
    """Per-window normalisation: a transformer running hotter gives the same forecast, shifted."""
    window = _window(20.0, seed)
    base = SHIPPED.predict(window).p50_c
    moved = SHIPPED.predict(window + shift_c).p50_c
    np.testing.assert_allclose(moved - base, shift_c, atol=2e-3 * max(1.0, abs(shift_c)))


def test_implausible_or_non_finite_output_is_refused() -> None:
    window = SHIPPED.check_input(_window())
    features = np.zeros((1, SHIPPED.manifest.feature_count), dtype=np.float32)
    good = np.full((1, SHIPPED.manifest.horizon_h, 3), 40.0, dtype=np.float32)
    assert SHIPPED.check_output(good, features, window).p50_c.shape == (1, SHIPPED.manifest.horizon_h)
    for bad, message in ((np.where(good > 0, np.nan, good), "NaN or inf"), (good + 500, "physically plausible"),
                         (good * np.array([1.1, 1.0, 0.9], dtype=np.float32), "quantiles out of order")):
        with pytest.raises(ForecastOutputError, match=message):
            SHIPPED.check_output(bad.astype(np.float32), features, window)


def test_inference_slower_than_the_timeout_raises() -> None:
    with TopOilForecaster.load(MANIFEST, timeout_s=1e-9) as model, pytest.raises(ForecastTimeout, match="longer"):
        model.predict(np.repeat(_window()[np.newaxis, :], 4096, axis=0))
