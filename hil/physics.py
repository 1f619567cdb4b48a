"""Plant physics: PV, site load, battery and the point of common coupling.  No I/O.

Everything here is a pure function of its arguments (the random draws are passed in as
:class:`Noise`), so a run is reproducible from the scenario seed and the sequence of
commands.  Time is *plant time*: seconds since the scenario start, advanced in fixed steps.

Sign conventions (the same on every device of the plant):

* meter power is positive when the site **imports** from the grid, negative when it exports;
* battery power is positive when the battery **discharges** into the AC bus, negative when
  it charges;
* PV power is always >= 0.

so that ``meter_w == load_w - pv_w - bess_w`` holds exactly at every step.

The battery answers its setpoint like a real power conversion system: the setpoint commanded
for the step starting at plant time ``t`` takes effect ``bess_dead_time_s`` later (a delay line
of commanded setpoints), the power reference follows it as a first-order lag (``bess_tau_s``),
the power follows the reference within the ramp limit, and the rating and the SoC limits cut
it off as before.  The delay line lives in :class:`PlantState` (``bess_pending``), so
:func:`step` stays pure.  With the defaults (no dead time, no lag) the battery behaves exactly
as a ramp-limited source.

The battery's module temperature follows, with ``bess_thermal_tau_s``, a steady value of
``ambient_c + bess_heating_c * (|P| / rated)^2`` plus the rise of any active heat event.
Physics events (:mod:`hil.events`) are part of :class:`PlantParams` and timed in plant seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from hil.events import PhysicsEvent, heat_rise_c, load_delta_w

#: Fraction of the PV array's kWp delivered at the peak of a clear day (soiling, heat, wiring).
PV_PERFORMANCE_RATIO = 0.85
#: Load power factor (lagging); PV and battery run at unity power factor.
LOAD_POWER_FACTOR = 0.95
#: Correlation times (plant seconds) of the slow random processes.
LOAD_NOISE_TAU_S = 60.0
FREQ_NOISE_TAU_S = 10.0
VOLT_NOISE_TAU_S = 20.0
#: Relative size of the random processes.
LOAD_NOISE_REL = 0.05
FREQ_NOISE_HZ = 0.02
VOLT_NOISE_REL = 0.003
#: Voltage rise per unit of exported power relative to the site rating (a weak feeder).
VOLT_PER_UNIT_EXPORT = 0.02


@dataclass(frozen=True)
class SiteParams:
    """Ratings and time constants of the site (the ``[site]`` table of a scenario)."""

    pv_kwp: float = 100.0
    inverter_kw: float | None = None  # None: same as pv_kwp
    load_peak_kw: float = 60.0
    bess_kwh: float = 200.0
    bess_kw: float = 100.0
    soc_initial_pct: float = 50.0
    soc_min_pct: float = 5.0
    soc_max_pct: float = 95.0
    bess_efficiency: float = 0.95  # one-way, applied on charge and on discharge
    bess_ramp_w_per_s: float = 20000.0
    bess_dead_time_s: float = 0.0  # from a setpoint on the wire to the start of the response
    bess_tau_s: float = 0.0  # first-order lag of the power reference after the dead time
    inverter_tau_s: float = 2.0
    ambient_c: float = 25.0
    bess_heating_c: float = 10.0  # steady rise above ambient at rated power, scales with (|P|/rated)^2
    bess_thermal_tau_s: float = 600.0
    nominal_voltage_v: float = 230.0  # phase to neutral
    nominal_frequency_hz: float = 50.0
    sunrise_h: float = 5.25
    sunset_h: float = 21.5
    step_s: float = 0.1

    @property
    def inverter_w(self) -> float:
        return 1000.0 * (self.pv_kwp if self.inverter_kw is None else self.inverter_kw)

    @property
    def rating_w(self) -> float:
        """A reference power for the site, used to size voltage rise and scale factors."""
        return 1000.0 * max(self.load_peak_kw, self.pv_kwp, self.bess_kw)


@dataclass(frozen=True)
class WeatherParams:
    """Cloud passes (the ``[weather]`` table of a scenario); 0 passes per hour = clear sky."""

    cloud_passes_per_hour: float = 0.0
    cloud_depth: float = 0.6  # mean fraction of irradiance a cloud takes away at its centre
    cloud_duration_s: float = 300.0  # mean duration of one pass


@dataclass(frozen=True)
class PlantParams:
    """Everything the physics needs: site, weather, seed and the hour of day at t = 0."""

    site: SiteParams = SiteParams()
    weather: WeatherParams = WeatherParams()
    seed: int = 0
    start_hour: float = 11.0
    events: tuple[PhysicsEvent, ...] = ()


@dataclass(frozen=True)
class Commands:
    """What the devices' controls ask of the physics for one step."""

    pv_limit_pct: float = 100.0  # % of the inverter rating
    pv_connected: bool = True
    bess_setpoint_w: float = 0.0  # positive = discharge


