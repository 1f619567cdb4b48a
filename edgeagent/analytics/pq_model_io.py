"""Inputs of the power-quality classifier: the model's sample grid, resampling onto it, and its manifest.

The classifier sees 0.2 s of voltage in per unit of the nominal *peak*, sampled at a fixed
``SAMPLES_PER_CYCLE`` per nominal cycle (6400 Hz at 50 Hz, 7680 Hz at 60 Hz), so every window is a
whole number of nominal cycles (10 or 12) and the graph can fold it into cycles whatever the grid.
A recording at another rate is resampled with a windowed-sinc interpolator (band-limited to the lower
of the two Nyquist frequencies, so downsampling does not alias noise and transients into the band).
The training tool uses these very functions, so training and inference see the same grid.

The manifest is checked field by field: a model file whose hash, labels or grid differ from what this
code expects is refused with a :class:`PqModelError` naming the mismatch, and the caller falls back to
the deterministic detector.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Float32Array = npt.NDArray[np.float32]

WINDOW_S = 0.2
SAMPLES_PER_CYCLE = 128
NOMINAL_FREQUENCIES_HZ = (50.0, 60.0)
#: The classes, in the order of the model's probability output.
LABELS: tuple[str, ...] = ("normal", "sag", "swell", "interruption", "harmonics", "fluctuation", "impulsive",
                           "notch", "oscillatory")
#: Lowest input rate accepted: below it a 900 Hz oscillatory transient is not representable.
MIN_INPUT_RATE_HZ = 2_000.0
#: Half width of the interpolation kernel in periods of the lower of the two rates.
_SINC_HALF_WIDTH = 16


class PqModelError(Exception):
    """The power-quality model cannot be used (missing, corrupt, mismatched); use the deterministic detector."""


def check_nominal_hz(nominal_hz: float) -> float:
    if nominal_hz not in NOMINAL_FREQUENCIES_HZ:
        raise ValueError(f"nominal_hz must be 50 or 60, got {nominal_hz!r}")
    return float(nominal_hz)


def model_rate_hz(nominal_hz: float) -> float:
    """The model's sample rate for a nominal frequency (Hz)."""
    return SAMPLES_PER_CYCLE * check_nominal_hz(nominal_hz)


def model_samples(nominal_hz: float) -> int:
    """Samples in one model window: 0.2 s on the model's grid (1280 at 50 Hz, 1536 at 60 Hz)."""
    return round(WINDOW_S * model_rate_hz(nominal_hz))


def window_samples(rate_hz: float) -> int:
    """Samples a 0.2 s window has at ``rate_hz``."""
    return round(WINDOW_S * rate_hz)


def resample(samples: npt.ArrayLike, rate_hz: float, target_rate_hz: float, n_out: int) -> FloatArray:
    """``n_out`` samples at ``target_rate_hz`` from ``samples`` at ``rate_hz`` (both starting at t = 0).

    Windowed-sinc (Hann) interpolation with its cutoff at the lower Nyquist frequency; each output's
    weights are renormalised to sum to one, so a constant stays constant up to the window's edges.
    """
    x = np.asarray(samples, dtype=np.float64)
    if rate_hz == target_rate_hz and x.shape[0] == n_out:
        return x.copy()
    ratio = rate_hz / target_rate_hz  # input samples per output sample
    scale = max(ratio, 1.0)  # kernel stretch when downsampling
    half = math.ceil(_SINC_HALF_WIDTH * scale)
    u = np.arange(n_out) * ratio
    idx = np.floor(u).astype(np.int64)[:, None] + np.arange(-half, half + 1)[None, :]
    d = u[:, None] - idx
    weights = np.sinc(d / scale) * (0.5 + 0.5 * np.cos(np.pi * np.clip(d / (half + 1), -1.0, 1.0)))
    valid = (idx >= 0) & (idx < x.shape[0])
    weights = np.where(valid, weights, 0.0)
    gathered = x[np.clip(idx, 0, x.shape[0] - 1)]
    out: FloatArray = np.sum(weights * gathered, axis=1) / np.sum(weights, axis=1)
    return out


