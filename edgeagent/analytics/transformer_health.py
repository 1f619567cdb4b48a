"""Transformer findings over the next hours: projected hot-spot, hours above the limits, loss of life.

Pure computation on arrays already in hand (no I/O). The top-oil forecast (P50 and P90 per hour, from
`TopOilForecaster.predict` or the physics model) is combined with an hourly load forecast in per unit:

    θ_H[i] = θ_TO[i] + Δθ_H[i],   Δθ_H[i+1] = Δθ_H,U(K[i]) + (Δθ_H[i] − Δθ_H,U(K[i]))·exp(−Δt/τ_W)

with Δθ_H,U = Δθ_H,R·K^(2m) (IEEE C57.91-2011 Clause 7, the hot-spot gradient over top oil and its
exponential response with the winding time constant τ_W). Loads follow the zero-order hold of
`thermal.LoadSeries`: K[i] applies from hour i to hour i + 1.

To judge an action (less load during some hours) the forecast is corrected with the physics: in the
Clause 7 model the top-oil rise obeys a linear recurrence whose forcing depends on the load alone, so
the change of top oil caused by a change of load is the difference of two simulations from the same
start, whatever the ambient and the start state (`hot_spot_with_load`). The model that produced the
forecast need not know about the action.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgeagent.analytics.ageing import LossOfLife, Paper, loss_of_life
from edgeagent.analytics.thermal import IeeeClause7Model, IeeeState, LoadSeries
from edgeagent.analytics.thermal_params import ThermalParams

FloatArray = NDArray[np.float64]

_MIN_PLAUSIBLE_C = -60.0
_MAX_PLAUSIBLE_C = 250.0


@dataclass(frozen=True, slots=True)
class HotSpotLimits:
    """The hot-spot limits a projection is judged against, °C.

    Defaults are IEEE C57.91-2011 Table 7, the same numbers as the interlock presets
    `transformer/c57_91/hot_spot/normal` (120 °C) and `.../long_time_emergency` (140 °C); a site builds
    its own from `edgeagent.safety.presets.get_preset(...)` (analytics does not import the safety package).
    """

    normal_c: float = 120.0
    emergency_c: float = 140.0

    def __post_init__(self) -> None:
        for name in ("normal_c", "emergency_c"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"HotSpotLimits.{name}: must be a finite number of °C (got {value!r})")
        if not self.normal_c < self.emergency_c:
            raise ValueError(f"HotSpotLimits: normal_c ({self.normal_c!r}) must be below emergency_c "
                             f"({self.emergency_c!r})")

    def named(self) -> tuple[tuple[str, float], ...]:
        """(name, °C) from the lowest limit up: the order in which they are checked."""
        return (("normal", self.normal_c), ("emergency", self.emergency_c))


@dataclass(frozen=True, slots=True, eq=False)
class Projection:
    """Projected temperatures per step (index i = `i·step_h` hours from now) and what they add up to."""

    step_h: float
    load_pu: FloatArray
    top_oil_p50_c: FloatArray
    top_oil_p90_c: FloatArray
    hot_spot_p50_c: FloatArray
    hot_spot_p90_c: FloatArray
    limits: HotSpotLimits
    loss_of_life_p50: LossOfLife
    loss_of_life_p90: LossOfLife

    @property
    def horizon_h(self) -> float:
        return self.step_h * len(self.load_pu)

    @property
    def max_hot_spot_p50_c(self) -> float:
        return float(self.hot_spot_p50_c.max())

    @property
    def max_hot_spot_p90_c(self) -> float:
        return float(self.hot_spot_p90_c.max())

    def hot_spot_c(self, quantile: str) -> FloatArray:
        """The P50 ("p50") or P90 ("p90") hot-spot series."""
        if quantile == "p50":
            return self.hot_spot_p50_c
        if quantile == "p90":
            return self.hot_spot_p90_c
        raise ValueError(f"quantile: must be 'p50' or 'p90' (got {quantile!r})")

    def hours_over(self, limit_c: float, quantile: str = "p90") -> float:
        """Hours with the projected hot-spot above `limit_c`."""
        return float(np.count_nonzero(self.hot_spot_c(quantile) > limit_c)) * self.step_h

    def first_crossing_h(self, limit_c: float, quantile: str = "p90") -> float | None:
        """Hours from now to the first step projected above `limit_c`, None if none is."""
        over = self.hot_spot_c(quantile) > limit_c
        return float(np.argmax(over)) * self.step_h if over.any() else None

    def figures(self) -> dict[str, float]:
        """The headline numbers, JSON-ready (evidence figures of a recommendation)."""
        lim = self.limits
        return {
            "horizon_h": self.horizon_h,
            "max_hotspot_c_projected_p50": round(self.max_hot_spot_p50_c, 2),
            "max_hotspot_c_projected_p90": round(self.max_hot_spot_p90_c, 2),
            "hours_over_normal_p50": self.hours_over(lim.normal_c, "p50"),
            "hours_over_normal_p90": self.hours_over(lim.normal_c, "p90"),
            "hours_over_emergency_p50": self.hours_over(lim.emergency_c, "p50"),
            "hours_over_emergency_p90": self.hours_over(lim.emergency_c, "p90"),
            "loss_of_life_h_p50": round(self.loss_of_life_p50.loss_of_life_h, 4),
            "loss_of_life_h_p90": round(self.loss_of_life_p90.loss_of_life_h, 4),
            "f_eqa_p50": round(self.loss_of_life_p50.equivalent_aging_factor, 4),
            "f_eqa_p90": round(self.loss_of_life_p90.equivalent_aging_factor, 4),
            "normal_limit_c": lim.normal_c,
            "emergency_limit_c": lim.emergency_c,
        }


def project(top_oil_p50_c: ArrayLike, top_oil_p90_c: ArrayLike, load_pu: ArrayLike, params: ThermalParams, *,
            limits: HotSpotLimits | None = None, step_h: float = 1.0, initial_gradient_k: float | None = None,
            paper: Paper = Paper.THERMALLY_UPGRADED) -> Projection:
    """Project the hot-spot from a top-oil forecast and a load forecast of the same length.

    `initial_gradient_k` is the hot-spot gradient now (measured hot-spot − top-oil where a probe gives
    it); by default the steady-state gradient of the first hour's load. Raises ValueError naming the
    input on NaN, unequal lengths, negative load, P90 below P50 or temperatures outside a plausible range.
    """
    limits = limits if limits is not None else HotSpotLimits()
    _check_step(step_h)
    p50 = checked_series("top_oil_p50_c", top_oil_p50_c)
    p90 = checked_series("top_oil_p90_c", top_oil_p90_c)
    load = checked_series("load_pu", load_pu)
    check_lengths(top_oil_p50_c=p50, top_oil_p90_c=p90, load_pu=load)
    _check_temperatures("top_oil_p50_c", p50)
    _check_temperatures("top_oil_p90_c", p90)
    if np.any(load < 0):
        bad = int(np.argmax(load < 0))
        raise ValueError(f"load_pu: must be >= 0; index {bad} is {float(load[bad])!r}")
    if np.any(p90 < p50 - 1e-9):
        bad = int(np.argmax(p90 < p50 - 1e-9))
        raise ValueError(f"top_oil_p90_c: below top_oil_p50_c at index {bad} ({float(p90[bad])!r} < "
                         f"{float(p50[bad])!r}); pass the quantiles in the right order")
    gradient = gradient_series(load, params, step_h, initial_gradient_k)
    hs50, hs90 = p50 + gradient, p90 + gradient
    durations = np.full(len(load), step_h)
    return Projection(step_h=step_h, load_pu=_frozen(load), top_oil_p50_c=_frozen(p50), top_oil_p90_c=_frozen(p90),
                      hot_spot_p50_c=_frozen(hs50), hot_spot_p90_c=_frozen(hs90), limits=limits,
                      loss_of_life_p50=loss_of_life(hs50, durations, paper),
                      loss_of_life_p90=loss_of_life(hs90, durations, paper))


def gradient_series(load_pu: FloatArray, params: ThermalParams, step_h: float,
                    initial_gradient_k: float | None = None) -> FloatArray:
    """Hot-spot gradient over top oil at each step (IEEE C57.91-2011 Clause 7, τ_W response), K."""
    model = IeeeClause7Model(params)
    if initial_gradient_k is None:
        gradient = model.ultimate_hot_spot_gradient_k(float(load_pu[0]))
    elif isinstance(initial_gradient_k, bool) or not math.isfinite(initial_gradient_k) or initial_gradient_k < 0:
        raise ValueError(f"initial_gradient_k: must be a finite number >= 0 K (got {initial_gradient_k!r})")
    else:
        gradient = float(initial_gradient_k)
    decay = math.exp(-step_h * 60.0 / params.winding_time_constant_min)
    out = np.empty(len(load_pu))
    for i in range(len(load_pu)):
        out[i] = gradient
        ultimate = model.ultimate_hot_spot_gradient_k(float(load_pu[i]))
        gradient = ultimate + (gradient - ultimate) * decay
    return out


def top_oil_change_k(load_base_pu: FloatArray, load_new_pu: FloatArray, params: ThermalParams,
                     step_h: float) -> FloatArray:
    """Change of top oil at each step when the load follows `load_new_pu` instead of `load_base_pu`, K.

    Exact for the Clause 7 top-oil equation: the rise recurrence is linear with a load-only forcing, so
    the difference does not depend on ambient or on the common start state (both start at rise 0 here).
    """
    model = IeeeClause7Model(params)
    time_min = np.arange(len(load_base_pu), dtype=np.float64) * step_h * 60.0
    ambient = np.zeros(len(load_base_pu))
    start = IeeeState(0.0, 0.0)
    base = model.simulate(LoadSeries(time_min, load_base_pu, ambient), start).top_oil_c
    new = model.simulate(LoadSeries(time_min, load_new_pu, ambient), start).top_oil_c
    return np.asarray(new - base, dtype=np.float64)


def hot_spot_with_load(projection: Projection, load_new_pu: FloatArray, params: ThermalParams,
                       quantile: str = "p90") -> FloatArray:
    """The projected hot-spot if the load followed `load_new_pu`: the forecast corrected with the physics."""
    base = projection.load_pu
    top_oil = (projection.top_oil_p90_c if quantile == "p90" else projection.top_oil_p50_c)
    first_gradient = float(projection.hot_spot_c(quantile)[0] - top_oil[0])
    gradient = gradient_series(load_new_pu, params, projection.step_h, first_gradient)
    return np.asarray(top_oil + top_oil_change_k(base, load_new_pu, params, projection.step_h) + gradient,
                      dtype=np.float64)


def repeat_daily_profile(recent_load_pu: ArrayLike, horizon_steps: int, steps_per_day: int = 24) -> FloatArray:
    """A load forecast made by repeating the last day of measured load (the fallback without a load model)."""
    recent = checked_series("recent_load_pu", recent_load_pu)
    if isinstance(horizon_steps, bool) or not isinstance(horizon_steps, int) or horizon_steps < 1:
        raise ValueError(f"horizon_steps: must be an integer >= 1 (got {horizon_steps!r})")
    if len(recent) < steps_per_day:
        raise ValueError(f"recent_load_pu: needs at least one day ({steps_per_day} values), got {len(recent)}")
    day = recent[-steps_per_day:]
    return np.asarray(np.resize(day, horizon_steps), dtype=np.float64)


def window_sha256(**arrays: ArrayLike) -> str:
    """sha256 of named input arrays (names sorted, float64 little-endian bytes), for `Evidence.input_sha256`."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name], dtype="<f8").tobytes())
    return digest.hexdigest()


