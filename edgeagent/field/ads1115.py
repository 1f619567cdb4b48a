"""TI ADS1115 16-bit ADC over I2C, and current transformers (CTs) read through it as true RMS.

Registers are 16 bits, MSB first (see `i2c_bus`). A CT measurement samples a block in continuous
mode at the data rate, removes the DC offset (a CT biased at mid-rail, an ADC offset) and takes the
RMS over a whole number of cycles: a partial cycle would bias the RMS by up to several percent.
Every wait goes through the injected `clock`/`sleep`, so an emulator's simulated time can drive it.
"""

from __future__ import annotations

import enum
import errno
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edgeagent.field.i2c_bus import (
    DEFAULT_RETRY,
    ChipReset,
    I2cBus,
    I2cError,
    Implausible,
    RetryPolicy,
    read_register,
    to_signed16,
    with_retries,
    write_register,
)

REG_CONVERSION, REG_CONFIG, REG_LO_THRESH, REG_HI_THRESH = 0x00, 0x01, 0x02, 0x03
FULL_SCALES_V = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256)
DATA_RATES_SPS = (8, 16, 32, 64, 128, 250, 475, 860)
ADDRESSES = range(0x48, 0x4C)
OS_BIT = 0x8000
MODE_SINGLE = 0x0100
COMP_DISABLED = 0x0003  # comparator off, ALERT/RDY high-impedance
RATE_TOLERANCE = 0.1  # the internal oscillator: data rate ±10 %

FloatArray = npt.NDArray[np.float64]


class Mux(enum.IntEnum):
    """Input multiplexer: differential pairs, or one input against GND."""

    AIN0_AIN1 = 0
    AIN0_AIN3 = 1
    AIN1_AIN3 = 2
    AIN2_AIN3 = 3
    AIN0 = 4
    AIN1 = 5
    AIN2 = 6
    AIN3 = 7


@dataclass(frozen=True, slots=True)
class Ads1115Config:
    address: int = 0x48
    mux: Mux = Mux.AIN0_AIN1
    full_scale_v: float = 2.048
    data_rate_sps: int = 860
    continuous: bool = False

    def __post_init__(self) -> None:
        if self.address not in ADDRESSES:
            raise ValueError(f"ADS1115 address must be 0x48-0x4B, got 0x{self.address:02X}")
        if self.full_scale_v not in FULL_SCALES_V:
            raise ValueError(f"ADS1115 full scale must be one of {FULL_SCALES_V} V, got {self.full_scale_v}")
        if self.data_rate_sps not in DATA_RATES_SPS:
            raise ValueError(f"ADS1115 data rate must be one of {DATA_RATES_SPS} SPS, got {self.data_rate_sps}")

    def config_word(self, start: bool = False) -> int:
        """The config register; `start` sets OS, which begins a single-shot conversion."""
        return ((OS_BIT if start else 0) | int(self.mux) << 12 | FULL_SCALES_V.index(self.full_scale_v) << 9
                | (0 if self.continuous else MODE_SINGLE) | DATA_RATES_SPS.index(self.data_rate_sps) << 5
                | COMP_DISABLED)

    @property
    def lsb_v(self) -> float:
        return self.full_scale_v / 32768

    @property
    def period_s(self) -> float:
        return 1.0 / self.data_rate_sps


def decode_conversion_v(word: int, full_scale_v: float) -> float:
    """Volts of a conversion register word: two's complement, full scale = 0x8000 codes."""
    return to_signed16(word & 0xFFFF) * full_scale_v / 32768


