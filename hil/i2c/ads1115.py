"""Register-level TI ADS1115 (SBAS444), fed by a callable giving the AIN0-AIN3 voltages at time t.

Modelled from the datasheet: conversion, config (reset 0x8583), Lo_thresh (0x8000) and Hi_thresh
(0x7FFF) registers; the input multiplexer; PGA full scales ±6.144 V to ±0.256 V with codes clipped
at 0x7FFF/0x8000; data rates 8-860 SPS; single-shot (OS starts a conversion, reads 0 while it runs,
then the chip powers down) and continuous conversion on the emulator's clock; the comparator
(traditional or window, 1/2/4-conversion queue, latching, polarity) and conversion-ready mode.

Simplifications, stated: only the two low bits of the register pointer select a register (the
datasheet requires the others to be 0), so an INA226 driver pointed at an ADS1115 reads its
thresholds as IDs; a conversion samples the input at its end instant (the real delta-sigma
filter averages over the conversion), and `rate_error` stands in for the internal oscillator's
±10 % tolerance.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence

from hil.i2c.bus import EmulatorLimit

Inputs = Callable[[float], Sequence[float]]

CONVERSION, CONFIG, LO_THRESH, HI_THRESH = range(4)
CONFIG_RESET, LO_RESET, HI_RESET = 0x8583, 0x8000, 0x7FFF
FULL_SCALES_V = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)
DATA_RATES_SPS = (8, 16, 32, 64, 128, 250, 475, 860)
MUX_PINS: tuple[tuple[int, int | None], ...] = ((0, 1), (0, 3), (1, 3), (2, 3), (0, None), (1, None), (2, None),
                                                (3, None))
OS, MODE_SINGLE, COMP_MODE_WINDOW, COMP_POL_HIGH, COMP_LAT = 0x8000, 0x0100, 0x0010, 0x0008, 0x0004
QUEUE = (1, 2, 4)


def single_input(signal: Callable[[float], float], pin: int = 0) -> Inputs:
    """Inputs with `signal(t)` on one pin and the others at 0 V."""
    def inputs(t: float) -> Sequence[float]:
        volts = [0.0, 0.0, 0.0, 0.0]
        volts[pin] = signal(t)
        return volts
    return inputs


def _signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


class Ads1115Chip:
    def __init__(self, inputs: Inputs, clock: Callable[[], float], rate_error: float = 0.0,
                 max_catch_up: int = 5000) -> None:
        if not -0.1 <= rate_error <= 0.1:
            raise ValueError(f"rate_error is the oscillator's tolerance, within ±0.1; got {rate_error}")
        self.inputs = inputs
        self.clock = clock
        self.rate_error = rate_error
        self.max_catch_up = max_catch_up
        self._conversions = 0
        self.ready_pulses = 0
        self._lock = threading.RLock()
        self.power_cycle()

    def power_cycle(self) -> None:
        with self._lock:
            self._regs = {CONVERSION: 0, CONFIG: CONFIG_RESET & ~OS, LO_THRESH: LO_RESET, HI_THRESH: HI_RESET}
            self._continuous_start: float | None = None
            self._done = 0
            self._single_end: float | None = None
            self._alert = False
            self._beyond = 0

    @property
    def conversions(self) -> int:
        """Conversions completed so far on the emulator's clock."""
        with self._lock:
            self._catch_up()
            return self._conversions

    @property
    def period_s(self) -> float:
        return 1.0 / (DATA_RATES_SPS[(self._regs[CONFIG] >> 5) & 7] * (1 + self.rate_error))

    @property
    def full_scale_v(self) -> float:
        return FULL_SCALES_V[(self._regs[CONFIG] >> 9) & 7]

    def _catch_up(self) -> None:
        now = self.clock()
        period = self.period_s
        if self._continuous_start is not None:
            due = math.floor((now - self._continuous_start) / period)
            for k in range(max(self._done + 1, due - self.max_catch_up + 1), due + 1):
                self._convert(self._continuous_start + k * period)
            self._done = max(self._done, due)
        if self._single_end is not None and now >= self._single_end:
            self._convert(self._single_end)
            self._single_end = None

    def _convert(self, t: float) -> None:
        positive, negative = MUX_PINS[(self._regs[CONFIG] >> 12) & 7]
        volts = self.inputs(t)
        diff = volts[positive] - (0.0 if negative is None else volts[negative])
        x = diff * 32768 / self.full_scale_v
        code = max(-0x8000, min(0x7FFF, int(math.copysign(math.floor(abs(x) + 0.5), x))))
        self._regs[CONVERSION] = code & 0xFFFF
        self._conversions += 1
        self._comparator(code)

    def _comparator(self, code: int) -> None:
        config = self._regs[CONFIG]
        queue = config & 3
        if queue == 3:
            self._alert, self._beyond = False, 0
            return
        hi, lo = self._regs[HI_THRESH], self._regs[LO_THRESH]
        if hi & 0x8000 and not lo & 0x8000:  # conversion-ready mode
            self.ready_pulses += 1
            return
        window = bool(config & COMP_MODE_WINDOW)
        beyond = code > _signed(hi) or (window and code < _signed(lo))
        self._beyond = self._beyond + 1 if beyond else 0
        if self._beyond >= QUEUE[queue]:
            self._alert = True
        elif not config & COMP_LAT and ((window and not beyond) or (not window and code < _signed(lo))):
            self._alert = False

    @property
    def alert_asserted(self) -> bool:
        with self._lock:
            self._catch_up()
            return self._alert

    @property
    def alert_pin_high(self) -> bool:
        return self.alert_asserted == bool(self._regs[CONFIG] & COMP_POL_HIGH)

    def _word(self, register: int) -> int:
        if register == CONFIG:
            busy = self._continuous_start is not None or self._single_end is not None
            return self._regs[CONFIG] | (0 if busy else OS)
        if register == CONVERSION and self._regs[CONFIG] & COMP_LAT:
            self._alert = False  # a latched comparator clears when the conversion is read
        return self._regs[register]

    def read(self, register: int, length: int) -> bytes:
        if length not in (1, 2):
            raise EmulatorLimit(f"ADS1115 registers are 2 bytes; a {length}-byte read is not modelled")
        with self._lock:
            self._catch_up()
            word = self._word(register & 3)
            return bytes([word >> 8, word & 0xFF])[:length]

    def write(self, register: int, data: bytes) -> None:
        if not data:
            return
        if len(data) != 2:
            raise EmulatorLimit(f"ADS1115 register writes are 2 bytes; {len(data)} bytes is not modelled")
        word = data[0] << 8 | data[1]
        register &= 3
        with self._lock:
            self._catch_up()
            if register in (LO_THRESH, HI_THRESH):
                self._regs[register] = word
            elif register == CONFIG:
                self._write_config(word)

    def _write_config(self, word: int) -> None:
        self._regs[CONFIG] = word & ~OS
        self._beyond = 0
        if not word & MODE_SINGLE:
            self._continuous_start, self._done, self._single_end = self.clock(), 0, None
            return
        self._continuous_start = None
        if word & OS and self._single_end is None:
            self._single_end = self.clock() + self.period_s
