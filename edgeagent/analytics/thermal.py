"""Top-oil and hot-spot temperatures of an oil-immersed transformer: IEEE C57.91 Clause 7 and IEC 60076-7.

Two models with one shape: a pure `step(state, inputs, dt_min) -> state`, a `steady_state(inputs)`,
and `simulate(series)` over a `LoadSeries`, returning a `ThermalTrace` of numpy arrays.

- `IeeeClause7Model`: IEEE C57.91-2011 Clause 7, first-order exponential responses of the top-oil
  rise and the hot-spot gradient. Each step is the exact solution for inputs held constant over
  the step, so it is stable and gives the same result for any step size.
- `Iec60076Model`: IEC 60076-7:2018 clause 8.2, the difference-equation solution (k11, k21, k22,
  hot-spot rise as the difference of two terms, which gives the hot-spot overshoot after a load step).

Time is in minutes throughout (both standards state time constants in minutes), load is the
per-unit load K (load current over rated current). A `LoadSeries` is a zero-order hold: the load
and ambient at `time_min[i]` apply until `time_min[i + 1]`; the trace at sample i is the state at
`time_min[i]`, starting (by default) from the steady state for the first sample's inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from edgeagent.analytics.thermal_params import ThermalParams

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class ThermalInputs:
    """Inputs held constant over one step: per-unit load K and ambient temperature."""

    load_pu: float
    ambient_c: float

    def __post_init__(self) -> None:
        _check_inputs(self.load_pu, self.ambient_c)


@dataclass(frozen=True, slots=True)
class IeeeState:
    """State of the IEEE Clause 7 model: top-oil rise over ambient and hot-spot gradient over top oil."""

    top_oil_rise_k: float
    hot_spot_gradient_k: float

    def __post_init__(self) -> None:
        _check_finite("IeeeState", top_oil_rise_k=self.top_oil_rise_k, hot_spot_gradient_k=self.hot_spot_gradient_k)

    def top_oil_c(self, ambient_c: float) -> float:
        return ambient_c + self.top_oil_rise_k

    def hot_spot_c(self, ambient_c: float) -> float:
        """θ_H = θ_A + Δθ_TO + Δθ_H (IEEE C57.91-2011 Clause 7): ambient enters without lag in this model."""
        return ambient_c + self.top_oil_rise_k + self.hot_spot_gradient_k


@dataclass(frozen=True, slots=True)
class IecState:
    """State of the IEC 60076-7 model: top-oil temperature and the two hot-spot rise terms Δθh1, Δθh2."""

    top_oil_c: float
    hot_spot_rise_1_k: float
    hot_spot_rise_2_k: float

    def __post_init__(self) -> None:
        _check_finite("IecState", top_oil_c=self.top_oil_c, hot_spot_rise_1_k=self.hot_spot_rise_1_k,
                      hot_spot_rise_2_k=self.hot_spot_rise_2_k)

    @property
    def hot_spot_rise_k(self) -> float:
        """Δθh = Δθh1 − Δθh2 (IEC 60076-7 8.2)."""
        return self.hot_spot_rise_1_k - self.hot_spot_rise_2_k

    @property
    def hot_spot_c(self) -> float:
        """θh = θo + Δθh (IEC 60076-7 8.2)."""
        return self.top_oil_c + self.hot_spot_rise_k


@dataclass(frozen=True, slots=True, init=False, eq=False)
class LoadSeries:
    """A load and ambient time series (zero-order hold, see the module docstring), validated on creation.

    The arrays are copied to read-only float64 arrays; a bad series raises ValueError naming the array
    and the first bad index.
    """

    time_min: FloatArray
    load_pu: FloatArray
    ambient_c: FloatArray

    def __init__(self, time_min: ArrayLike, load_pu: ArrayLike, ambient_c: ArrayLike) -> None:
        arrays = {name: _as_series(name, raw) for name, raw in
                  (("time_min", time_min), ("load_pu", load_pu), ("ambient_c", ambient_c))}
        lengths = {name: len(a) for name, a in arrays.items()}
        if len(set(lengths.values())) != 1:
            listed = ", ".join(f"{k} {v}" for k, v in lengths.items())
            raise ValueError(f"LoadSeries: arrays differ in length ({listed})")
        steps = np.diff(arrays["time_min"])
        if steps.size and not np.all(steps > 0):
            bad = int(np.argmax(~(steps > 0))) + 1
            raise ValueError(f"LoadSeries.time_min: must increase strictly; index {bad} "
                             f"({float(arrays['time_min'][bad])!r}) follows {float(arrays['time_min'][bad - 1])!r}")
        if not np.all(arrays["load_pu"] >= 0):
            bad = int(np.argmax(arrays["load_pu"] < 0))
            raise ValueError(f"LoadSeries.load_pu: must be >= 0; index {bad} is {float(arrays['load_pu'][bad])!r}")
        for name, a in arrays.items():
            object.__setattr__(self, name, a)

    def __len__(self) -> int:
        return len(self.time_min)


@dataclass(frozen=True, slots=True, eq=False)
class ThermalTrace:
    """A simulated series: the inputs and the top-oil and hot-spot temperatures at each sample (°C)."""

    time_min: FloatArray
    load_pu: FloatArray
    ambient_c: FloatArray
    top_oil_c: FloatArray
    hot_spot_c: FloatArray


class IeeeClause7Model:
    """IEEE C57.91-2011 Clause 7 top-oil / hot-spot model, stepped with the exact exponential.

    Uses the top-oil time constant k11·τo (see `thermal_params`) held constant; Clause 7's correction
    of τ_TO for n ≠ 1 at non-rated load is not applied, because a time constant that depends on the
    step's start would make the result depend on how a period is split into steps.
    """

    def __init__(self, params: ThermalParams) -> None:
        self.params = params

    def ultimate_top_oil_rise_k(self, load_pu: float) -> float:
        """Δθ_TO,U = Δθ_TO,R · ((K²R + 1)/(R + 1))^n (IEEE C57.91-2011 Clause 7, ultimate top-oil rise)."""
        _check_load(load_pu)
        p = self.params
        return p.top_oil_rise_rated_k * math.pow((load_pu**2 * p.loss_ratio + 1) / (p.loss_ratio + 1), p.exponent_n)

    def ultimate_hot_spot_gradient_k(self, load_pu: float) -> float:
        """Δθ_H,U = Δθ_H,R · K^(2m) (IEEE C57.91-2011 Clause 7, ultimate hot-spot gradient over top oil)."""
        _check_load(load_pu)
        return self.params.hot_spot_gradient_rated_k * math.pow(load_pu, 2 * self.params.exponent_m)

    def steady_state(self, inputs: ThermalInputs) -> IeeeState:
        return IeeeState(self.ultimate_top_oil_rise_k(inputs.load_pu),
                         self.ultimate_hot_spot_gradient_k(inputs.load_pu))

    def step(self, state: IeeeState, inputs: ThermalInputs, dt_min: float) -> IeeeState:
        """Advance by `dt_min` with `inputs` held constant.

        Δθ(t) = (Δθ_U − Δθ_i)(1 − exp(−t/τ)) + Δθ_i for the top-oil rise (τ_TO) and the hot-spot
        gradient (τ_W) (IEEE C57.91-2011 Clause 7), written as Δθ_U + (Δθ_i − Δθ_U)·exp(−t/τ).
        """
        _check_dt(dt_min)
        return IeeeState(*self._advance(state.top_oil_rise_k, state.hot_spot_gradient_k,
                                        inputs.load_pu, dt_min))

    def simulate(self, series: LoadSeries, initial: IeeeState | None = None) -> ThermalTrace:
        n = len(series)
        if initial is None:
            initial = self.steady_state(ThermalInputs(float(series.load_pu[0]), float(series.ambient_c[0])))
        top_oil_rise_k = np.empty(n)
        gradient_k = np.empty(n)
        rise, grad = initial.top_oil_rise_k, initial.hot_spot_gradient_k
        top_oil_rise_k[0], gradient_k[0] = rise, grad
        for i in range(1, n):
            dt_min = float(series.time_min[i] - series.time_min[i - 1])
            rise, grad = self._advance(rise, grad, float(series.load_pu[i - 1]), dt_min)
            top_oil_rise_k[i], gradient_k[i] = rise, grad
        top_oil_c = series.ambient_c + top_oil_rise_k
        return _trace(series, top_oil_c, top_oil_c + gradient_k)

    def _advance(self, rise_k: float, gradient_k: float, load_pu: float, dt_min: float) -> tuple[float, float]:
        p = self.params
        rise_u = self.ultimate_top_oil_rise_k(load_pu)
        gradient_u = self.ultimate_hot_spot_gradient_k(load_pu)
        decay_oil = math.exp(-dt_min / p.top_oil_time_constant_min)
        decay_winding = math.exp(-dt_min / p.winding_time_constant_min)
        return rise_u + (rise_k - rise_u) * decay_oil, gradient_u + (gradient_k - gradient_u) * decay_winding


class Iec60076Model:
    """IEC 60076-7:2018 clause 8.2 difference-equation model (k11, k21, k22 form).

    Per sub-step Dt, with K and θa the inputs of the step:
        Dθo   = Dt/(k11·τo) · [((1 + K²R)/(1 + R))^x · Δθor − (θo − θa)]
        DΔθh1 = Dt/(k22·τw) · [k21 · Δθhr · K^y − Δθh1]
        DΔθh2 = Dt/(τo/k22) · [(k21 − 1) · Δθhr · K^y − Δθh2]
        θh    = θo + Δθh1 − Δθh2
    The standard asks for Dt no larger than half the smallest time constant of the model; a step is
    split into equal sub-steps within that limit (or within the smaller `max_substep_min` given).
    With the inputs constant over a step, n sub-steps of each equation x ← x + (Dt/τ)(x_U − x) sum
    to x_U + (1 − Dt/τ)^n · (x − x_U), which is what is computed: the same numbers as iterating the
    equations n times, at a cost independent of n.
    """

    def __init__(self, params: ThermalParams, max_substep_min: float | None = None) -> None:
        self.params = params
        self._tau_oil_min = params.k11 * params.oil_time_constant_min
        self._tau_h1_min = params.k22 * params.winding_time_constant_min
        self._tau_h2_min = params.oil_time_constant_min / params.k22
        self.substep_limit_min = min(self._tau_oil_min, self._tau_h1_min, self._tau_h2_min) / 2
        if max_substep_min is None:
            max_substep_min = self.substep_limit_min
        elif not (math.isfinite(max_substep_min) and 0 < max_substep_min <= self.substep_limit_min):
            raise ValueError(f"max_substep_min: must be in (0, {self.substep_limit_min:g}] min, half the smallest "
                             f"time constant of the model (got {max_substep_min!r})")
        self.max_substep_min = max_substep_min

    def ultimate_top_oil_rise_k(self, load_pu: float) -> float:
        """((1 + K²R)/(1 + R))^x · Δθor (IEC 60076-7 8.2, the top-oil rise the model tends to)."""
        _check_load(load_pu)
        p = self.params
        return p.top_oil_rise_rated_k * math.pow((1 + load_pu**2 * p.loss_ratio) / (1 + p.loss_ratio), p.exponent_x)

    def ultimate_hot_spot_rise_k(self, load_pu: float) -> float:
        """Δθhr · K^y (IEC 60076-7 8.1, steady-state hot-spot rise over top oil)."""
        _check_load(load_pu)
        return self.params.hot_spot_gradient_rated_k * math.pow(load_pu, self.params.exponent_y)

    def steady_state(self, inputs: ThermalInputs) -> IecState:
        rise_k = self.ultimate_hot_spot_rise_k(inputs.load_pu)
        return IecState(inputs.ambient_c + self.ultimate_top_oil_rise_k(inputs.load_pu),
                        self.params.k21 * rise_k, (self.params.k21 - 1) * rise_k)

    def step(self, state: IecState, inputs: ThermalInputs, dt_min: float) -> IecState:
        """Advance by `dt_min` with `inputs` held constant, in sub-steps within the standard's limit."""
        _check_dt(dt_min)
        return IecState(*self._advance(state.top_oil_c, state.hot_spot_rise_1_k, state.hot_spot_rise_2_k,
                                       inputs.load_pu, inputs.ambient_c, dt_min))

    def simulate(self, series: LoadSeries, initial: IecState | None = None) -> ThermalTrace:
        n = len(series)
        if initial is None:
            initial = self.steady_state(ThermalInputs(float(series.load_pu[0]), float(series.ambient_c[0])))
        top_oil_c = np.empty(n)
        hot_spot_c = np.empty(n)
        state = (initial.top_oil_c, initial.hot_spot_rise_1_k, initial.hot_spot_rise_2_k)
        top_oil_c[0], hot_spot_c[0] = state[0], state[0] + state[1] - state[2]
        for i in range(1, n):
            dt_min = float(series.time_min[i] - series.time_min[i - 1])
            state = self._advance(*state, float(series.load_pu[i - 1]), float(series.ambient_c[i - 1]), dt_min)
            top_oil_c[i], hot_spot_c[i] = state[0], state[0] + state[1] - state[2]
        return _trace(series, top_oil_c, hot_spot_c)

    def _advance(self, top_oil_c: float, rise_1_k: float, rise_2_k: float, load_pu: float, ambient_c: float,
                 dt_min: float) -> tuple[float, float, float]:
        if dt_min == 0:
            return top_oil_c, rise_1_k, rise_2_k
        substeps = max(1, math.ceil(dt_min / self.max_substep_min))
        h_min = dt_min / substeps
        k21 = self.params.k21
        rise_u_k = self.ultimate_hot_spot_rise_k(load_pu)
        top_oil_u_c = ambient_c + self.ultimate_top_oil_rise_k(load_pu)
        return (_euler(top_oil_c, top_oil_u_c, h_min / self._tau_oil_min, substeps),
                _euler(rise_1_k, k21 * rise_u_k, h_min / self._tau_h1_min, substeps),
                _euler(rise_2_k, (k21 - 1) * rise_u_k, h_min / self._tau_h2_min, substeps))