class Ads1115:
    """Driver for one ADS1115 input set-up. Blocking: the adapter calls it from a worker thread."""

    def __init__(self, bus: I2cBus, cfg: Ads1115Config, retry: RetryPolicy = DEFAULT_RETRY,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.bus = bus
        self.cfg = cfg
        self.retry = retry
        self.clock = clock
        self.sleep = sleep

    def _what(self, verb: str, register: int) -> str:
        return f"{verb} ADS1115 0x{self.cfg.address:02X} register 0x{register:02X}"

    def _read(self, register: int) -> int:
        return with_retries(lambda: read_register(self.bus, self.cfg.address, register),
                            self._what("reading", register), self.retry)

    def _write(self, register: int, value: int) -> None:
        with_retries(lambda: write_register(self.bus, self.cfg.address, register, value),
                     self._what("writing", register), self.retry)

    def configure(self) -> None:
        """Write the configuration (starting continuous conversions if so configured) and verify it."""
        self._write(REG_CONFIG, self.cfg.config_word())
        self.check_config()
        if self.cfg.continuous:
            self.sleep(self.cfg.period_s * (1 + RATE_TOLERANCE) + 0.0002)

    def check_config(self) -> None:
        """Read the configuration back: 0xFFFF is a floating bus (retried), other changes a reset."""
        expected = self.cfg.config_word() & ~OS_BIT

        def read_checked() -> int:
            word = read_register(self.bus, self.cfg.address, REG_CONFIG)
            if word == 0xFFFF:
                raise Implausible("config register reads 0xFFFF (floating bus?)")
            return word & ~OS_BIT

        got = with_retries(read_checked, self._what("checking", REG_CONFIG), self.retry)
        if got != expected:
            raise ChipReset(f"ADS1115 at 0x{self.cfg.address:02X}: config reads 0x{got:04X}, expected "
                            f"0x{expected:04X} (chip reset?)")

    def read_code(self) -> int:
        """The latest conversion as a signed code."""
        return to_signed16(self._read(REG_CONVERSION))

    def read_v(self) -> float:
        return self.read_code() * self.cfg.lsb_v

    def single_shot_v(self) -> float:
        """Start one conversion, wait for the OS bit to say it is done, return volts."""
        if self.cfg.continuous:
            raise ValueError("single_shot_v needs an ADS1115 configured for single-shot mode")
        self._write(REG_CONFIG, self.cfg.config_word(start=True))
        period = self.cfg.period_s
        limit_s = period * (1 + RATE_TOLERANCE) * 2 + 0.01
        deadline = self.clock() + limit_s
        self.sleep(period * (1 - RATE_TOLERANCE))
        while not self._read(REG_CONFIG) & OS_BIT:
            if self.clock() > deadline:
                raise I2cError(f"ETIMEDOUT (ADS1115 at 0x{self.cfg.address:02X}: conversion not done "
                               f"{limit_s * 1000:.1f} ms after its start)", errno.ETIMEDOUT)
            self.sleep(period / 8)
        return self.read_v()

    def sample(self, duration_s: float) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """Read the conversion register at the data rate for `duration_s` in continuous mode.

        Returns read times (the injected clock) and signed codes. A late read does not cause a
        burst of catch-up reads: the schedule restarts from now."""
        if not self.cfg.continuous:
            raise ValueError("sample needs an ADS1115 configured for continuous mode")
        period = self.cfg.period_s
        n = math.ceil(duration_s / period) + 1
        times = np.empty(n, dtype=np.float64)
        codes = np.empty(n, dtype=np.int64)
        next_t = self.clock()
        for i in range(n):
            codes[i] = self.read_code()
            times[i] = self.clock()
            next_t += period
            delay = next_t - self.clock()
            if delay > 0:
                self.sleep(delay)
            elif delay < -period:
                next_t = self.clock()
        return times, codes


@dataclass(frozen=True, slots=True)
class CtCalibration:
    """Amps on the primary per volt at the ADC. Build with `burden` or `voltage_output`."""

    a_per_v: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a_per_v) and self.a_per_v > 0):
            raise ValueError(f"CT calibration must be > 0 A/V, got {self.a_per_v}")

    @classmethod
    def burden(cls, turns_ratio: float, burden_ohm: float) -> CtCalibration:
        """A current-output CT (e.g. 2000:1) across a burden resistor: I = V / R x turns."""
        if not (math.isfinite(turns_ratio) and turns_ratio > 0):
            raise ValueError(f"CT turns ratio must be > 0, got {turns_ratio}")
        if not (math.isfinite(burden_ohm) and burden_ohm > 0):
            raise ValueError(f"CT burden resistor must be > 0 Ω, got {burden_ohm}")
        return cls(turns_ratio / burden_ohm)

    @classmethod
    def voltage_output(cls, a_per_v: float) -> CtCalibration:
        """A CT with a built-in burden, rated in A per V (a 100 A / 1 V CT is 100 A/V)."""
        return cls(a_per_v)


@dataclass(frozen=True, slots=True)
class RmsResult:
    rms: float
    cycles: int
    samples: int


@dataclass(frozen=True, slots=True)
class CtReading:
    """True RMS primary current over `cycles` whole cycles from `samples` samples; `clipped` when a
    sample hit the ADC's full scale (the RMS is then too low)."""

    rms_a: float
    cycles: int
    samples: int
    t_mono: float
    clipped: bool = False