@dataclass(frozen=True)
class Noise:
    """Standard-normal draws for one step (drawn outside so that :func:`step` stays pure)."""

    load: float = 0.0
    freq: float = 0.0
    volt: float = 0.0


@dataclass(frozen=True)
class PlantState:
    """The plant at plant time ``t_s``.  Powers in W, energies in Wh."""

    t_s: float
    pv_available_w: float
    pv_w: float
    load_w: float
    load_var: float
    bess_w: float
    soc_pct: float
    meter_w: float
    voltage_v: float
    frequency_hz: float
    import_wh: float
    export_wh: float
    pv_wh: float
    bess_charged_wh: float
    bess_discharged_wh: float
    load_noise: float = 0.0
    freq_noise: float = 0.0
    volt_noise: float = 0.0
    bess_temp_c: float = 25.0
    # The commands the step that produced this state ran with (as on the wire).
    pv_limit_pct: float = 100.0
    bess_setpoint_w: float = 0.0
    # Battery control internals: the setpoint in force after the dead time, the lagged power
    # reference, and the delay line of (commanded at t_s, setpoint_w) not yet in force.
    bess_applied_w: float = 0.0
    bess_reference_w: float = 0.0
    bess_pending: tuple[tuple[float, float], ...] = ()


# -- profiles ---------------------------------------------------------------------------


def hour_of_day(params: PlantParams, t_s: float) -> float:
    return (params.start_hour + t_s / 3600.0) % 24.0


def clear_sky_fraction(hour: float, sunrise_h: float, sunset_h: float) -> float:
    """Clear-sky output as a fraction of peak: 0 at night, a smooth bell from sunrise to sunset."""
    if hour <= sunrise_h or hour >= sunset_h:
        return 0.0
    x = (hour - sunrise_h) / (sunset_h - sunrise_h)
    return float(math.sin(math.pi * x) ** 1.5)


@lru_cache(maxsize=256)
def _cloud_passes(seed: int, hour_index: int, weather: WeatherParams) -> tuple[tuple[float, float, float], ...]:
    """The cloud passes starting within plant hour ``hour_index``: (start_s, duration_s, depth).

    Generated per hour from (seed, hour) so that the cloud field is a pure function of plant
    time, whatever the step size or the order of evaluation.
    """
    rng = np.random.default_rng([seed, 0x434C4F55, hour_index + (1 << 32)])  # seeds must be >= 0
    count = int(rng.poisson(weather.cloud_passes_per_hour))
    passes = []
    for _ in range(count):
        start = hour_index * 3600.0 + float(rng.uniform(0.0, 3600.0))
        duration = weather.cloud_duration_s * float(rng.uniform(0.5, 1.5))
        depth = min(1.0, weather.cloud_depth * float(rng.uniform(0.6, 1.4)))
        passes.append((start, duration, depth))
    return tuple(passes)


def cloud_factor(params: PlantParams, t_s: float) -> float:
    """Fraction of clear-sky irradiance that gets through the clouds at plant time ``t_s``."""
    weather = params.weather
    if weather.cloud_passes_per_hour <= 0.0:
        return 1.0
    hour_index = math.floor(t_s / 3600.0)
    factor = 1.0
    # A pass lasts at most 1.5 x the mean duration (<= 1 h, enforced by the scenario), so
    # only passes that started in this hour or the previous one can cover t_s.
    for index in (hour_index - 1, hour_index):
        for start, duration, depth in _cloud_passes(params.seed, index, weather):
            if start <= t_s < start + duration:
                factor *= 1.0 - depth * math.sin(math.pi * (t_s - start) / duration) ** 2
    return factor


def pv_available_w(params: PlantParams, t_s: float) -> float:
    """What the PV array could deliver now (before the inverter's rating and limits)."""
    site = params.site
    clear = clear_sky_fraction(hour_of_day(params, t_s), site.sunrise_h, site.sunset_h)
    if clear == 0.0:
        return 0.0
    return 1000.0 * site.pv_kwp * PV_PERFORMANCE_RATIO * clear * cloud_factor(params, t_s)


def _bump(hour: float, centre: float, width: float) -> float:
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (d / width) ** 2)


