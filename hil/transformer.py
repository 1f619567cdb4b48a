"""Thermal state of the site's distribution transformer: IEEE C57.91 Clause 7 top-oil / hot-spot model.

The plant's own implementation, written apart from the daemon's analytics on purpose (a test
oracle that shares the code under test hides its bugs).  No I/O; time is plant time.

**Load.**  The transformer sits at the point of common coupling, between the grid and the site,
so it carries what the PCC meter sees: the apparent power ``hypot(meter_w, load_var)`` (PV and
battery run at unity power factor, so all the reactive power is the load's).  Import in the
evening and export at noon heat the windings alike, so the direction does not matter.  The load
``K`` is that apparent power per unit of the rating of the cooling stage in use; the load current
is the LV line current ``S / (3 V_phase)`` at the plant's phase voltage.

**Equations** (IEEE C57.91-2011, Clause 7, the exponential top-oil / hot-spot model), for a
load ``K`` held over a step of ``dt``:

* ultimate top-oil rise over ambient: ``Δθ_TO,U = Δθ_TO,R · ((K² R + 1) / (R + 1))^n``
* ultimate hot-spot rise over top oil: ``Δθ_H,U = Δθ_H,R · K^(2m)``
* each rise moves exponentially towards its ultimate value, ``Δθ(t+dt) = Δθ_U + (Δθ(t) - Δθ_U)
  e^(-dt/τ)``, with ``τ_TO`` for the oil and ``τ_w`` for the winding (exact for a load held
  constant over the step, so the result does not depend on the step size);
* top oil ``θ_TO = θ_A + Δθ_TO``, hot spot ``θ_H = θ_TO + Δθ_H``.

``R`` is the ratio of load losses at rated load to no-load losses.  The time constants are the
rated ones, held constant (Clause 7 also gives a load-dependent ``τ_TO`` for ``n != 1``; a
plant does not need it, and a constant one makes the response checkable in closed form).

**Cooling.**  An ONAF unit has two stages: fans off (ONAN) and fans on (ONAF).  ``rating_kva``
and the rated rises are those of the top stage; with the fans off the unit is rated
``onan_rating_pu · rating_kva`` with the same rated top-oil rise (as on a dual-rated nameplate),
so relative to that stage ``R_ONAN = R · f²`` and ``K_ONAN = K / f``, the exponent is ``n_onan``,
and ``τ_TO,ONAN = τ_TO · (1 + R) / (1 + R f²)`` (Clause 7: ``τ_TO = C Δθ_TO,R / P_T,R``, the same
oil and steel ``C`` and rise with the lower rated losses).  The fans blow on the radiators, not
on the windings: the hot-spot gradient over the top oil depends on the current alone, so
``Δθ_H,U`` always uses ``K`` of the top stage.  The fans switch on when the top oil
exceeds ``fan_on_top_oil_c`` and off below ``fan_off_top_oil_c`` (hysteresis), unless a
``fan_failure`` event holds them off.

**Ambient**: a daily sine, ``ambient_mean_c + ambient_amplitude_c · cos(2π (hour - ambient_peak_h)
/ 24)``, plus any active ``heat_wave`` (:mod:`hil.transformer_events`).

The transformer starts in thermal equilibrium with its load and the ambient at t = 0.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from hil.physics import PlantState
from hil.transformer_events import TransformerEvent, drift_offset_c, fans_failed, heat_wave_rise_c


class Cooling(enum.StrEnum):
    """The cooling class of the transformer."""

    ONAN = "ONAN"  # oil natural, air natural: no fans
    ONAF = "ONAF"  # oil natural, air forced: fans switched by top-oil temperature


#: IEEE C57.91 Table 4: suggested oil exponent n per cooling class (m = 0.8 for both).
DEFAULT_N = {Cooling.ONAN: 0.8, Cooling.ONAF: 0.9}


@dataclass(frozen=True)
class TransformerParams:
    """The ``[transformer]`` table of a scenario (see the module docstring for the meaning)."""

    rating_kva: float = 250.0  # nameplate rating of the top cooling stage
    cooling: Cooling = Cooling.ONAF
    onan_rating_pu: float = 0.8  # ONAF only: rating with the fans off, per unit of rating_kva
    top_oil_rise_c: float = 55.0  # Δθ_TO,R: top oil over ambient at rated load
    hot_spot_rise_c: float = 25.0  # Δθ_H,R: hot spot over top oil at rated load
    loss_ratio: float = 4.5  # R: load losses at rated load / no-load losses
    n: float | None = None  # oil exponent of the top stage; None: C57.91 Table 4 for `cooling`
    n_onan: float = 0.8  # ONAF only: oil exponent with the fans off
    m: float = 0.8  # winding exponent
    tau_oil_h: float = 3.0  # τ_TO at the top stage's rating
    tau_winding_min: float = 7.0  # τ_w
    fan_on_top_oil_c: float = 65.0  # ONAF only
    fan_off_top_oil_c: float = 60.0  # ONAF only
    ambient_mean_c: float = 25.0
    ambient_amplitude_c: float = 5.0  # half the daily swing
    ambient_peak_h: float = 15.0  # hour of the day's warmest ambient

    @property
    def oil_exponent(self) -> float:
        return DEFAULT_N[self.cooling] if self.n is None else self.n

    def stage(self, fans_on: bool) -> CoolingStage:
        """The rated values of the cooling stage in use."""
        if self.cooling is Cooling.ONAN or fans_on:
            return CoolingStage(1000.0 * self.rating_kva, self.loss_ratio, self.oil_exponent, 3600.0 * self.tau_oil_h)
        f = self.onan_rating_pu
        ratio = self.loss_ratio * f * f
        tau_s = 3600.0 * self.tau_oil_h * (1.0 + self.loss_ratio) / (1.0 + ratio)
        return CoolingStage(1000.0 * self.rating_kva * f, ratio, self.n_onan, tau_s)

    def problems(self) -> list[tuple[str, str]]:
        """Cross-field mistakes as (key, message); the ranges of single keys are in :data:`RANGES`."""
        found: list[tuple[str, str]] = []
        if self.fan_off_top_oil_c >= self.fan_on_top_oil_c:
            found.append(("fan_off_top_oil_c", f"must be below fan_on_top_oil_c ({self.fan_on_top_oil_c:g})"))
        return found


#: Keys only meaningful with fans (rejected for cooling = "ONAN", where they would do nothing).
ONAF_ONLY_KEYS = ("onan_rating_pu", "n_onan", "fan_on_top_oil_c", "fan_off_top_oil_c")

_Check = Callable[[float], bool]
#: Ranges of the ``[transformer]`` keys, for the scenario parser.
RANGES: dict[str, tuple[_Check, str]] = {
    "rating_kva": (lambda v: 0 < v <= 1e6, "must be within (0, 1e6]"),
    "onan_rating_pu": (lambda v: 0.3 <= v < 1, "must be within [0.3, 1)"),
    "top_oil_rise_c": (lambda v: 0 < v <= 100, "must be within (0, 100]"),
    "hot_spot_rise_c": (lambda v: 0 < v <= 100, "must be within (0, 100]"),
    "loss_ratio": (lambda v: 0 < v <= 50, "must be within (0, 50]"),
    "n": (lambda v: 0.5 <= v <= 2, "must be within 0.5..2"),
    "n_onan": (lambda v: 0.5 <= v <= 2, "must be within 0.5..2"),
    "m": (lambda v: 0.5 <= v <= 2, "must be within 0.5..2"),
    "tau_oil_h": (lambda v: 0 < v <= 24, "must be within (0, 24]"),
    "tau_winding_min": (lambda v: 0 < v <= 120, "must be within (0, 120]"),
    "fan_on_top_oil_c": (lambda v: -40 <= v <= 150, "must be within -40..150"),
    "fan_off_top_oil_c": (lambda v: -40 <= v <= 150, "must be within -40..150"),
    "ambient_mean_c": (lambda v: -60 <= v <= 60, "must be within -60..60"),
    "ambient_amplitude_c": (lambda v: 0 <= v <= 30, "must be within 0..30"),
    "ambient_peak_h": (lambda v: 0 <= v < 24, "must be within [0, 24)"),
}


@dataclass(frozen=True)
class CoolingStage:
    """Rated values of one cooling stage: rating in VA, R, oil exponent n, τ_TO in seconds."""

    rating_va: float
    loss_ratio: float
    n: float
    tau_oil_s: float


@dataclass(frozen=True)
class TransformerState:
    """The true thermal state at plant time ``t_s`` (temperatures in °C)."""

    t_s: float
    ambient_c: float
    load_va: float
    load_pu: float  # K: per unit of rating_kva (the top stage), whatever stage is in use
    load_current_a: float
    top_oil_rise_c: float  # over ambient
    hot_spot_rise_c: float  # over top oil
    fans_on: bool
    fans_failed: bool

    @property
    def top_oil_c(self) -> float:
        return self.ambient_c + self.top_oil_rise_c

    @property
    def hot_spot_c(self) -> float:
        return self.top_oil_c + self.hot_spot_rise_c


@dataclass(frozen=True)
class TransformerReadings:
    """What the field instruments show (the top-oil sensor may drift); temperatures in °C."""

    top_oil_c: float
    hot_spot_c: float
    ambient_c: float
    load_current_a: float
    fans_on: bool


def ultimate_top_oil_rise_c(load_pu: float, stage: CoolingStage, rated_rise_c: float) -> float:
    """Δθ_TO,U for a load per unit of the stage's rating (C57.91 Clause 7)."""
    r = stage.loss_ratio
    return rated_rise_c * float(((load_pu * load_pu * r + 1.0) / (r + 1.0)) ** stage.n)


