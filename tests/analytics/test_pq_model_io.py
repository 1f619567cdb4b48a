"""The classifier's input grid: resampling, validation, normalisation, manifest checks (no model needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.analytics.pq_model_io import (
    LABELS,
    PqModelError,
    load_manifest,
    model_rate_hz,
    model_samples,
    normalise_to_first_cycle,
    resample,
    to_model_grid,
)
from hil.waveforms import LABELS as HIL_LABELS


def sine(rate_hz: float, n: int, freq_hz: float, phase: float = 0.3) -> np.ndarray:
    out: np.ndarray = np.sin(2 * math.pi * freq_hz * np.arange(n) / rate_hz + phase)
    return out


def test_labels_match_the_generators_order() -> None:
    assert tuple(label.value for label in HIL_LABELS) == LABELS


def test_model_grid_is_128_samples_per_cycle_and_0_2_s() -> None:
    assert (model_rate_hz(50.0), model_samples(50.0)) == (6400.0, 1280)
    assert (model_rate_hz(60.0), model_samples(60.0)) == (7680.0, 1536)
    with pytest.raises(ValueError, match="50 or 60"):
        model_rate_hz(55.0)


@given(rate_hz=st.sampled_from([4_000.0, 8_000.0, 10_000.0, 12_800.0, 25_600.0]),
       freq_hz=st.floats(45.0, 65.0), nominal_hz=st.sampled_from([50.0, 60.0]))
def test_a_sine_survives_resampling_onto_the_grid(rate_hz: float, freq_hz: float, nominal_hz: float) -> None:
    x = sine(rate_hz, round(0.2 * rate_hz), freq_hz)
    y = to_model_grid(x, rate_hz, nominal_hz)
    target = model_rate_hz(nominal_hz)
    expected = sine(target, y.shape[0], freq_hz)
    inner = slice(64, -64)  # the kernel is truncated near the edges
    assert y.dtype == np.float32 and y.shape == (model_samples(nominal_hz),)
    assert np.max(np.abs(y[inner] - expected[inner])) < 2e-3
    assert np.max(np.abs(y - expected)) < 0.1


def test_downsampling_removes_content_above_the_new_nyquist() -> None:
    rate_hz = 25_600.0
    tone = sine(rate_hz, 5120, 5_000.0)  # above 3.2 kHz: must not alias into the 6.4 kHz grid
    y = resample(tone, rate_hz, 6_400.0, 1280)
    assert np.sqrt(np.mean(y[64:-64] ** 2)) < 0.02


def test_a_constant_stays_constant_to_the_edges() -> None:
    y = resample(np.full(2000, 0.7), 10_000.0, 6_400.0, 1280)
    np.testing.assert_allclose(y, 0.7, atol=1e-9)


@pytest.mark.parametrize(("samples", "rate_hz", "nominal_hz", "message"), [
    (np.zeros(1999), 10_000.0, 50.0, "2000 samples"),
    (np.zeros((2, 1000)), 10_000.0, 50.0, "one-dimensional"),
    (np.full(2000, np.nan), 10_000.0, 50.0, "NaN"),
    (np.zeros(2000), 10_000.0, 55.0, "50 or 60"),
    (np.zeros(200), 1_000.0, 50.0, "rate_hz"),
])
def test_bad_windows_are_refused_with_a_reason(samples: np.ndarray, rate_hz: float, nominal_hz: float,
                                               message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_model_grid(samples, rate_hz, nominal_hz)


def test_first_cycle_normalisation_makes_the_reference_cycle_1_pu() -> None:
    x = 325.0 * sine(10_000.0, 2000, 50.0)
    x[800:1200] *= 0.5  # a sag after the first cycle does not move the reference
    y = normalise_to_first_cycle(x, 10_000.0, 50.0)
    assert np.max(np.abs(y[:200])) == pytest.approx(1.0, abs=1e-3)
    assert np.max(np.abs(y[900:1100])) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match="RMS 0"):
        normalise_to_first_cycle(np.zeros(2000), 10_000.0, 50.0)


def good_manifest() -> dict[str, object]:
    return {"name": "pq-classifier", "version": "9", "file": "m.onnx", "sha256": "0" * 64, "labels": list(LABELS),
            "sample_rate_hz": {"50": 6400.0, "60": 7680.0}, "window_s": 0.2, "anomaly_threshold": 2.0}


@pytest.mark.parametrize(("change", "message"), [
    ({"labels": ["normal", "sag"]}, "labels"),
    ({"sample_rate_hz": {"50": 10000.0, "60": 7680.0}}, "sample_rate_hz"),
    ({"window_s": 0.1}, "window_s"),
    ({"sha256": "xyz"}, "sha256"),
    ({"file": "../elsewhere.onnx"}, "bare file name"),
    ({"anomaly_threshold": -1.0}, "anomaly_threshold"),
    ({"version": 3}, "version"),
])
def test_a_manifest_that_does_not_fit_this_code_is_refused(tmp_path: Path, change: dict[str, object],
                                                           message: str) -> None:
    path = tmp_path / "m.manifest.json"
    path.write_text(json.dumps(good_manifest() | change))
    with pytest.raises(PqModelError, match=message):
        load_manifest(path)


def test_missing_field_and_unreadable_manifest_are_refused(tmp_path: Path) -> None:
    doc = good_manifest()
    del doc["sha256"]
    path = tmp_path / "m.manifest.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(PqModelError, match="'sha256' is missing"):
        load_manifest(path)
    path.write_text("{not json")
    with pytest.raises(PqModelError, match="unreadable"):
        load_manifest(path)
    with pytest.raises(PqModelError, match="not found"):
        load_manifest(tmp_path / "absent.json")


def test_a_fitting_manifest_loads(tmp_path: Path) -> None:
    path = tmp_path / "m.manifest.json"
    path.write_text(json.dumps(good_manifest()))
    manifest = load_manifest(path)
    assert (manifest.file, manifest.labels, manifest.anomaly_threshold) == ("m.onnx", LABELS, 2.0)
    assert dict(manifest.sample_rate_hz) == {50.0: 6400.0, 60.0: 7680.0}
