"""The manifest that ships beside each forecaster `.onnx` file, and the checks made before a model is trusted.

A model file is only as good as what we know about it: its sha256 ties the bytes to the manifest, and
the manifest states the tensor names, shapes and units the runtime must feed and expect. Anything that
does not match raises `ModelFileError` with the path and the problem, so the caller can raise an event
and fall back to the physics model (degraded, never down).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ModelFileError(RuntimeError):
    """A model file or its manifest is missing, corrupt, or does not match what the runtime expects."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"forecast model {path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One named model input or output: shape (None for a free batch dimension), dtype and unit."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    unit: str


@dataclass(frozen=True, slots=True)
class ForecastManifest:
    """What the runtime needs from `models/<name>-<version>.manifest.json` (the file holds more: data, metrics)."""

    path: Path
    name: str
    version: str
    onnx_path: Path
    sha256: str
    input: TensorSpec
    forecast_output: TensorSpec
    features_output: TensorSpec
    lookback_h: int
    horizon_h: int
    quantiles: tuple[float, ...]
    input_range_c: tuple[float, float]
    output_range_c: tuple[float, float]
    recalibration_lambda: float

    @property
    def feature_count(self) -> int:
        count = self.features_output.shape[-1]
        assert count is not None  # checked in _tensor
        return count


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(path: Path | str, *, verify_hash: bool = True) -> ForecastManifest:
    """Read and validate a manifest; with `verify_hash`, also check the `.onnx` file's sha256 against it."""
    manifest_path = Path(path)
    try:
        raw = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFileError(manifest_path, "manifest file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(manifest_path, f"manifest is not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ModelFileError(manifest_path, "manifest must be a JSON object")
    manifest = _parse(manifest_path, raw)
    if verify_hash:
        if not manifest.onnx_path.is_file():
            raise ModelFileError(manifest.onnx_path, "model file not found (named by the manifest)")
        actual = sha256_of(manifest.onnx_path)
        if actual != manifest.sha256:
            raise ModelFileError(manifest.onnx_path, f"sha256 mismatch: manifest says {manifest.sha256}, "
                                                     f"file is {actual} (corrupt or replaced file)")
    return manifest


def _parse(path: Path, raw: dict[str, Any]) -> ForecastManifest:
    def need(key: str, kind: type) -> Any:
        if key not in raw:
            raise ModelFileError(path, f"manifest lacks {key!r}")
        value = raw[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ModelFileError(path, f"manifest {key!r} must be {kind.__name__} (got {value!r})")
        return value

    sha = need("sha256", str)
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelFileError(path, f"manifest 'sha256' is not a lower-case hex sha256 (got {sha!r})")
    inputs = need("inputs", list)
    outputs = need("outputs", list)
    if len(inputs) != 1:
        raise ModelFileError(path, f"manifest must list exactly one input (got {len(inputs)})")
    by_role = {o.get("role") if isinstance(o, dict) else None: o for o in outputs}
    if set(by_role) != {"forecast", "features"} or len(outputs) != 2:
        raise ModelFileError(path, "manifest outputs must be two, with roles 'forecast' and 'features'")
    lookback_h = need("lookback_h", int)
    horizon_h = need("horizon_h", int)
    quantiles = tuple(float(q) for q in need("quantiles", list))
    spec_in = _tensor(path, inputs[0], (None, lookback_h))
    spec_fc = _tensor(path, by_role["forecast"], (None, horizon_h, len(quantiles)))
    spec_ft = _tensor(path, by_role["features"], None)
    if lookback_h < 2 or horizon_h < 1:
        raise ModelFileError(path, f"lookback_h {lookback_h} / horizon_h {horizon_h} out of range")
    if list(quantiles) != sorted(quantiles) or not all(0 < q < 1 for q in quantiles) or 0.5 not in quantiles:
        raise ModelFileError(path, f"quantiles must be increasing in (0, 1) and include 0.5 (got {quantiles})")
    recal = need("recalibration", dict)
    lam = recal.get("ridge_lambda")
    if not isinstance(lam, int | float) or isinstance(lam, bool) or not lam > 0:
        raise ModelFileError(path, f"manifest recalibration.ridge_lambda must be > 0 (got {lam!r})")
    return ForecastManifest(
        path=path, name=need("name", str), version=need("version", str),
        onnx_path=path.parent / need("file", str), sha256=sha,
        input=spec_in, forecast_output=spec_fc, features_output=spec_ft,
        lookback_h=lookback_h, horizon_h=horizon_h, quantiles=quantiles,
        input_range_c=_range(path, raw, "input_range_c"), output_range_c=_range(path, raw, "output_range_c"),
        recalibration_lambda=float(lam),
    )


def _tensor(path: Path, raw: object, expected: tuple[int | None, ...] | None) -> TensorSpec:
    if not isinstance(raw, dict):
        raise ModelFileError(path, f"tensor entry must be an object (got {raw!r})")
    name, shape, dtype, unit = raw.get("name"), raw.get("shape"), raw.get("dtype"), raw.get("unit")
    if not isinstance(name, str) or not isinstance(dtype, str) or not isinstance(unit, str):
        raise ModelFileError(path, f"tensor entry needs string name, dtype and unit (got {raw!r})")
    if not isinstance(shape, list) or not all(d is None or (isinstance(d, int) and d > 0) for d in shape):
        raise ModelFileError(path, f"tensor {name!r}: shape must be a list of positive ints or null (got {shape!r})")
    spec = TensorSpec(name=name, shape=tuple(shape), dtype=dtype, unit=unit)
    if dtype != "float32":
        raise ModelFileError(path, f"tensor {name!r}: dtype must be float32 (got {dtype!r})")
    if expected is not None and spec.shape != expected:
        raise ModelFileError(path, f"tensor {name!r}: shape {list(spec.shape)} does not match {list(expected)}")
    if expected is None and (len(spec.shape) != 2 or spec.shape[1] is None):
        raise ModelFileError(path, f"tensor {name!r}: shape must be [batch, features] (got {list(spec.shape)})")
    return spec


def _range(path: Path, raw: dict[str, Any], key: str) -> tuple[float, float]:
    value = raw.get(key)
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
            or not value[0] < value[1]):
        raise ModelFileError(path, f"manifest {key!r} must be [low, high] with low < high (got {value!r})")
    return float(value[0]), float(value[1])