def ultimate_hot_spot_rise_c(load_pu: float, rated_rise_c: float, m: float) -> float:
    """Δθ_H,U for a load per unit of the rating ``rated_rise_c`` belongs to (C57.91 Clause 7)."""
    return rated_rise_c * float(load_pu ** (2.0 * m))


def exponential_step(value: float, ultimate: float, dt_s: float, tau_s: float) -> float:
    """The C57.91 exponential response after ``dt_s``, starting at ``value``, heading for ``ultimate``."""
    return ultimate + (value - ultimate) * math.exp(-dt_s / tau_s)


def pcc_apparent_va(state: PlantState) -> float:
    """The apparent power through the point of common coupling (the transformer's load), VA."""
    return math.hypot(state.meter_w, state.load_var)


class TransformerModel:
    """The thermal model of one transformer, with its scenario events and the plant's clock."""

    def __init__(self, params: TransformerParams, events: tuple[TransformerEvent, ...], start_hour: float) -> None:
        self.params = params
        self.events = events
        self.start_hour = start_hour

    def ambient_c(self, t_s: float) -> float:
        p = self.params
        hour = (self.start_hour + t_s / 3600.0) % 24.0
        daily = p.ambient_amplitude_c * math.cos(2.0 * math.pi * (hour - p.ambient_peak_h) / 24.0)
        return p.ambient_mean_c + daily + heat_wave_rise_c(self.events, t_s)

    def _ultimates(self, load_va: float, fans_on: bool) -> tuple[float, float]:
        p = self.params
        stage = p.stage(fans_on)
        top_oil = ultimate_top_oil_rise_c(load_va / stage.rating_va, stage, p.top_oil_rise_c)
        return top_oil, ultimate_hot_spot_rise_c(load_va / (1000.0 * p.rating_kva), p.hot_spot_rise_c, p.m)

    def _fans(self, fans_on: bool, top_oil_c: float, failed: bool) -> bool:
        p = self.params
        if p.cooling is Cooling.ONAN or failed:
            return False
        if top_oil_c > p.fan_on_top_oil_c:
            return True
        if top_oil_c < p.fan_off_top_oil_c:
            return False
        return fans_on

    def _state(
        self, t_s: float, load_va: float, voltage_v: float, rises: tuple[float, float], fans: bool
    ) -> TransformerState:
        return TransformerState(
            t_s=t_s,
            ambient_c=self.ambient_c(t_s),
            load_va=load_va,
            load_pu=load_va / (1000.0 * self.params.rating_kva),
            load_current_a=load_va / (3.0 * voltage_v) if voltage_v > 0.0 else 0.0,
            top_oil_rise_c=rises[0],
            hot_spot_rise_c=rises[1],
            fans_on=fans,
            fans_failed=fans_failed(self.events, t_s),
        )

    def equilibrium(self, t_s: float, load_va: float, voltage_v: float) -> TransformerState:
        """The steady state for this load and ambient (fans on if the fans-off steady state needs them)."""
        failed = fans_failed(self.events, t_s)
        rises = self._ultimates(load_va, fans_on=False)
        fans = self._fans(False, self.ambient_c(t_s) + rises[0], failed)
        if fans:
            rises = self._ultimates(load_va, fans_on=True)
        return self._state(t_s, load_va, voltage_v, rises, fans)

    def step(self, state: TransformerState, t_s: float, load_va: float, voltage_v: float) -> TransformerState:
        """Advance from ``state`` to plant time ``t_s`` with ``load_va`` held over the step.

        The cooling stage in force during the step is the one at its start; the fans are then
        switched on the new top-oil temperature.
        """
        dt_s = t_s - state.t_s
        top_u, hot_u = self._ultimates(load_va, state.fans_on)
        stage = self.params.stage(state.fans_on)
        top_rise = exponential_step(state.top_oil_rise_c, top_u, dt_s, stage.tau_oil_s)
        hot_rise = exponential_step(state.hot_spot_rise_c, hot_u, dt_s, 60.0 * self.params.tau_winding_min)
        moved = self._state(t_s, load_va, voltage_v, (top_rise, hot_rise), state.fans_on)
        fans = self._fans(state.fans_on, moved.top_oil_c, moved.fans_failed)
        return moved if fans == state.fans_on else replace(moved, fans_on=fans)

    def readings(self, state: TransformerState) -> TransformerReadings:
        """What the instruments show for ``state``: the top-oil sensor with its drift, the rest true."""
        return TransformerReadings(
            top_oil_c=state.top_oil_c + drift_offset_c(self.events, state.t_s),
            hot_spot_c=state.hot_spot_c,
            ambient_c=state.ambient_c,
            load_current_a=state.load_current_a,
            fans_on=state.fans_on,
        )


class TransformerSimulation:
    """The transformer driven by the plant's steps: owns the current thermal state."""

    def __init__(self, model: TransformerModel, plant: PlantState) -> None:
        self.model = model
        self.state = model.equilibrium(plant.t_s, pcc_apparent_va(plant), plant.voltage_v)

    def advance(self, plant: PlantState) -> TransformerState:
        """Follow the plant to its new step (the load of the step is the one at its end)."""
        self.state = self.model.step(self.state, plant.t_s, pcc_apparent_va(plant), plant.voltage_v)
        return self.state

    def readings(self) -> TransformerReadings:
        return self.model.readings(self.state)
