"""TI INA226 shunt/bus monitor over I2C: configuration, calibration, readings, the ALERT function.

All registers are 16 bits, sent MSB first (see `i2c_bus` for the SMBus byte swap). The maths is the
datasheet's: Current_LSB >= I_max / 2^15, CAL = 0.00512 / (Current_LSB x R_shunt) in a 15-bit
register, current register = shunt register x CAL / 2048, power LSB = 25 x Current_LSB.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from edgeagent.field.i2c_bus import (
    DEFAULT_RETRY,
    ChipReset,
    I2cBus,
    Implausible,
    RetryPolicy,
    read_register,
    to_signed16,
    with_retries,
    write_register,
)

REG_CONFIG, REG_SHUNT, REG_BUS, REG_POWER, REG_CURRENT, REG_CALIBRATION = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
REG_MASK_ENABLE, REG_ALERT_LIMIT, REG_MANUFACTURER_ID, REG_DIE_ID = 0x06, 0x07, 0xFE, 0xFF
MANUFACTURER_ID, DIE_ID = 0x5449, 0x2260  # "TI", INA226 die

SHUNT_LSB_V = 2.5e-6
BUS_LSB_V = 1.25e-3
SHUNT_FULL_SCALE_V = 0x8000 * SHUNT_LSB_V  # 81.92 mV
CAL_CONSTANT = 0.00512
CAL_MAX = 0x7FFF  # bit 15 of the calibration register is reserved
POWER_REG_MAX = 0x8000 * 0x7FFF // 20000  # |current| x bus / 20000 can reach no higher
CONFIG_RESERVED = 0x4000  # bits 14-12 read back as 100

AVERAGES = (1, 4, 16, 64, 128, 256, 512, 1024)
CONVERSION_TIMES_US = (140, 204, 332, 588, 1100, 2116, 4156, 8244)
ADDRESSES = range(0x40, 0x50)


class Mode(enum.IntEnum):
    POWER_DOWN = 0
    SHUNT_TRIGGERED = 1
    BUS_TRIGGERED = 2
    BOTH_TRIGGERED = 3
    SHUNT_CONTINUOUS = 5
    BUS_CONTINUOUS = 6
    BOTH_CONTINUOUS = 7

    @property
    def shunt(self) -> bool:
        return bool(self & 1)

    @property
    def bus(self) -> bool:
        return bool(self & 2)

    @property
    def continuous(self) -> bool:
        return bool(self & 4)


class AlertFunction(enum.Enum):
    """What drives the ALERT pin; the mask/enable bit and the unit of `Ina226Alert.limit`."""

    CURRENT_OVER = (15, "A")   # SOL: shunt voltage over limit
    CURRENT_UNDER = (14, "A")  # SUL
    BUS_OVER = (13, "V")       # BOL
    BUS_UNDER = (12, "V")      # BUL
    POWER_OVER = (11, "W")     # POL

    @property
    def mask(self) -> int:
        return 1 << self.value[0]

    @property
    def unit(self) -> str:
        return self.value[1]


CNVR = 1 << 10
AFF, CVRF, OVF, APOL, LEN = 1 << 4, 1 << 3, 1 << 2, 1 << 1, 1 << 0
FUNCTION_BITS = 0xF800


@dataclass(frozen=True, slots=True)
class Ina226Alert:
    """ALERT pin set-up. `limit` is in the function's unit: A for the current functions (converted
    to shunt volts with the shunt resistance), V for bus, W for power. `function` None with
    `conversion_ready` uses the pin only as a conversion-ready signal."""

    function: AlertFunction | None
    limit: float = 0.0
    active_high: bool = False
    latch: bool = False
    conversion_ready: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.limit):
            raise ValueError(f"INA226 alert limit must be a finite number, got {self.limit}")
        if self.function is None and not self.conversion_ready:
            raise ValueError("INA226 alert needs a function or conversion_ready")


@dataclass(frozen=True, slots=True)
class Calibration:
    """The CAL register and the LSBs it implies (`current_lsb_a` is recomputed from the integer CAL,
    so current readings agree exactly with shunt volts / R)."""

    cal: int
    current_lsb_a: float
    power_lsb_w: float


def calibrate(shunt_ohm: float, max_current_a: float, current_lsb_a: float | None = None) -> Calibration:
    """CAL for a shunt and the largest current to measure; `current_lsb_a` defaults to I_max / 2^15.

    Refuses settings the chip cannot honour, with the numbers: a shunt drop at I_max beyond the
    81.92 mV input range, an LSB too small for I_max, a CAL that overflows 15 bits or rounds to 0."""
    if not (math.isfinite(shunt_ohm) and shunt_ohm > 0):
        raise ValueError(f"INA226 shunt resistance must be > 0 Ω, got {shunt_ohm}")
    if not (math.isfinite(max_current_a) and max_current_a > 0):
        raise ValueError(f"INA226 maximum current must be > 0 A, got {max_current_a}")
    drop_v = max_current_a * shunt_ohm
    if drop_v > SHUNT_FULL_SCALE_V:
        raise ValueError(f"INA226: {max_current_a} A through {shunt_ohm} Ω drops {drop_v * 1000:.2f} mV, beyond "
                         f"the ±81.92 mV shunt input; use a smaller shunt or a lower maximum current")
    min_lsb = max_current_a / 2**15
    lsb = min_lsb if current_lsb_a is None else current_lsb_a
    if not (math.isfinite(lsb) and lsb > 0):
        raise ValueError(f"INA226 current LSB must be > 0 A, got {lsb}")
    if lsb < min_lsb * (1 - 1e-9):
        raise ValueError(f"INA226 current LSB {lsb:.6g} A is below I_max / 2^15 = {min_lsb:.6g} A: "
                         f"the current register would overflow before {max_current_a} A")
    exact = CAL_CONSTANT / (lsb * shunt_ohm)
    cal = math.floor(exact + 1e-9)
    if cal > CAL_MAX:
        raise ValueError(f"INA226 CAL = 0.00512 / ({lsb:.6g} A x {shunt_ohm} Ω) = {exact:.0f}, beyond the 15-bit "
                         f"register (max {CAL_MAX}); use current_lsb_a >= {CAL_CONSTANT / (CAL_MAX * shunt_ohm):.6g} A "
                         "or a larger shunt")
    if cal < 1:
        raise ValueError(f"INA226 CAL = 0.00512 / ({lsb:.6g} A x {shunt_ohm} Ω) = {exact:.3g}, which rounds to 0; "
                         f"use current_lsb_a <= {CAL_CONSTANT / shunt_ohm:.6g} A")
    effective = CAL_CONSTANT / (cal * shunt_ohm)
    return Calibration(cal, effective, 25 * effective)


@dataclass(frozen=True, slots=True)
class Ina226Config:
    """One INA226. Times are per conversion; one reading takes averages x (shunt + bus) time."""

    shunt_ohm: float
    max_current_a: float
    address: int = 0x40
    averages: int = 16
    bus_conversion_us: int = 1100
    shunt_conversion_us: int = 1100
    mode: Mode = Mode.BOTH_CONTINUOUS
    alert: Ina226Alert | None = None
    current_lsb_a: float | None = None
    calibration: Calibration = field(init=False, compare=False)

    def __post_init__(self) -> None:
        if self.address not in ADDRESSES:
            raise ValueError(f"INA226 address must be 0x40-0x4F, got 0x{self.address:02X}")
        if self.averages not in AVERAGES:
            raise ValueError(f"INA226 averages must be one of {AVERAGES}, got {self.averages}")
        for name, us in (("bus", self.bus_conversion_us), ("shunt", self.shunt_conversion_us)):
            if us not in CONVERSION_TIMES_US:
                raise ValueError(f"INA226 {name} conversion time must be one of {CONVERSION_TIMES_US} µs, got {us}")
        if self.mode is Mode.POWER_DOWN:
            raise ValueError("INA226 mode POWER_DOWN measures nothing; choose a triggered or continuous mode")
        object.__setattr__(self, "calibration", calibrate(self.shunt_ohm, self.max_current_a, self.current_lsb_a))
        if self.alert is not None:
            alert_limit_word(self.alert, self.shunt_ohm, self.calibration)  # refuse a limit out of range now

    @property
    def config_word(self) -> int:
        return (CONFIG_RESERVED | AVERAGES.index(self.averages) << 9
                | CONVERSION_TIMES_US.index(self.bus_conversion_us) << 6
                | CONVERSION_TIMES_US.index(self.shunt_conversion_us) << 3 | int(self.mode))

    @property
    def conversion_s(self) -> float:
        """Time from a trigger (or the previous result) to a new averaged result."""
        per_sample_us = ((self.shunt_conversion_us if self.mode.shunt else 0)
                         + (self.bus_conversion_us if self.mode.bus else 0))
        return self.averages * per_sample_us * 1e-6


def alert_limit_word(alert: Ina226Alert, shunt_ohm: float, cal: Calibration) -> int:
    """The alert limit register for `alert`; ValueError if the limit is outside what it can hold."""
    if alert.function is None:
        return 0
    if alert.function.unit == "A":
        raw, low, high = alert.limit * shunt_ohm / SHUNT_LSB_V, -0x8000, 0x7FFF
    elif alert.function.unit == "V":
        raw, low, high = alert.limit / BUS_LSB_V, 0, 0x7FFF
    else:
        raw, low, high = alert.limit / cal.power_lsb_w, 0, 0xFFFF
    word = round(raw)
    if not low <= word <= high:
        raise ValueError(f"INA226 alert limit {alert.limit} {alert.function.unit} for {alert.function.name} is out of "
                         f"range: register value {word} outside {low}..{high}")
    return word & 0xFFFF


def mask_enable_word(alert: Ina226Alert | None) -> int:
    if alert is None:
        return 0
    return ((alert.function.mask if alert.function else 0) | (CNVR if alert.conversion_ready else 0)
            | (APOL if alert.active_high else 0) | (LEN if alert.latch else 0))


def decode_alert(mask_enable: int, limit_word: int, shunt_ohm: float, cal: Calibration) -> Ina226Alert | None:
    """The alert set-up the two registers hold (highest-priority function wins, as on the chip)."""
    function = next((f for f in AlertFunction if mask_enable & f.mask), None)
    ready = bool(mask_enable & CNVR)
    if function is None and not ready:
        return None
    if function is None:
        limit = 0.0
    elif function.unit == "A":
        limit = to_signed16(limit_word) * SHUNT_LSB_V / shunt_ohm
    elif function.unit == "V":
        limit = limit_word * BUS_LSB_V
    else:
        limit = limit_word * cal.power_lsb_w
    return Ina226Alert(function, limit, bool(mask_enable & APOL), bool(mask_enable & LEN), ready)


def decode_shunt_v(word: int) -> float:
    return to_signed16(word & 0xFFFF) * SHUNT_LSB_V


def decode_bus_v(word: int) -> float:
    if word & 0x8000:
        raise Implausible(f"0x{word:04X} in the bus voltage register, whose bit 15 is always 0 (floating bus?)")
    return word * BUS_LSB_V


def decode_current_a(word: int, cal: Calibration) -> float:
    return to_signed16(word & 0xFFFF) * cal.current_lsb_a


def decode_power_w(word: int, cal: Calibration) -> float:
    if word > POWER_REG_MAX:
        raise Implausible(f"0x{word:04X} in the power register, above the largest possible 0x{POWER_REG_MAX:04X}")
    return word * cal.power_lsb_w


class WrongChip(Exception):
    """The device at the address is not an INA226."""


class NotReady(Exception):
    """No conversion has completed since the chip was configured."""


@dataclass(frozen=True, slots=True)
class Ina226Reading:
    """One reading. `power_w` carries the sign of the current (the chip's power register is |I| x V).
    A quantity the mode does not measure is NaN; `saturated` is set when shunt or current hit full scale,
    `bus_saturated` when the bus input did (40.96 V, beyond the 36 V rating)."""

    bus_v: float
    shunt_v: float
    current_a: float
    power_w: float
    t_mono: float
    saturated: bool = False
    bus_saturated: bool = False


@dataclass(frozen=True, slots=True)
class Ina226Flags:
    alert_function: bool
    conversion_ready: bool
    math_overflow: bool


class Ina226:
    """Driver for one INA226 on a bus. Blocking: the adapter calls it from a worker thread."""

    def __init__(self, bus: I2cBus, cfg: Ina226Config, retry: RetryPolicy = DEFAULT_RETRY,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.bus = bus
        self.cfg = cfg
        self.retry = retry
        self.clock = clock
        self.sleep = sleep
        self._ready_at: float | None = None

    def _where(self, register: int) -> str:
        return f"at INA226 0x{self.cfg.address:02X} register 0x{register:02X}"

    def _read(self, register: int) -> int:
        return with_retries(lambda: read_register(self.bus, self.cfg.address, register),
                            "reading " + self._where(register), self.retry)

    def _write(self, register: int, value: int) -> None:
        with_retries(lambda: write_register(self.bus, self.cfg.address, register, value),
                     "writing " + self._where(register), self.retry)

    def check_ids(self) -> None:
        """Refuse a device that is not an INA226 (an INA219 or INA260 answers at the same addresses)."""
        manufacturer, die = with_retries(self._read_ids, "reading the IDs " + self._where(REG_MANUFACTURER_ID),
                                         self.retry)
        if (manufacturer, die) != (MANUFACTURER_ID, DIE_ID):
            raise WrongChip(f"device at 0x{self.cfg.address:02X} is not an INA226: manufacturer ID 0x{manufacturer:04X}"
                            f" (expected 0x{MANUFACTURER_ID:04X}), die ID 0x{die:04X} (expected 0x{DIE_ID:04X})")

    def _read_ids(self) -> tuple[int, int]:
        ids = (read_register(self.bus, self.cfg.address, REG_MANUFACTURER_ID),
               read_register(self.bus, self.cfg.address, REG_DIE_ID))
        if ids == (0xFFFF, 0xFFFF):
            raise Implausible("IDs read 0xFFFF 0xFFFF (floating bus?)")
        return ids

    def configure(self) -> None:
        """Reset, then write configuration, calibration and alert; verify each by reading it back."""
        cfg = self.cfg
        self._write(REG_CONFIG, 0x8000)
        writes = [(REG_CALIBRATION, cfg.calibration.cal), (REG_ALERT_LIMIT, self._limit_word()),
                  (REG_MASK_ENABLE, mask_enable_word(cfg.alert)), (REG_CONFIG, cfg.config_word)]
        for register, value in writes:
            self._write(register, value)
        self._ready_at = self.clock() + cfg.conversion_s
        for register, value in writes:
            got = self._read(register)
            if register == REG_MASK_ENABLE:
                got &= ~(AFF | CVRF | OVF)
            if got != value:
                raise WrongChip(f"INA226 at 0x{cfg.address:02X}: register 0x{register:02X} reads back 0x{got:04X} "
                                f"after writing 0x{value:04X}")

    def setup(self) -> None:
        self.check_ids()
        self.configure()

    def _limit_word(self) -> int:
        if self.cfg.alert is None:
            return 0
        return alert_limit_word(self.cfg.alert, self.cfg.shunt_ohm, self.cfg.calibration)

    def ready_in_s(self) -> float:
        """Seconds until the first result after `configure()` (0 once there is one)."""
        if self._ready_at is None:
            raise NotReady(f"INA226 at 0x{self.cfg.address:02X} is not configured")
        return max(0.0, self._ready_at - self.clock())

    def read(self, max_wait_s: float = 0.5) -> Ina226Reading:
        """One reading. In a triggered mode, triggers a conversion and waits for it; before the first
        continuous result, waits up to `max_wait_s`, else raises NotReady."""
        if self.cfg.mode.continuous:
            wait = self.ready_in_s()
        else:
            self._write(REG_CONFIG, self.cfg.config_word)
            wait = self.cfg.conversion_s * 1.05 + 0.0005
        if wait > max_wait_s:
            raise NotReady(f"INA226 at 0x{self.cfg.address:02X}: first result in {wait:.2f} s")
        if wait > 0:
            self.sleep(wait)
        return with_retries(self._read_once, "reading " + self._where(REG_SHUNT), self.retry)

    def _read_once(self) -> Ina226Reading:
        a, bus = self.cfg.address, self.bus
        shunt_w, bus_w, current_w, power_w, cal_w = (read_register(bus, a, r) for r in (
            REG_SHUNT, REG_BUS, REG_CURRENT, REG_POWER, REG_CALIBRATION))
        t_mono = self.clock()
        bus_v, power = decode_bus_v(bus_w), decode_power_w(power_w, self.cfg.calibration)
        if cal_w != self.cfg.calibration.cal:
            if cal_w & 0x8000:
                raise Implausible(f"0x{cal_w:04X} in the calibration register, whose bit 15 is always 0")
            raise ChipReset(f"INA226 at 0x{a:02X}: calibration reads 0x{cal_w:04X}, expected "
                            f"0x{self.cfg.calibration.cal:04X} (chip reset?)")
        current = decode_current_a(current_w, self.cfg.calibration)
        mode = self.cfg.mode
        nan = math.nan
        return Ina226Reading(
            bus_v=bus_v if mode.bus else nan,
            shunt_v=decode_shunt_v(shunt_w) if mode.shunt else nan,
            current_a=current if mode.shunt else nan,
            power_w=math.copysign(power, current) if mode.shunt and mode.bus else nan,
            t_mono=t_mono,
            saturated=mode.shunt and (shunt_w in (0x7FFF, 0x8000) or current_w in (0x7FFF, 0x8000)),
            bus_saturated=mode.bus and bus_w == 0x7FFF,
        )

    def read_flags(self) -> Ina226Flags:
        """The mask/enable flags. Reading clears CVRF and, in latch mode, the latched alert."""
        word = self._read(REG_MASK_ENABLE)
        return Ina226Flags(bool(word & AFF), bool(word & CVRF), bool(word & OVF))

    def read_alert(self) -> Ina226Alert | None:
        """The alert set-up as the chip holds it (reads mask/enable: see `read_flags`)."""
        return decode_alert(self._read(REG_MASK_ENABLE), self._read(REG_ALERT_LIMIT), self.cfg.shunt_ohm,
                            self.cfg.calibration)