def checked_series(name: str, raw: ArrayLike) -> FloatArray:
    """A non-empty 1-D float64 copy with only finite values, or ValueError naming `name` and the first bad index."""
    try:
        array = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: not an array of numbers ({exc})") from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: must be a non-empty 1-D array (got shape {array.shape})")
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(np.argmax(~finite))
        raise ValueError(f"{name}: index {bad} is {float(array[bad])!r}, not a finite number "
                         f"({int((~finite).sum())} bad value(s)); fill or drop gaps first")
    return array


def check_lengths(**arrays: FloatArray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        listed = ", ".join(f"{k} {v}" for k, v in lengths.items())
        raise ValueError(f"inputs differ in length ({listed}); they must cover the same hours")


def _check_temperatures(name: str, array: FloatArray) -> None:
    bad = (array < _MIN_PLAUSIBLE_C) | (array > _MAX_PLAUSIBLE_C)
    if bad.any():
        index = int(np.argmax(bad))
        hint = " (kelvin? temperatures are °C)" if array[index] > 200 else ""
        raise ValueError(f"{name}: index {index} is {float(array[index])!r} °C, outside the plausible "
                         f"[{_MIN_PLAUSIBLE_C:g}, {_MAX_PLAUSIBLE_C:g}] °C{hint}")


def _check_step(step_h: float) -> None:
    if isinstance(step_h, bool) or not isinstance(step_h, int | float) or not (math.isfinite(step_h) and step_h > 0):
        raise ValueError(f"step_h: must be a finite number of hours > 0 (got {step_h!r})")


def _frozen(array: FloatArray) -> FloatArray:
    array.setflags(write=False)
    return array