def _rising_crossings(t: FloatArray, y: FloatArray, nominal_hz: float) -> list[float]:
    """Interpolated upward zero crossings, with a hysteresis of 10 % of the peak against noise."""
    peak = float(np.max(np.abs(y)))
    if peak == 0.0:
        return []
    hysteresis = 0.1 * peak
    min_gap = 0.5 / nominal_hz
    out: list[float] = []
    armed = False
    for i in range(1, len(y)):
        if y[i - 1] < -hysteresis:
            armed = True
        if armed and y[i - 1] < 0.0 <= y[i]:
            tc = float(t[i - 1] + (t[i] - t[i - 1]) * -y[i - 1] / (y[i] - y[i - 1]))
            if not out or tc - out[-1] >= min_gap:
                out.append(tc)
            armed = False
    return out


def _window(t: FloatArray, v: FloatArray, a: float, b: float) -> tuple[FloatArray, FloatArray, int]:
    inside = (t > a) & (t < b)
    tt = np.concatenate(([a], t[inside], [b]))
    vv = np.concatenate(([np.interp(a, t, v)], v[inside], [np.interp(b, t, v)]))
    return tt, vv, int(np.count_nonzero(inside))


def _integral(tt: FloatArray, yy: FloatArray) -> float:
    return float(np.sum((yy[1:] + yy[:-1]) * np.diff(tt)) / 2)


def rms_whole_cycles(t_s: Sequence[float] | FloatArray, v: Sequence[float] | FloatArray,
                     nominal_hz: float) -> RmsResult:
    """RMS of the AC part of `v` (sampled at times `t_s`) over a whole number of cycles.

    The window runs from the first to the last upward zero crossing when those are one nominal
    period apart (within ±25 %), so an off-nominal frequency still gives whole cycles; otherwise
    it is a whole number of nominal periods from the first sample. The DC offset is the mean over
    the same window. Trapezoidal integration copes with uneven read times."""
    t = np.asarray(t_s, dtype=np.float64)
    x = np.asarray(v, dtype=np.float64)
    if not (math.isfinite(nominal_hz) and nominal_hz > 0):
        raise ValueError(f"nominal frequency must be > 0 Hz, got {nominal_hz}")
    if t.shape != x.shape or t.ndim != 1 or len(t) < 3:
        raise ValueError(f"need matching 1-D times and values with at least 3 samples, got {t.shape} and {x.shape}")
    if not (np.all(np.isfinite(t)) and np.all(np.isfinite(x))):
        raise ValueError("samples must be finite")
    if np.any(np.diff(t) <= 0):
        raise ValueError("sample times must increase strictly")
    period = 1.0 / nominal_hz
    span = float(t[-1] - t[0])
    nominal_cycles = math.floor(span / period + 1e-9)
    if nominal_cycles < 1:
        raise ValueError(f"{span * 1000:.1f} ms of samples is shorter than one {nominal_hz:g} Hz cycle")
    a, b = float(t[0]), float(t[0]) + nominal_cycles * period
    cycles = nominal_cycles
    tt, vv, _ = _window(t, x, a, b)
    dc = _integral(tt, vv) / (b - a)
    crossings = _rising_crossings(t, x - dc, nominal_hz)
    gaps = np.diff(crossings)
    if len(crossings) >= 2 and np.all((gaps > 0.75 * period) & (gaps < 1.25 * period)):
        a, b, cycles = crossings[0], crossings[-1], len(crossings) - 1
    tt, vv, samples = _window(t, x, a, b)
    mean = _integral(tt, vv) / (b - a)
    mean_square = _integral(tt, vv * vv) / (b - a)
    return RmsResult(math.sqrt(max(0.0, mean_square - mean * mean)), cycles, samples)


def measure_ct(adc: Ads1115, ct: CtCalibration, nominal_hz: float = 50.0, cycles: int = 10) -> CtReading:
    """Sample `cycles` (+1.5 for finding crossings) nominal cycles in continuous mode; true RMS in A."""
    if cycles < 1:
        raise ValueError(f"CT measurement needs at least 1 cycle, got {cycles}")
    if not adc.cfg.continuous:
        raise ValueError("CT measurement needs an ADS1115 configured for continuous mode")
    adc.configure()
    t, codes = adc.sample((cycles + 1.5) / nominal_hz)
    adc.check_config()
    result = rms_whole_cycles(t, codes.astype(np.float64) * adc.cfg.lsb_v, nominal_hz)
    clipped = bool(np.any((codes >= 0x7FFF) | (codes <= -0x8000)))
    return CtReading(result.rms * ct.a_per_v, result.cycles, result.samples, float(t[-1]), clipped)
