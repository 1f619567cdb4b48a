"""Cooling anomaly: measured top-oil persistently above what the physics expects, found with a CUSUM.

The expected top-oil comes from the IEEE C57.91 Clause 7 model driven by the measured load and ambient,
started from the first measured top-oil. The residual r = measured − expected is summed one-sided
(Page's CUSUM, in K·h so it does not depend on the sample period):

    S_0 = 0,   S_i = max(0, S_{i−1} + (r_i − k)·Δt_i),   alarm when S_i > h

- k (`drift_k`, K): the allowance. Residual below k never accumulates, so model error and sensor noise
  of a healthy unit (σ ≈ 1 K) drain away. The default 3 K is half the ~6 K top-oil excess a failed fan
  group gives at 0.8–1 pu load, the usual choice of k for detecting a shift of 2k.
- h (`threshold_kh`, K·h): the decision interval. 24 K·h alarms after about 8 h of a 6 K excess
  (24 / (6 − 3)) and, at σ ≈ 1 K of hourly noise with k = 3 K, has a false-alarm run far beyond a year.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from edgeagent.analytics.thermal import IeeeClause7Model, IeeeState, LoadSeries
from edgeagent.analytics.thermal_params import ThermalParams
from edgeagent.analytics.transformer_health import FloatArray, check_lengths, checked_series
from edgeagent.analytics.transformer_health_plan import Proposal
from edgeagent.decisions.recommendation import Evidence, Inspection, Proposer

DEFAULT_DRIFT_K = 3.0
DEFAULT_THRESHOLD_KH = 24.0


@dataclass(frozen=True, slots=True, eq=False)
class CoolingAnomaly:
    """The CUSUM over a window and what it found. Times are minutes, as in the inputs."""

    time_min: FloatArray
    residual_k: FloatArray
    cusum_kh: FloatArray
    drift_k: float
    threshold_kh: float
    alarm_time_min: float | None
    onset_time_min: float | None

    @property
    def alarm(self) -> bool:
        return self.alarm_time_min is not None

    @property
    def mean_excess_k(self) -> float:
        """Mean residual since the onset (all of the window without an alarm)."""
        start = 0 if self.onset_time_min is None else int(np.searchsorted(self.time_min, self.onset_time_min))
        return float(self.residual_k[start:].mean())


def cooling_anomaly(time_min: ArrayLike, top_oil_measured_c: ArrayLike, load_pu: ArrayLike, ambient_c: ArrayLike,
                    params: ThermalParams, *, drift_k: float = DEFAULT_DRIFT_K,
                    threshold_kh: float = DEFAULT_THRESHOLD_KH) -> CoolingAnomaly:
    """Run the CUSUM over a measured window (see the module docstring). Raises ValueError naming the input
    on NaN, unequal lengths, a time that does not increase, or a bad k/h."""
    for name, value in (("drift_k", drift_k), ("threshold_kh", threshold_kh)):
        if isinstance(value, bool) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: must be a finite number > 0 (got {value!r})")
    times = checked_series("time_min", time_min)
    measured = checked_series("top_oil_measured_c", top_oil_measured_c)
    load = checked_series("load_pu", load_pu)
    ambient = checked_series("ambient_c", ambient_c)
    check_lengths(time_min=times, top_oil_measured_c=measured, load_pu=load, ambient_c=ambient)
    series = LoadSeries(times, load, ambient)
    start = IeeeState(float(measured[0] - ambient[0]),
                      IeeeClause7Model(params).ultimate_hot_spot_gradient_k(float(load[0])))
    expected = IeeeClause7Model(params).simulate(series, start).top_oil_c
    residual = measured - expected
    dt_h = np.diff(times, prepend=times[0]) / 60.0
    cusum = np.empty(len(times))
    total = 0.0
    alarm: float | None = None
    onset: float | None = None
    last_zero = float(times[0])
    for i in range(len(times)):
        total = max(0.0, total + (float(residual[i]) - drift_k) * float(dt_h[i]))
        cusum[i] = total
        if total == 0.0:
            last_zero = float(times[i])
        elif alarm is None and total > threshold_kh:
            alarm, onset = float(times[i]), last_zero
    for array in (residual, cusum):
        array.setflags(write=False)
    return CoolingAnomaly(series.time_min, residual, cusum, drift_k, threshold_kh, alarm, onset)


def cooling_recommendation(anomaly: CoolingAnomaly, *, proposer: Proposer, input_sha256: str,
                           key_prefix: str = "transformer") -> Proposal | None:
    """An inspection for `DecisionService.propose(**proposal.propose_kwargs())`, None without an alarm."""
    if anomaly.alarm_time_min is None or anomaly.onset_time_min is None:
        return None
    persisted_h = (anomaly.alarm_time_min - anomaly.onset_time_min) / 60.0
    excess_k = anomaly.mean_excess_k
    text = (f"inspect cooling fans, pumps and radiators: top oil has run {excess_k:.1f} K above the physics "
            f"expectation for {persisted_h:.0f} h (CUSUM {float(anomaly.cusum_kh.max()):.0f} K·h over the "
            f"{anomaly.threshold_kh:g} K·h threshold)")
    figures: dict[str, float | str] = {
        "mean_excess_k": round(excess_k, 2), "persisted_h": round(persisted_h, 2),
        "cusum_drift_k": anomaly.drift_k, "cusum_threshold_kh": anomaly.threshold_kh,
        "alarm_time_min": anomaly.alarm_time_min, "onset_time_min": anomaly.onset_time_min,
    }
    if proposer.kind == "model":
        figures.update({"model_name": proposer.name, "model_version": proposer.version,
                        "model_sha256": proposer.sha256 or ""})
    return Proposal(key=f"{key_prefix}.cooling", proposer=proposer, evidence=Evidence(figures, input_sha256),
                    rationale=f"Cooling anomaly: {text}. A failed fan group or blocked radiator raises top oil at "
                              "the same load.",
                    actions=(Inspection(text),), lead_time_h=None, plan=None)