def _raw_load_shape(hour: float) -> float:
    return 0.35 + 0.40 * _bump(hour, 7.5, 1.5) + 0.65 * _bump(hour, 19.0, 2.0)


_LOAD_SHAPE_MAX = max(_raw_load_shape(i / 100.0) for i in range(2400))


def load_shape(hour: float) -> float:
    """Daily load shape, peak 1.0: a base, a morning peak (~7:30) and an evening peak (~19:00)."""
    return _raw_load_shape(hour) / _LOAD_SHAPE_MAX


# -- dynamics ---------------------------------------------------------------------------


def first_order(value: float, target: float, dt: float, tau: float) -> float:
    """Exact discrete first-order lag: stable for any step, reaches 63 % of a step in ``tau``."""
    if tau <= 0.0:
        return target
    return target + (value - target) * math.exp(-dt / tau)


def ou_step(x: float, noise: float, dt: float, tau: float) -> float:
    """Ornstein-Uhlenbeck process with unit stationary variance (smooth, bounded-ish noise)."""
    a = math.exp(-dt / tau)
    return a * x + math.sqrt(1.0 - a * a) * noise


def delay_setpoint(
    pending: tuple[tuple[float, float], ...], applied_w: float, t_s: float, setpoint_w: float, dead_time_s: float
) -> tuple[float, tuple[tuple[float, float], ...]]:
    """Push the setpoint commanded at ``t_s`` into the delay line; return the setpoint in force
    for the step starting at ``t_s`` (the latest one commanded at least ``dead_time_s`` ago,
    else ``applied_w``) and the entries still pending.

    A setpoint equal to the one before it is not queued again, so the line stays short however
    long the dead time is compared with the step.
    """
    last = pending[-1][1] if pending else applied_w
    queue = pending if setpoint_w == last else (*pending, (t_s, setpoint_w))
    due_t = t_s - dead_time_s + 1e-9
    count = 0
    while count < len(queue) and queue[count][0] <= due_t:
        applied_w = queue[count][1]
        count += 1
    return applied_w, queue[count:]


def bess_temperature_c(temp_c: float, bess_w: float, t_s: float, params: PlantParams, dt: float) -> float:
    """Module temperature after one step: first-order towards ambient + I^2R heating + heat events."""
    site = params.site
    load = bess_w / (1000.0 * site.bess_kw)
    target = site.ambient_c + site.bess_heating_c * load * load + heat_rise_c(params.events, t_s)
    return first_order(temp_c, target, dt, site.bess_thermal_tau_s)


def bess_step(bess_w: float, soc_pct: float, setpoint_w: float, site: SiteParams, dt: float) -> tuple[float, float]:
    """Battery power and SoC after one step: clamp to ratings, ramp, stop at the SoC limits."""
    rated = 1000.0 * site.bess_kw
    target = min(max(setpoint_w, -rated), rated)
    if (soc_pct >= site.soc_max_pct and target < 0.0) or (soc_pct <= site.soc_min_pct and target > 0.0):
        target = 0.0
    max_delta = site.bess_ramp_w_per_s * dt
    power = bess_w + min(max(target - bess_w, -max_delta), max_delta)
    # The BMS cuts off at once at a limit, whatever the ramp.
    if (soc_pct >= site.soc_max_pct and power < 0.0) or (soc_pct <= site.soc_min_pct and power > 0.0):
        power = 0.0
    capacity_wh = 1000.0 * site.bess_kwh
    if power >= 0.0:
        energy_wh = -power * dt / 3600.0 / site.bess_efficiency
        soc = max(soc_pct + 100.0 * energy_wh / capacity_wh, min(site.soc_min_pct, soc_pct))
    else:
        energy_wh = -power * dt / 3600.0 * site.bess_efficiency
        soc = min(soc_pct + 100.0 * energy_wh / capacity_wh, max(site.soc_max_pct, soc_pct))
    return power, soc