def _euler(value: float, ultimate: float, h_over_tau: float, substeps: int) -> float:
    """`substeps` forward-Euler steps of dx/dt = (ultimate − x)/τ, in closed form (0 < h/τ ≤ 1/2)."""
    return ultimate + (1 - h_over_tau) ** substeps * (value - ultimate)


def _check_load(load_pu: float) -> None:
    if not (math.isfinite(load_pu) and load_pu >= 0):
        raise ValueError(f"load_pu: must be finite and >= 0 (got {load_pu!r})")


def _check_inputs(load_pu: float, ambient_c: float) -> None:
    _check_load(load_pu)
    if not math.isfinite(ambient_c):
        raise ValueError(f"ambient_c: must be finite (got {ambient_c!r})")


def _check_finite(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{owner}.{name}: must be finite (got {value!r})")


def _check_dt(dt_min: float) -> None:
    if not (math.isfinite(dt_min) and dt_min >= 0):
        raise ValueError(f"dt_min: must be finite and >= 0 (got {dt_min!r})")


def _as_series(name: str, raw: ArrayLike) -> FloatArray:
    try:
        array = np.array(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"LoadSeries.{name}: not an array of numbers ({exc})") from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"LoadSeries.{name}: must be a non-empty 1-D array (got shape {array.shape})")
    finite = np.isfinite(array)
    if not finite.all():
        bad = int(np.argmax(~finite))
        raise ValueError(f"LoadSeries.{name}: index {bad} is {float(array[bad])!r}, not a finite number")
    array.setflags(write=False)
    return array


def _trace(series: LoadSeries, top_oil_c: FloatArray, hot_spot_c: FloatArray) -> ThermalTrace:
    top_oil_c.setflags(write=False)
    hot_spot_c.setflags(write=False)
    return ThermalTrace(series.time_min, series.load_pu, series.ambient_c, top_oil_c, hot_spot_c)
