"""Power-quality waveforms: labelled disturbance windows for training, and a continuous feeder voltage.

Two uses, one set of equations:

* :class:`Generator` draws short windows (default 10 cycles) of the nine classes a power-quality
  classifier learns (:class:`Label`), from the parametric disturbance models that are common in the
  PQ-classification literature, with each parameter drawn uniformly from its IEEE 1159 range.  Samples
  are in per unit of the nominal *peak*: an undisturbed window is ``sin(2 pi f t + phi)``.
* :class:`Feeder` is a long, continuous feeder voltage in volts (slow frequency and level drift,
  harmonics, noise) with sags, swells and interruptions at given times.  Detector tests, the
  benchmark and the HIL plant use it.

Ground truth is exact by construction: an event's ``onset_s``/``duration_s``/``residual_pu`` are the
very numbers the waveform was computed from, and a sample at time ``t`` belongs to the event iff
``onset_s <= t < onset_s + duration_s``.  Randomness comes only from a seeded ``numpy`` generator, so a
seed reproduces every window.  This module uses numpy only and never imports ``edgeagent``: it is the
plant's independent oracle for the daemon's power-quality analytics.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
TWO_PI = 2.0 * math.pi


class Label(enum.Enum):
    """The classes of the power-quality classifier (values are the dataset's label strings)."""

    NORMAL = "normal"
    SAG = "sag"
    SWELL = "swell"
    INTERRUPTION = "interruption"
    HARMONICS = "harmonics"
    FLUCTUATION = "fluctuation"  # flicker: amplitude modulation
    IMPULSIVE = "impulsive"  # impulsive transient
    NOTCH = "notch"
    OSCILLATORY = "oscillatory"  # oscillatory transient


#: Label order of :func:`to_arrays`' integer targets.
LABELS: tuple[Label, ...] = tuple(Label)

#: Residual voltage (pu of nominal) of the rectangular amplitude events, IEEE 1159 Table 2.
#: Draws are uniform in [low, high).
RESIDUAL_RANGE_PU: Mapping[Label, tuple[float, float]] = MappingProxyType({
    Label.SAG: (0.1, 0.9),
    Label.SWELL: (1.1, 1.8),
    Label.INTERRUPTION: (0.0, 0.1),
})
#: Parameter ranges of the other disturbances (all uniform draws).
HARMONICS_THD_RANGE = (0.05, 0.20)  # total of the 3rd, 5th and 7th harmonics; IEEE 1159: 0-20 %
FLICKER_DEPTH_RANGE = (0.05, 0.20)  # amplitude modulation index
FLICKER_HZ_RANGE = (8.0, 25.0)  # IEEE 1159: voltage fluctuations < 25 Hz
IMPULSE_PEAK_RANGE_PU = (0.5, 1.5)  # added peak, either polarity
IMPULSE_RISE_RANGE_S = (0.05e-3, 0.5e-3)  # millisecond class: rise ~0.1 ms
IMPULSE_DURATION_RANGE_S = (1.0e-3, 3.0e-3)  # millisecond class: > 1 ms, onset to half value
NOTCH_DEPTH_RANGE_PU = (0.1, 0.4)
NOTCH_WIDTH_RANGE_CYCLES = (0.01, 0.05)
OSC_MAGNITUDE_RANGE_PU = (0.1, 0.8)
OSC_HZ_RANGE = (300.0, 900.0)  # IEEE 1159: low-frequency oscillatory transient < 5 kHz
OSC_TAU_RANGE_S = (8e-3, 40e-3)
OSC_DURATION_RANGE_CYCLES = (0.5, 3.0)
#: Lowest sample rate: a 900 Hz oscillation needs it to stay below Nyquist with margin.
MIN_RATE_HZ = 2_000.0
MIN_CYCLES = 4


@dataclass(frozen=True)
class Options:
    """How far a window may stray from the textbook: each non-zero field is the bound of a uniform draw.

    ``snr_db_range``: white Gaussian noise with an SNR drawn from this range (None: no noise);
    ``freq_dev_hz``: fundamental frequency drawn from nominal +/- this; ``phase_jump_rad``: the phase
    of a sag, swell or interruption jumps by a draw from +/- this at onset (and back at recovery);
    ``amplitude_dev_pu``: the undisturbed amplitude is drawn from 1 +/- this.
    """

    snr_db_range: tuple[float, float] | None = None
    freq_dev_hz: float = 0.0
    phase_jump_rad: float = 0.0
    amplitude_dev_pu: float = 0.0

    def __post_init__(self) -> None:
        if self.snr_db_range is not None:
            low, high = self.snr_db_range
            if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low <= high):
                raise ValueError(f"snr_db_range must be (low, high) with 0 < low <= high, got {self.snr_db_range}")
        for name in ("freq_dev_hz", "phase_jump_rad", "amplitude_dev_pu"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        if self.amplitude_dev_pu >= 0.1:
            raise ValueError(f"amplitude_dev_pu must be < 0.1 (keeps 'normal' inside 0.9-1.1 pu), "
                             f"got {self.amplitude_dev_pu}")


#: A field-like preset: 20-40 dB SNR, +/-0.5 Hz (EN 50160's 1 %), phase jumps up to 45 degrees, +/-5 %.
HARSH = Options(snr_db_range=(20.0, 40.0), freq_dev_hz=0.5, phase_jump_rad=math.pi / 4, amplitude_dev_pu=0.05)


@dataclass(frozen=True)
class Window:
    """One labelled window.  ``samples`` are pu of the nominal peak (read-only array).

    ``onset_s``/``duration_s`` locate the disturbance from the window's first sample (None for
    ``normal``; the whole window for harmonics and fluctuation; the first notch and one notch's
    width for notches; onset to half value for an impulse).  ``residual_pu`` is the RMS during a
    sag, swell or interruption relative to nominal, None for the other labels.  ``params`` holds every
    drawn parameter (frequency, phase, amplitude, SNR and the label's own).
    """

    samples: FloatArray
    label: Label
    rate_hz: float
    nominal_hz: float
    onset_s: float | None
    duration_s: float | None
    residual_pu: float | None
    params: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class _Draw:
    """What the label builders get: the time axis, the undisturbed phase and amplitude, the rng."""

    rng: np.random.Generator
    t_s: FloatArray
    theta: FloatArray
    amplitude: float
    freq_hz: float
    period_s: float  # nominal period: durations are counted in nominal cycles
    window_s: float
    phase_jump_rad: float


_Built = tuple[FloatArray, float | None, float | None, float | None, dict[str, float]]


def _amplitude_event(label: Label) -> Callable[[_Draw], _Built]:
    """Sag, swell, interruption: a rectangular change of the envelope between t1 and t2."""

    def build(d: _Draw) -> _Built:
        low, high = RESIDUAL_RANGE_PU[label]
        residual = float(d.rng.uniform(low, high))
        cycles = d.window_s / d.period_s
        duration = float(d.rng.uniform(1.0, cycles - 2.0)) * d.period_s
        onset = float(d.rng.uniform(d.period_s, d.window_s - d.period_s - duration))
        jump = float(d.rng.uniform(-d.phase_jump_rad, d.phase_jump_rad)) if d.phase_jump_rad else 0.0
        inside = (d.t_s >= onset) & (d.t_s < onset + duration)
        v = np.where(inside, residual, d.amplitude) * np.sin(d.theta + np.where(inside, jump, 0.0))
        return v, onset, duration, residual, {"phase_jump_rad": jump}

    return build


def _normal(d: _Draw) -> _Built:
    return d.amplitude * np.sin(d.theta), None, None, None, {}


def _harmonics(d: _Draw) -> _Built:
    thd = float(d.rng.uniform(*HARMONICS_THD_RANGE))
    shares = d.rng.dirichlet(np.ones(3))  # how the distortion power splits over the 3rd, 5th and 7th
    v = np.sin(d.theta)
    params = {"thd": thd}
    for order, share in zip((3, 5, 7), shares, strict=True):
        magnitude = thd * math.sqrt(float(share))
        v = v + magnitude * np.sin(order * d.theta + d.rng.uniform(0.0, TWO_PI))
        params[f"h{order}_pu"] = magnitude
    return d.amplitude * v, 0.0, d.window_s, None, params


def _fluctuation(d: _Draw) -> _Built:
    depth = float(d.rng.uniform(*FLICKER_DEPTH_RANGE))
    flicker_hz = float(d.rng.uniform(*FLICKER_HZ_RANGE))
    modulation = 1.0 + depth * np.sin(TWO_PI * flicker_hz * d.t_s + d.rng.uniform(0.0, TWO_PI))
    v = d.amplitude * modulation * np.sin(d.theta)
    return v, 0.0, d.window_s, None, {"depth_pu": depth, "flicker_hz": flicker_hz}


def _impulsive(d: _Draw) -> _Built:
    """A unipolar impulse added to the wave: linear rise, then exponential decay through half value at ``duration``."""
    peak = float(d.rng.uniform(*IMPULSE_PEAK_RANGE_PU)) * (1.0 if d.rng.random() < 0.5 else -1.0)
    rise = float(d.rng.uniform(*IMPULSE_RISE_RANGE_S))
    duration = float(d.rng.uniform(*IMPULSE_DURATION_RANGE_S))
    onset = float(d.rng.uniform(d.period_s, d.window_s - 2.0 * d.period_s))
    tau = d.t_s - onset
    decay = np.exp(-math.log(2.0) * np.maximum(tau - rise, 0.0) / (duration - rise))
    shape = np.where(tau < 0.0, 0.0, np.where(tau < rise, tau / rise, decay))
    v = d.amplitude * np.sin(d.theta) + peak * shape
    return v, onset, duration, None, {"peak_pu": peak, "rise_s": rise}


def _notch(d: _Draw) -> _Built:
    """Commutation notches: every half cycle, at a fixed angle after the zero crossing, |v| drops by ``depth``."""
    depth = float(d.rng.uniform(*NOTCH_DEPTH_RANGE_PU))
    width = float(d.rng.uniform(*NOTCH_WIDTH_RANGE_CYCLES)) * d.period_s
    width_rad = TWO_PI * d.freq_hz * width
    angle = float(d.rng.uniform(0.0, math.pi - width_rad))
    onset = ((angle - float(d.theta[0])) % math.pi) / (TWO_PI * d.freq_hz)
    in_notch = (d.t_s >= onset) & ((d.theta - angle) % math.pi < width_rad)
    v = d.amplitude * np.sin(d.theta)
    v = np.where(in_notch, np.sign(v) * np.maximum(np.abs(v) - depth * d.amplitude, 0.0), v)
    return v, onset, width, None, {"depth_pu": depth, "angle_rad": angle}


def _oscillatory(d: _Draw) -> _Built:
    magnitude = float(d.rng.uniform(*OSC_MAGNITUDE_RANGE_PU))
    osc_hz = float(d.rng.uniform(*OSC_HZ_RANGE))
    tau_s = float(d.rng.uniform(*OSC_TAU_RANGE_S))
    duration = float(d.rng.uniform(*OSC_DURATION_RANGE_CYCLES)) * d.period_s
    onset = float(d.rng.uniform(d.period_s, d.window_s - d.period_s - duration))
    since = d.t_s - onset
    inside = (since >= 0.0) & (since < duration)
    ring = magnitude * np.exp(-np.maximum(since, 0.0) / tau_s) * np.sin(TWO_PI * osc_hz * since)
    v = d.amplitude * (np.sin(d.theta) + np.where(inside, ring, 0.0))
    return v, onset, duration, None, {"magnitude_pu": magnitude, "osc_hz": osc_hz, "tau_s": tau_s}


_BUILDERS: Mapping[Label, Callable[[_Draw], _Built]] = MappingProxyType({
    Label.NORMAL: _normal,
    Label.SAG: _amplitude_event(Label.SAG),
    Label.SWELL: _amplitude_event(Label.SWELL),
    Label.INTERRUPTION: _amplitude_event(Label.INTERRUPTION),
    Label.HARMONICS: _harmonics,
    Label.FLUCTUATION: _fluctuation,
    Label.IMPULSIVE: _impulsive,
    Label.NOTCH: _notch,
    Label.OSCILLATORY: _oscillatory,
})


class Generator:
    """Seeded source of labelled windows: the same seed and the same calls give the same windows."""

    def __init__(self, seed: int, *, rate_hz: float = 10_000.0, nominal_hz: float = 50.0, cycles: int = 10,
                 options: Options = Options()) -> None:
        if not (math.isfinite(rate_hz) and rate_hz >= MIN_RATE_HZ):
            raise ValueError(f"rate_hz must be >= {MIN_RATE_HZ:g} (900 Hz transients), got {rate_hz}")
        if not (math.isfinite(nominal_hz) and 0.0 < nominal_hz <= rate_hz / 32.0):
            raise ValueError(f"nominal_hz must be > 0 and give >= 32 samples per cycle, got {nominal_hz}")
        if int(cycles) != cycles or cycles < MIN_CYCLES:
            raise ValueError(f"cycles must be an integer >= {MIN_CYCLES}, got {cycles}")
        if not isinstance(options, Options):
            raise ValueError(f"options must be an Options (e.g. waveforms.HARSH), got {options!r}")
        self.rate_hz = float(rate_hz)
        self.nominal_hz = float(nominal_hz)
        self.cycles = int(cycles)
        self.options = options
        self.n_samples = round(self.cycles * self.rate_hz / self.nominal_hz)
        self._rng = np.random.default_rng(seed)

    def window(self, label: Label | str) -> Window:
        """Draw one window of ``label``."""
        label = Label(label)
        rng, opt = self._rng, self.options
        t_s = np.arange(self.n_samples) / self.rate_hz
        freq_hz = self.nominal_hz + (float(rng.uniform(-opt.freq_dev_hz, opt.freq_dev_hz)) if opt.freq_dev_hz else 0.0)
        phase = float(rng.uniform(0.0, TWO_PI))
        amplitude = 1.0 + (float(rng.uniform(-opt.amplitude_dev_pu, opt.amplitude_dev_pu))
                           if opt.amplitude_dev_pu else 0.0)
        draw = _Draw(rng, t_s, TWO_PI * freq_hz * t_s + phase, amplitude, freq_hz, 1.0 / self.nominal_hz,
                     self.n_samples / self.rate_hz, opt.phase_jump_rad)
        samples, onset_s, duration_s, residual_pu, own = _BUILDERS[label](draw)
        params = {"freq_hz": freq_hz, "phase_rad": phase, "amplitude_pu": amplitude, **own}
        if opt.snr_db_range is not None:
            snr_db = float(rng.uniform(*opt.snr_db_range))
            noise_std = math.sqrt(float(np.mean(samples * samples)) / 10.0 ** (snr_db / 10.0))
            samples = samples + rng.normal(0.0, noise_std, self.n_samples)
            params["snr_db"] = snr_db
        samples = np.ascontiguousarray(samples, dtype=np.float64)
        samples.flags.writeable = False
        return Window(samples, label, self.rate_hz, self.nominal_hz, onset_s, duration_s, residual_pu,
                      MappingProxyType(params))

    def windows(self, per_label: int, labels: Iterable[Label | str] = LABELS) -> list[Window]:
        """``per_label`` windows of each label, interleaved (one of each, then the next round)."""
        if per_label < 0:
            raise ValueError(f"per_label must be >= 0, got {per_label}")
        chosen = [Label(label) for label in labels]
        return [self.window(label) for _ in range(per_label) for label in chosen]


def to_arrays(windows: Iterable[Window]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Stack windows for training: ``(x[n, samples] float32, y[n] int64)``, y indexing :data:`LABELS`."""
    items = list(windows)
    if not items:
        raise ValueError("to_arrays needs at least one window")
    lengths = {w.samples.shape[0] for w in items}
    if len(lengths) != 1:
        raise ValueError(f"windows differ in length ({sorted(lengths)}): make them with one Generator setting")
    x = np.stack([w.samples for w in items]).astype(np.float32)
    y = np.array([LABELS.index(w.label) for w in items], dtype=np.int64)
    return x, y


# --------------------------------------------------------------------------------------------- feeder

FEEDER_EVENT_LABELS = frozenset({Label.SAG, Label.SWELL, Label.INTERRUPTION})


@dataclass(frozen=True)
class FeederEvent:
    """A rectangular RMS event on the feeder: the level is ``residual_pu`` of nominal in [start, start + duration).

    ``kind`` gives the direction (SAG below 1 pu, SWELL above, INTERRUPTION below 0.1 pu); whether
    a shallow one reaches a detector's threshold is up to ``residual_pu``.
    """

    kind: Label
    start_s: float
    duration_s: float
    residual_pu: float
    phase_jump_rad: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FEEDER_EVENT_LABELS:
            raise ValueError(f"FeederEvent kind must be sag, swell or interruption, got {self.kind}")
        for name in ("start_s", "duration_s", "residual_pu", "phase_jump_rad"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"FeederEvent {name} must be finite, got {getattr(self, name)}")
        if self.start_s < 0.0 or self.duration_s <= 0.0:
            raise ValueError(f"FeederEvent needs start_s >= 0 and duration_s > 0, got {self.start_s}, "
                             f"{self.duration_s}")
        ok = {Label.SAG: 0.0 <= self.residual_pu < 1.0, Label.SWELL: self.residual_pu > 1.0,
              Label.INTERRUPTION: 0.0 <= self.residual_pu < 0.1}[self.kind]
        if not ok:
            raise ValueError(f"FeederEvent residual_pu {self.residual_pu} does not fit kind {self.kind.value}")

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True)
class Feeder:
    """A feeder's voltage in volts, as a pure function of time (plus optional noise).

    Frequency ``nominal_hz + freq_offset_hz + freq_drift_hz * sin(2 pi t / freq_drift_period_s)``; level
    ``level_pu + level_drift_pu * sin(2 pi t / level_drift_period_s)`` of ``nominal_rms_v`` (replaced by an
    event's residual during the event); harmonics as ``(order, pu of the fundamental)`` locked to the
    fundamental's phase; noise with ``snr_db`` relative to the nominal RMS (so it does not shrink in a sag).
    """

    rate_hz: float = 10_000.0
    nominal_hz: float = 50.0
    nominal_rms_v: float = 230.0
    phase_rad: float = 0.0
    freq_offset_hz: float = 0.0
    freq_drift_hz: float = 0.0
    freq_drift_period_s: float = 300.0
    level_pu: float = 1.0
    level_drift_pu: float = 0.0
    level_drift_period_s: float = 600.0
    harmonics: tuple[tuple[int, float], ...] = ()
    snr_db: float | None = None
    events: tuple[FeederEvent, ...] = ()

    def __post_init__(self) -> None:
        for name in ("rate_hz", "nominal_hz", "nominal_rms_v", "freq_drift_period_s", "level_drift_period_s",
                     "level_pu"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"Feeder {name} must be finite and > 0, got {value}")
        for name in ("phase_rad", "freq_offset_hz", "freq_drift_hz", "level_drift_pu"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"Feeder {name} must be finite, got {getattr(self, name)}")
        top_order = max((order for order, _ in self.harmonics), default=1)
        if self.rate_hz < max(16.0 * self.nominal_hz, 2.5 * top_order * self.nominal_hz):
            raise ValueError(f"Feeder rate_hz {self.rate_hz} is too low for {self.nominal_hz} Hz with harmonics "
                             f"up to order {top_order}")
        for order, magnitude in self.harmonics:
            if int(order) != order or order < 2 or not (math.isfinite(magnitude) and magnitude >= 0.0):
                raise ValueError(f"Feeder harmonics need integer order >= 2 and magnitude >= 0, "
                                 f"got {(order, magnitude)}")
        if self.snr_db is not None and not (math.isfinite(self.snr_db) and self.snr_db > 0.0):
            raise ValueError(f"Feeder snr_db must be > 0 or None, got {self.snr_db}")
        for before, after in zip(self.events, self.events[1:], strict=False):
            if after.start_s < before.end_s:
                raise ValueError(f"Feeder events must be sorted and not overlap: {before} then {after}")

    def voltage_v(self, t_s: npt.ArrayLike, rng: np.random.Generator | None = None) -> FloatArray:
        """The instantaneous voltage at times ``t_s`` (s); noise only if ``rng`` is given and ``snr_db`` set."""
        t = np.asarray(t_s, dtype=np.float64)
        theta = TWO_PI * (self.nominal_hz + self.freq_offset_hz) * t + self.phase_rad
        if self.freq_drift_hz:
            period = self.freq_drift_period_s
            theta = theta + self.freq_drift_hz * period * (1.0 - np.cos(TWO_PI * t / period))
        level: FloatArray = np.full_like(t, self.level_pu)
        if self.level_drift_pu:
            level = level + self.level_drift_pu * np.sin(TWO_PI * t / self.level_drift_period_s)
        if t.size and self.events:
            first, last = float(t.min()), float(t.max())
            for event in self.events:
                if event.start_s <= last and event.end_s > first:
                    inside = (t >= event.start_s) & (t < event.end_s)
                    level = np.where(inside, event.residual_pu, level)
                    if event.phase_jump_rad:
                        theta = theta + np.where(inside, event.phase_jump_rad, 0.0)
        wave = np.sin(theta)
        for order, magnitude in self.harmonics:
            wave = wave + magnitude * np.sin(order * theta)
        v: FloatArray = math.sqrt(2.0) * self.nominal_rms_v * level * wave
        if rng is not None and self.snr_db is not None:
            v = v + rng.normal(0.0, self.nominal_rms_v / 10.0 ** (self.snr_db / 20.0), t.shape)
        return v

    def chunks(self, duration_s: float, *, chunk_s: float = 1.0, seed: int = 0) -> Iterator[FloatArray]:
        """The first ``duration_s`` seconds as consecutive sample blocks of ``chunk_s`` (the last may be shorter)."""
        if not (math.isfinite(duration_s) and duration_s >= 0.0):
            raise ValueError(f"duration_s must be finite and >= 0, got {duration_s}")
        if not (math.isfinite(chunk_s) and chunk_s > 0.0):
            raise ValueError(f"chunk_s must be finite and > 0, got {chunk_s}")
        rng = np.random.default_rng(seed)
        total = round(duration_s * self.rate_hz)
        step = max(1, round(chunk_s * self.rate_hz))
        for first in range(0, total, step):
            yield self.voltage_v(np.arange(first, min(first + step, total)) / self.rate_hz, rng)

    def signal(self, duration_s: float, *, seed: int = 0) -> FloatArray:
        """The first ``duration_s`` seconds in one array (sample ``i`` at ``i / rate_hz``)."""
        return np.concatenate([np.empty(0), *self.chunks(duration_s, chunk_s=max(duration_s, 1.0), seed=seed)])