def initial_state(params: PlantParams, rng: np.random.Generator) -> PlantState:
    """The plant at t = 0 in steady state (inverter tracking, battery idle)."""
    site = params.site
    available = pv_available_w(params, 0.0)
    pv = min(available, site.inverter_w)
    base_load = 1000.0 * site.load_peak_kw * load_shape(hour_of_day(params, 0.0))
    load = max(0.0, base_load + load_delta_w(params.events, 0.0))
    return PlantState(
        t_s=0.0,
        pv_available_w=available,
        pv_w=pv,
        load_w=load,
        load_var=load * math.tan(math.acos(LOAD_POWER_FACTOR)),
        bess_w=0.0,
        soc_pct=site.soc_initial_pct,
        meter_w=load - pv,
        voltage_v=site.nominal_voltage_v * (1.0 - VOLT_PER_UNIT_EXPORT * (load - pv) / site.rating_w),
        frequency_hz=site.nominal_frequency_hz,
        import_wh=float(rng.uniform(1.0e6, 5.0e6)),
        export_wh=float(rng.uniform(1.0e5, 1.0e6)),
        pv_wh=float(rng.uniform(1.0e5, 1.0e6)),
        bess_charged_wh=float(rng.uniform(1.0e4, 1.0e5)),
        bess_discharged_wh=0.0,
        bess_temp_c=site.ambient_c + heat_rise_c(params.events, 0.0),
    )


def step(state: PlantState, params: PlantParams, commands: Commands, noise: Noise) -> PlantState:
    """Advance the plant by one fixed step of ``params.site.step_s`` plant seconds."""
    site = params.site
    dt = site.step_s
    t = state.t_s + dt
    hour = hour_of_day(params, t)

    available = pv_available_w(params, t)
    limit = site.inverter_w * min(max(commands.pv_limit_pct, 0.0), 100.0) / 100.0
    pv_target = min(available, site.inverter_w, limit) if commands.pv_connected else 0.0
    pv = min(first_order(state.pv_w, pv_target, dt, site.inverter_tau_s), available)

    load_noise = ou_step(state.load_noise, noise.load, dt, LOAD_NOISE_TAU_S)
    # A load step adds to (or removes from) the load that the noise modulates: a consumer that
    # switches off takes its share of the fluctuation with it.
    base_load = 1000.0 * site.load_peak_kw * load_shape(hour) + load_delta_w(params.events, t)
    load = max(0.0, base_load * (1.0 + LOAD_NOISE_REL * load_noise))

    applied, pending = delay_setpoint(
        state.bess_pending, state.bess_applied_w, state.t_s, commands.bess_setpoint_w, site.bess_dead_time_s
    )
    rated = 1000.0 * site.bess_kw
    reference = first_order(state.bess_reference_w, min(max(applied, -rated), rated), dt, site.bess_tau_s)
    bess, soc = bess_step(state.bess_w, state.soc_pct, reference, site, dt)
    meter = load - pv - bess

    freq_noise = ou_step(state.freq_noise, noise.freq, dt, FREQ_NOISE_TAU_S)
    volt_noise = ou_step(state.volt_noise, noise.volt, dt, VOLT_NOISE_TAU_S)
    voltage = site.nominal_voltage_v * (
        1.0 - VOLT_PER_UNIT_EXPORT * meter / site.rating_w + VOLT_NOISE_REL * volt_noise
    )
    hours = dt / 3600.0
    return replace(
        state,
        t_s=t,
        pv_available_w=available,
        pv_w=pv,
        load_w=load,
        load_var=load * math.tan(math.acos(LOAD_POWER_FACTOR)),
        bess_w=bess,
        soc_pct=soc,
        meter_w=meter,
        voltage_v=voltage,
        frequency_hz=site.nominal_frequency_hz + FREQ_NOISE_HZ * freq_noise,
        import_wh=state.import_wh + max(meter, 0.0) * hours,
        export_wh=state.export_wh + max(-meter, 0.0) * hours,
        pv_wh=state.pv_wh + pv * hours,
        bess_charged_wh=state.bess_charged_wh + max(-bess, 0.0) * hours,
        bess_discharged_wh=state.bess_discharged_wh + max(bess, 0.0) * hours,
        load_noise=load_noise,
        freq_noise=freq_noise,
        volt_noise=volt_noise,
        bess_temp_c=bess_temperature_c(state.bess_temp_c, bess, t, params, dt),
        pv_limit_pct=commands.pv_limit_pct,
        bess_setpoint_w=commands.bess_setpoint_w,
        bess_applied_w=applied,
        bess_reference_w=reference,
        bess_pending=pending,
    )


class Simulation:
    """The plant driven step by step: owns the seeded random generator and the current state."""

    def __init__(self, params: PlantParams) -> None:
        self.params = params
        self._rng = np.random.default_rng([params.seed, 0x504C4E54])
        self.state = initial_state(params, self._rng)

    def advance(self, commands: Commands) -> PlantState:
        draws = self._rng.standard_normal(3)
        noise = Noise(load=float(draws[0]), freq=float(draws[1]), volt=float(draws[2]))
        self.state = step(self.state, self.params, commands, noise)
        return self.state
