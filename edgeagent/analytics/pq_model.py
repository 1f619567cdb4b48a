"""The ONNX power-quality classifier: nine IEEE 1159 classes and an anomaly score per 0.2 s window.

Advisory only.  Loading checks the manifest and the model's sha256, then the graph's own input and
output signature; any failure raises :class:`PqModelError` and the caller keeps the deterministic
detector (``pq_events``) alone.  The session runs on one thread: the analytics worker must not take the
box's second core from the scan cycle.

``anomaly_score`` is scaled so that 1.0 is the threshold calibrated at training (a high percentile of
in-distribution windows); a window above it is unlike anything the model was trained on, and its label
should not be trusted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from edgeagent.analytics.pq_model_io import (
    LABELS,
    PqManifest,
    PqModelError,
    check_nominal_hz,
    load_manifest,
    model_samples,
    read_verified_model,
    to_model_grid,
)

__all__ = ["LABELS", "PqClassifier", "PqModelError", "PqResult", "PqWindow", "default_manifest_path"]

INPUT_NAME = "waveform"
PROBABILITIES_NAME = "probabilities"
ANOMALY_NAME = "anomaly_score"


def default_manifest_path(version: str) -> Path:
    """``models/pq-classifier-<version>.manifest.json`` of a source checkout."""
    return Path(__file__).resolve().parents[2] / "models" / f"pq-classifier-{version}.manifest.json"


@dataclass(frozen=True)
class PqWindow:
    """0.2 s of one voltage channel in pu of the nominal peak, sampled at ``rate_hz`` (any rate >= 2 kHz)."""

    samples_pu: npt.NDArray[np.float64]
    rate_hz: float
    nominal_hz: float


class PqResult(NamedTuple):
    """``label``: the most probable class; ``probabilities``: every class; ``anomaly_score``: 1.0 = threshold."""

    label: str
    probabilities: Mapping[str, float]
    anomaly_score: float

    @property
    def anomalous(self) -> bool:
        return self.anomaly_score > 1.0


class PqClassifier:
    """One onnxruntime session over a verified model file."""

    def __init__(self, manifest_path: Path) -> None:
        self.manifest: PqManifest = load_manifest(manifest_path)
        data = read_verified_model(manifest_path, self.manifest)
        try:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._session: Any = ort.InferenceSession(data, sess_options=options,
                                                      providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for corrupt graphs
            raise PqModelError(f"{manifest_path.parent / self.manifest.file}: onnxruntime refused the model: "
                               f"{exc}") from exc
        self._check_signature()
        self._threshold = self.manifest.anomaly_threshold

    def _check_signature(self) -> None:
        where = self.manifest.file
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(float)" \
                or len(inputs[0].shape) != 2:
            got: list[tuple[Any, ...]] = [(i.name, i.type, i.shape) for i in inputs]
            raise PqModelError(f"{where}: expected one float input {INPUT_NAME!r} [batch, samples], got {got}")
        outputs = {o.name: o for o in self._session.get_outputs()}
        probs = outputs.get(PROBABILITIES_NAME)
        if probs is None or ANOMALY_NAME not in outputs or probs.shape[-1] != len(LABELS):
            got = [(o.name, o.type, o.shape) for o in outputs.values()]
            raise PqModelError(f"{where}: expected outputs {PROBABILITIES_NAME!r} [batch, {len(LABELS)}] and "
                               f"{ANOMALY_NAME!r} [batch], got {got}")
        fixed = inputs[0].shape[1]
        if isinstance(fixed, int) and fixed not in (model_samples(50.0), model_samples(60.0)):
            raise PqModelError(f"{where}: input length {fixed} fits neither 50 nor 60 Hz windows")

    def classify(self, window: PqWindow) -> PqResult:
        """Classify one window (resampled onto the model's grid first)."""
        return self.classify_batch([window])[0]

    def classify_batch(self, windows: Sequence[PqWindow]) -> list[PqResult]:
        """Classify windows; those of one nominal frequency run as one batch."""
        results: list[PqResult | None] = [None] * len(windows)
        by_nominal: dict[float, list[int]] = {}
        for i, w in enumerate(windows):
            by_nominal.setdefault(check_nominal_hz(w.nominal_hz), []).append(i)
        for nominal_hz, indices in by_nominal.items():
            x = np.stack([to_model_grid(windows[i].samples_pu, windows[i].rate_hz, nominal_hz) for i in indices])
            probs, scores = self.run_model_grid(x)
            for row, i in enumerate(indices):
                results[i] = self._result(probs[row], float(scores[row]))
        return [r for r in results if r is not None]

    def run_model_grid(self, x: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Raw outputs for windows already on the model's grid: ``x[batch, 1280 or 1536]`` float32, pu.

        Returns ``(probabilities[batch, 9], anomaly_score[batch])`` with the score scaled to the threshold.
        """
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] not in (model_samples(50.0), model_samples(60.0)):
            raise ValueError(f"model input must be float32 [batch, 1280 or 1536], got {x.dtype} {x.shape}")
        try:
            probs, scores = self._session.run([PROBABILITIES_NAME, ANOMALY_NAME], {INPUT_NAME: x})
        except Exception as exc:  # onnxruntime's own failure types
            raise PqModelError(f"{self.manifest.file}: inference failed: {exc}") from exc
        return np.asarray(probs, dtype=np.float32), np.asarray(scores, dtype=np.float32) / np.float32(self._threshold)

    def _result(self, probs: npt.NDArray[np.float32], score: float) -> PqResult:
        if not (np.all(np.isfinite(probs)) and math.isfinite(score)):
            raise PqModelError(f"{self.manifest.file}: model produced non-finite outputs")
        best = int(np.argmax(probs))
        mapping = MappingProxyType({label: float(p) for label, p in zip(LABELS, probs, strict=True)})
        return PqResult(LABELS[best], mapping, score)
