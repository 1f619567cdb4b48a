"""Register-level TI INA226 (SBOS547), fed by a callable giving (bus volts, amps through the shunt).

Modelled from the datasheet: every register with its reset value and writable bits; conversions on
the emulator's clock (a result only after averages x conversion times, triggered or continuous,
shunt and bus interleaved); each sample quantised (2.5 µV shunt LSB saturating at ±81.92 mV,
1.25 mV bus LSB saturating at 40.96 V) and the codes averaged; current = shunt x CAL / 2048 and
power = |current| x bus / 20000 at the end of a conversion, both 0 until CAL is written; the
mask/enable flags (CVRF, AFF, OVF), alert functions SOL/SUL/BOL/BUL/POL and CNVR, APOL and LEN,
and the level of the open-drain ALERT pin with its pull-up.

Where the datasheet is silent the choices are stated: an overflowing current saturates (and sets
OVF), divisions truncate toward zero, reads of unmapped registers return 0.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from hil.i2c.bus import EmulatorLimit

Source = Callable[[float], tuple[float, float]]

CONFIG, SHUNT, BUS, POWER, CURRENT, CALIBRATION, MASK_ENABLE, ALERT_LIMIT = range(8)
MANUFACTURER_ID_REG, DIE_ID_REG = 0xFE, 0xFF
MANUFACTURER_ID, DIE_ID = 0x5449, 0x2260
CONFIG_RESET = 0x4127
AVERAGES = (1, 4, 16, 64, 128, 256, 512, 1024)
CONVERSION_US = (140, 204, 332, 588, 1100, 2116, 4156, 8244)
SHUNT_LSB_V, BUS_LSB_V = 2.5e-6, 1.25e-3

SOL, SUL, BOL, BUL, POL, CNVR = (1 << b for b in (15, 14, 13, 12, 11, 10))
AFF, CVRF, OVF, APOL, LEN = (1 << b for b in (4, 3, 2, 1, 0))
MASK_WRITABLE = SOL | SUL | BOL | BUL | POL | CNVR | APOL | LEN


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _round(x: float) -> int:
    """Round half away from zero: an ADC's transfer function is symmetric about 0."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _trunc_div(numerator: int, denominator: int) -> int:
    quotient = abs(numerator) // denominator
    return -quotient if numerator < 0 else quotient


def _signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