def to_model_grid(samples_pu: npt.ArrayLike, rate_hz: float, nominal_hz: float) -> Float32Array:
    """A 0.2 s window in pu of nominal peak at ``rate_hz`` -> float32 on the model's grid, validated."""
    nominal_hz = check_nominal_hz(nominal_hz)
    if not (math.isfinite(rate_hz) and rate_hz >= MIN_INPUT_RATE_HZ):
        raise ValueError(f"rate_hz must be finite and >= {MIN_INPUT_RATE_HZ:g}, got {rate_hz!r}")
    x = np.asarray(samples_pu, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"a window must be one-dimensional, got shape {x.shape}")
    expected = window_samples(rate_hz)
    if x.shape[0] != expected:
        raise ValueError(f"a window must be {WINDOW_S} s: {expected} samples at {rate_hz:g} Hz, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ValueError("a window must not contain NaN or infinite samples")
    return resample(x, rate_hz, model_rate_hz(nominal_hz), model_samples(nominal_hz)).astype(np.float32)


def normalise_to_first_cycle(samples: npt.ArrayLike, rate_hz: float, nominal_hz: float) -> FloatArray:
    """Scale a window of any unit to pu of nominal peak, taking its first nominal cycle as nominal.

    For recordings without a known nominal voltage (a CSV of someone's captures): the generator's and
    IEEE 1159's events start after at least one undisturbed cycle, which is the pre-event reference.
    """
    x = np.asarray(samples, dtype=np.float64)
    cycle = max(1, round(rate_hz / check_nominal_hz(nominal_hz)))
    if x.ndim != 1 or x.shape[0] < cycle:
        raise ValueError(f"a window needs at least one cycle ({cycle} samples) to normalise, got shape {x.shape}")
    rms = float(np.sqrt(np.mean(x[:cycle] ** 2)))
    if not (math.isfinite(rms) and rms > 0.0):
        raise ValueError(f"cannot normalise a window whose first cycle has RMS {rms}")
    out: FloatArray = x / (rms * math.sqrt(2.0))
    return out


# --------------------------------------------------------------------------------------------- manifest

@dataclass(frozen=True)
class PqManifest:
    """What a model file must be: its hash, its classes, its grid, and the anomaly threshold it was calibrated at."""

    name: str
    version: str
    file: str
    sha256: str
    labels: tuple[str, ...]
    sample_rate_hz: Mapping[float, float]
    window_s: float
    anomaly_threshold: float
    raw: Mapping[str, Any]


def _field(doc: Mapping[str, Any], key: str, kind: type, where: Path) -> Any:
    if key not in doc:
        raise PqModelError(f"{where}: manifest field {key!r} is missing")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PqModelError(f"{where}: manifest field {key!r} must be {kind.__name__}, got {value!r}")
    return value


def load_manifest(path: Path) -> PqManifest:
    """Read and check a manifest; PqModelError names whatever is wrong."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PqModelError(f"power-quality model manifest not found: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PqModelError(f"{path}: manifest unreadable: {exc}") from exc
    if not isinstance(doc, dict):
        raise PqModelError(f"{path}: manifest must be a JSON object")
    labels = tuple(_field(doc, "labels", list, path))
    if labels != LABELS:
        raise PqModelError(f"{path}: manifest labels {list(labels)} differ from this code's {list(LABELS)}")
    rates_doc = _field(doc, "sample_rate_hz", dict, path)
    try:
        rates = {float(k): float(v) for k, v in rates_doc.items()}
    except (TypeError, ValueError) as exc:
        raise PqModelError(f"{path}: manifest sample_rate_hz must map Hz to Hz, got {rates_doc!r}") from exc
    expected_rates = {f: SAMPLES_PER_CYCLE * f for f in NOMINAL_FREQUENCIES_HZ}
    if rates != expected_rates:
        raise PqModelError(f"{path}: manifest sample_rate_hz {rates} differs from this code's {expected_rates}")
    window_s = float(_field(doc, "window_s", float, path))
    if window_s != WINDOW_S:
        raise PqModelError(f"{path}: manifest window_s {window_s} differs from this code's {WINDOW_S}")
    sha = _field(doc, "sha256", str, path)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise PqModelError(f"{path}: manifest sha256 must be 64 lowercase hex digits, got {sha!r}")
    file = _field(doc, "file", str, path)
    if Path(file).name != file:
        raise PqModelError(f"{path}: manifest file must be a bare file name beside the manifest, got {file!r}")
    threshold = float(_field(doc, "anomaly_threshold", float, path))
    if not (math.isfinite(threshold) and threshold > 0.0):
        raise PqModelError(f"{path}: manifest anomaly_threshold must be > 0, got {threshold}")
    return PqManifest(name=_field(doc, "name", str, path), version=_field(doc, "version", str, path), file=file,
                      sha256=sha, labels=labels, sample_rate_hz=MappingProxyType(rates), window_s=window_s,
                      anomaly_threshold=threshold, raw=MappingProxyType(doc))


def read_verified_model(manifest_path: Path, manifest: PqManifest) -> bytes:
    """The model file's bytes, after checking them against the manifest's sha256."""
    model_path = manifest_path.parent / manifest.file
    try:
        data = model_path.read_bytes()
    except FileNotFoundError as exc:
        raise PqModelError(f"power-quality model file not found: {model_path}") from exc
    except OSError as exc:
        raise PqModelError(f"{model_path}: unreadable: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest.sha256:
        raise PqModelError(f"{model_path}: sha256 {digest} does not match the manifest's {manifest.sha256}")
    return data