class Ina226Chip:
    """One INA226 behind a shunt of `shunt_ohm`. `clock` gives the emulator's time in seconds.

    At most `max_catch_up` conversion cycles are computed when the chip is looked at after a long
    gap (older ones cannot be seen any more; only a latched alert could have recorded them)."""

    def __init__(self, source: Source, shunt_ohm: float, clock: Callable[[], float],
                 max_catch_up: int = 2000) -> None:
        if not shunt_ohm > 0:
            raise ValueError(f"shunt resistance must be > 0 Ω, got {shunt_ohm}")
        self.source = source
        self.shunt_ohm = shunt_ohm
        self.clock = clock
        self.max_catch_up = max_catch_up
        self._conversions = 0
        self._lock = threading.RLock()
        self.power_cycle()

    def power_cycle(self) -> None:
        """Power-on reset: every register to its default, conversions restart."""
        with self._lock:
            self._regs = dict.fromkeys(range(8), 0)
            self._regs[CONFIG] = CONFIG_RESET
            self._flags = 0  # AFF | CVRF | OVF
            self._restart()

    @property
    def conversions(self) -> int:
        """Conversions completed so far on the emulator's clock."""
        with self._lock:
            self._catch_up()
            return self._conversions

    # Timing.

    def _mode(self) -> int:
        return self._regs[CONFIG] & 0x7

    def _times_s(self) -> tuple[float, float]:
        """(shunt, bus) conversion time per sample, 0 for a quantity the mode does not convert."""
        config, mode = self._regs[CONFIG], self._mode()
        shunt = CONVERSION_US[(config >> 3) & 7] * 1e-6 if mode & 1 else 0.0
        bus = CONVERSION_US[(config >> 6) & 7] * 1e-6 if mode & 2 else 0.0
        return shunt, bus

    @property
    def cycle_s(self) -> float:
        """Time for one averaged result in the current configuration."""
        shunt, bus = self._times_s()
        return AVERAGES[(self._regs[CONFIG] >> 9) & 7] * (shunt + bus)

    def _restart(self) -> None:
        """A write to the configuration register aborts a conversion and starts the new mode."""
        self._cycle_start: float | None = None if self._mode() in (0, 4) else self.clock()

    def _catch_up(self) -> None:
        now = self.clock()
        cycle = self.cycle_s
        if self._cycle_start is None or cycle <= 0:
            return
        due = math.floor((now - self._cycle_start) / cycle)
        if due > self.max_catch_up and self._mode() & 4:
            self._cycle_start += (due - self.max_catch_up) * cycle
        while self._cycle_start is not None and self._cycle_start + cycle <= now:
            self._convert(self._cycle_start)
            self._cycle_start = self._cycle_start + cycle if self._mode() & 4 else None

    def _convert(self, start: float) -> None:
        shunt_t, bus_t = self._times_s()
        averages = AVERAGES[(self._regs[CONFIG] >> 9) & 7]
        shunt_codes = bus_codes = 0
        for i in range(averages):
            t0 = start + i * (shunt_t + bus_t)
            if shunt_t:
                current_a = self.source(t0 + shunt_t / 2)[1]
                shunt_codes += _clamp(_round(current_a * self.shunt_ohm / SHUNT_LSB_V), -0x8000, 0x7FFF)
            if bus_t:
                bus_v = self.source(t0 + shunt_t + bus_t / 2)[0]
                bus_codes += _clamp(_round(bus_v / BUS_LSB_V), 0, 0x7FFF)
        if shunt_t:
            self._regs[SHUNT] = _round(shunt_codes / averages) & 0xFFFF
        if bus_t:
            self._regs[BUS] = _round(bus_codes / averages)
        self._compute()
        self._conversions += 1

    def _compute(self) -> None:
        cal = self._regs[CALIBRATION]
        shunt = _signed(self._regs[SHUNT])
        current = _trunc_div(shunt * cal, 2048)
        overflow = not -0x8000 <= current <= 0x7FFF
        current = _clamp(current, -0x8000, 0x7FFF)
        self._regs[CURRENT] = current & 0xFFFF
        self._regs[POWER] = abs(current) * self._regs[BUS] // 20000
        flags = CVRF | (OVF if overflow else 0)
        mask = self._regs[MASK_ENABLE]
        if self._alert_condition(mask, shunt):
            flags |= AFF
        elif mask & LEN:
            flags |= self._flags & AFF  # latched: kept until the mask/enable register is read
        self._flags = flags

    def _alert_condition(self, mask: int, shunt: int) -> bool:
        """The highest-priority enabled function decides, as on the chip."""
        limit = self._regs[ALERT_LIMIT]
        if mask & SOL:
            return shunt > _signed(limit)
        if mask & SUL:
            return shunt < _signed(limit)
        if mask & BOL:
            return self._regs[BUS] > limit
        if mask & BUL:
            return self._regs[BUS] < limit
        if mask & POL:
            return self._regs[POWER] > limit
        return False

    # The ALERT pin.

    @property
    def alert_asserted(self) -> bool:
        with self._lock:
            self._catch_up()
            mask = self._regs[MASK_ENABLE]
            function = bool(mask & (SOL | SUL | BOL | BUL | POL)) and bool(self._flags & AFF)
            ready = bool(mask & CNVR) and bool(self._flags & CVRF)
            return function or ready

    @property
    def alert_pin_high(self) -> bool:
        """The pin's level with its pull-up: low when asserted unless APOL selects active-high."""
        active_high = bool(self._regs[MASK_ENABLE] & APOL)
        return self.alert_asserted == active_high

    # Register access (the bus calls these with the bytes on the wire, MSB first).

    def _word(self, register: int) -> int:
        if register == MANUFACTURER_ID_REG:
            return MANUFACTURER_ID
        if register == DIE_ID_REG:
            return DIE_ID
        if register == MASK_ENABLE:
            word = self._regs[MASK_ENABLE] | self._flags
            self._flags &= ~CVRF
            if self._regs[MASK_ENABLE] & LEN:
                self._flags &= ~AFF
            return word
        return self._regs.get(register, 0)

    def read(self, register: int, length: int) -> bytes:
        if length not in (1, 2):
            raise EmulatorLimit(f"INA226 registers are 2 bytes; a {length}-byte read is not modelled")
        with self._lock:
            self._catch_up()
            word = self._word(register)
            return bytes([word >> 8, word & 0xFF])[:length]

    def write(self, register: int, data: bytes) -> None:
        if not data:
            return  # only the register pointer
        if len(data) != 2:
            raise EmulatorLimit(f"INA226 register writes are 2 bytes; {len(data)} bytes is not modelled")
        word = data[0] << 8 | data[1]
        with self._lock:
            self._catch_up()
            if register == CONFIG:
                if word & 0x8000:
                    self.power_cycle()
                    return
                self._regs[CONFIG] = (word & 0x0FFF) | 0x4000
                self._flags &= ~CVRF
                self._restart()
            elif register == CALIBRATION:
                self._regs[CALIBRATION] = word & 0x7FFF
            elif register == MASK_ENABLE:
                self._regs[MASK_ENABLE] = word & MASK_WRITABLE
            elif register == ALERT_LIMIT:
                self._regs[ALERT_LIMIT] = word
            # the measurement and ID registers are read-only: writes are ignored
