"""I2C field adapter: INA226 shunt monitors and CT inputs (ADS1115) on one bus, into the process image.

Like `ModbusDevice`: `session()` opens the bus, sets each chip up and polls until the bus is gone
(it raises, the supervisor marks every point STALE and opens the bus again after a backoff). A
chip that fails after its retries makes only its own points BAD, with the errno name as reason,
and is polled again next time; a chip that lost its configuration (brown-out) is set up again.
All transfers are blocking smbus2 calls run in a worker thread under a timeout.

The config types live here until the TOML integration; `bus_factory` stands in for smbus2 in tests.
"""

from __future__ import annotations

import asyncio
import errno
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from edgeagent.field.ads1115 import Ads1115, Ads1115Config, CtCalibration, measure_ct
from edgeagent.field.i2c_bus import (
    BusFactory,
    BusUnavailable,
    ChipReset,
    I2cBus,
    I2cError,
    RetryPolicy,
    bus_path,
    open_bus,
)
from edgeagent.field.ina226 import Ina226, Ina226Config, NotReady, WrongChip
from edgeagent.image import PointSpec, ProcessImage, Quality, Sample
from edgeagent.supervise import Backoff, LinkState, supervise

log = structlog.get_logger("edgeagent.field.i2c")
T = TypeVar("T")

DEFAULT_BACKOFF = Backoff()
INA226_POINTS = (("bus_v", "V"), ("shunt_v", "V"), ("current_a", "A"), ("power_w", "W"))
CT_POINTS = (("current_a", "A"),)


def _check_name(what: str, name: str) -> None:
    if not name or "." in name or name != name.strip():
        raise ValueError(f"{what} name {name!r} must be non-empty, without dots or surrounding spaces")


@dataclass(frozen=True, slots=True)
class Ina226ChipConfig:
    name: str
    ina226: Ina226Config

    def __post_init__(self) -> None:
        _check_name("INA226", self.name)

    @property
    def address(self) -> int:
        return self.ina226.address

    @property
    def points(self) -> tuple[tuple[str, str], ...]:
        return INA226_POINTS


@dataclass(frozen=True, slots=True)
class CtChipConfig:
    """A CT on one ADS1115 input (several CTs may share an ADS1115 on different inputs)."""

    name: str
    ads1115: Ads1115Config
    ct: CtCalibration
    nominal_hz: float = 50.0
    cycles: int = 10

    def __post_init__(self) -> None:
        _check_name("CT", self.name)
        if not self.ads1115.continuous:
            raise ValueError(f"CT {self.name!r}: the ADS1115 must be in continuous mode to sample whole cycles")
        if self.nominal_hz not in (50.0, 60.0):
            raise ValueError(f"CT {self.name!r}: nominal frequency must be 50 or 60 Hz, got {self.nominal_hz}")
        if self.ads1115.data_rate_sps < 250:
            raise ValueError(f"CT {self.name!r}: {self.ads1115.data_rate_sps} SPS is too slow for true RMS; "
                             "use at least 250 SPS (5 samples per 50 Hz cycle)")
        if not 1 <= self.cycles <= 100:
            raise ValueError(f"CT {self.name!r}: cycles must be 1-100, got {self.cycles}")

    @property
    def address(self) -> int:
        return self.ads1115.address

    @property
    def points(self) -> tuple[tuple[str, str], ...]:
        return CT_POINTS

    @property
    def block_s(self) -> float:
        """How long one measurement samples (whole cycles plus a margin to find the crossings)."""
        return (self.cycles + 1.5) / self.nominal_hz


ChipConfig = Ina226ChipConfig | CtChipConfig


@dataclass(frozen=True, slots=True)
class I2cDeviceConfig:
    """Chips on one bus (`bus` N is /dev/i2c-N, or a path). `max_age_s` 0 means 3 polls + the timeout +
    the CT sampling time of one poll."""

    name: str
    bus: int | str
    chips: tuple[ChipConfig, ...]
    poll_s: float = 1.0
    timeout_s: float = 1.0
    retries: int = 3
    max_age_s: float = field(default=0.0)

    def __post_init__(self) -> None:
        _check_name("I2C device", self.name)
        if not self.chips:
            raise ValueError(f"I2C device {self.name!r} has no chips")
        if not (math.isfinite(self.poll_s) and 0.01 <= self.poll_s <= 3600):
            raise ValueError(f"I2C device {self.name!r}: poll_s must be 0.01-3600 s, got {self.poll_s}")
        if not (math.isfinite(self.timeout_s) and 0.01 <= self.timeout_s <= 60):
            raise ValueError(f"I2C device {self.name!r}: timeout_s must be 0.01-60 s, got {self.timeout_s}")
        if not 1 <= self.retries <= 10:
            raise ValueError(f"I2C device {self.name!r}: retries must be 1-10, got {self.retries}")
        names: set[str] = set()
        by_address: dict[int, ChipConfig] = {}
        for chip in self.chips:
            if chip.name in names:
                raise ValueError(f"I2C device {self.name!r}: chip name {chip.name!r} is used twice")
            names.add(chip.name)
            other = by_address.get(chip.address)
            if other is not None and not (isinstance(chip, CtChipConfig) and isinstance(other, CtChipConfig)
                                          and chip.ads1115.mux != other.ads1115.mux):
                raise ValueError(f"I2C device {self.name!r}: chips {other.name!r} and {chip.name!r} are both at "
                                 f"address 0x{chip.address:02X}")
            by_address[chip.address] = chip
        if self.max_age_s == 0.0:
            object.__setattr__(self, "max_age_s", 3 * self.poll_s + self.timeout_s + self._measure_s)
        if self.max_age_s < self.poll_s:
            raise ValueError(f"I2C device {self.name!r}: max_age_s {self.max_age_s} is below poll_s {self.poll_s}")

    @property
    def _measure_s(self) -> float:
        return sum(c.block_s for c in self.chips if isinstance(c, CtChipConfig))

    def point_specs(self) -> list[PointSpec]:
        return [PointSpec(f"{self.name}.{chip.name}.{point}", unit, self.max_age_s)
                for chip in self.chips for point, unit in chip.points]

    def point_names(self) -> list[str]:
        return [spec.name for spec in self.point_specs()]


class _Chip:
    """One chip's driver and health within a session."""

    def __init__(self, cfg: ChipConfig, driver: Ina226 | Ads1115, prefix: str) -> None:
        self.cfg = cfg
        self.driver = driver
        self.prefix = prefix
        self.ready = False
        self.bad_reason = ""

    def setup(self) -> None:
        if isinstance(self.driver, Ina226):
            self.driver.setup()
        else:
            self.driver.configure()

    def measure(self) -> list[tuple[str, str, float, Quality, str]]:
        """(point, unit, value, quality, reason) for each point; blocking."""
        if isinstance(self.driver, Ina226):
            r = self.driver.read()
            mode = self.driver.cfg.mode.name
            out = []
            for (point, unit), value in zip(INA226_POINTS, (r.bus_v, r.shunt_v, r.current_a, r.power_w), strict=True):
                if math.isnan(value):
                    out.append((point, unit, value, Quality.BAD, f"not measured in mode {mode}"))
                elif r.saturated and point != "bus_v":
                    out.append((point, unit, value, Quality.BAD, "shunt input saturated at ±81.92 mV"))
                elif r.bus_saturated and point in ("bus_v", "power_w"):
                    out.append((point, unit, value, Quality.BAD, "bus input saturated at 40.96 V"))
                else:
                    out.append((point, unit, value, Quality.GOOD, ""))
            return out
        assert isinstance(self.cfg, CtChipConfig)
        ct = measure_ct(self.driver, self.cfg.ct, self.cfg.nominal_hz, self.cfg.cycles)
        if ct.clipped:
            fs = self.cfg.ads1115.full_scale_v
            return [("current_a", "A", ct.rms_a, Quality.BAD, f"ADC clipped at ±{fs} V: raise full_scale_v")]
        return [("current_a", "A", ct.rms_a, Quality.GOOD, "")]


class I2cDevice:
    def __init__(self, cfg: I2cDeviceConfig, image: ProcessImage, bus_factory: BusFactory | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 backoff: Backoff = DEFAULT_BACKOFF) -> None:
        """`clock`/`sleep` drive the chips' conversion waits and CT sampling (an emulator's time in tests)."""
        self.cfg = cfg
        self.image = image
        self.link = LinkState("i2c", device=cfg.name, bus=bus_path(cfg.bus))
        self.polls = 0
        self._factory = bus_factory
        self._clock = clock
        self._sleep = sleep
        self._backoff = backoff
        self._retry = RetryPolicy(attempts=cfg.retries, sleep=sleep)
        self._wake = asyncio.Event()
        self._stopped = False

    @property
    def names(self) -> list[str]:
        return self.cfg.point_names()

    @property
    def online(self) -> bool:
        return self.link.up

    def mark_down(self, reason: str) -> None:
        """Called by the supervisor when a session ended: every point goes STALE."""
        self.image.mark_stale(self.names, reason)

    async def run(self) -> None:
        """Sessions until `stop()`, with backoff between them (the daemon's task for this bus)."""
        await supervise(self.link, self.session, self.mark_down, backoff=self._backoff, stopped=lambda: self._stopped)

    def stop(self) -> None:
        """End the session at its next step; a transfer in flight finishes in its thread."""
        self._stopped = True
        self._wake.set()

    async def _blocking(self, fn: Callable[[], T], timeout_s: float) -> T:
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.to_thread(fn)
        except TimeoutError:
            raise BusUnavailable(f"ETIMEDOUT (I2C bus {bus_path(self.cfg.bus)} did not complete a transfer "
                                 f"within {timeout_s:.2f} s)", errno.ETIMEDOUT) from None

    def _open(self) -> I2cBus:
        return open_bus(self.cfg.bus) if self._factory is None else open_bus(self.cfg.bus, self._factory)

    def _make_chip(self, cfg: ChipConfig, bus: I2cBus) -> _Chip:
        prefix = f"{self.cfg.name}.{cfg.name}."
        if isinstance(cfg, Ina226ChipConfig):
            return _Chip(cfg, Ina226(bus, cfg.ina226, self._retry, self._clock, self._sleep), prefix)
        return _Chip(cfg, Ads1115(bus, cfg.ads1115, self._retry, self._clock, self._sleep), prefix)

    async def session(self) -> None:
        """Open the bus, then poll every chip until the bus is gone (raises) or `stop()`."""
        bus = await self._blocking(self._open, self.cfg.timeout_s)
        try:
            chips = [self._make_chip(c, bus) for c in self.cfg.chips]
            first = True
            while not self._stopped:
                started = time.monotonic()
                for chip in chips:
                    if self._stopped:
                        return
                    await self._poll(chip)
                self.polls += 1
                if first:
                    self.link.set_up(chips=len(chips))
                    first = False
                self._wake.clear()
                delay = self.cfg.poll_s - (time.monotonic() - started)
                if delay > 0:
                    try:
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
        finally:
            bus.close()

    async def _poll(self, chip: _Chip) -> None:
        timeout = self.cfg.timeout_s
        if isinstance(chip.cfg, CtChipConfig):
            timeout += chip.cfg.block_s * 1.5
        try:
            if not chip.ready:
                await self._blocking(chip.setup, self.cfg.timeout_s)
                chip.ready = True
            results = await self._blocking(chip.measure, timeout)
        except BusUnavailable:
            raise
        except NotReady:
            return  # configured, first conversion still running: nothing new to publish
        except (I2cError, WrongChip, ChipReset, ValueError) as exc:
            if not isinstance(exc, I2cError) or exc.errno == errno.ENXIO:
                chip.ready = False  # a reset, replaced or re-powered chip is set up again
            self._chip_bad(chip, str(exc))
            return
        now_m, now_w = time.monotonic(), time.time()
        for point, unit, value, quality, reason in results:
            self.image.write(Sample(chip.prefix + point, value if math.isfinite(value) else None, unit, quality,
                                    now_m, now_w, reason))
        if chip.bad_reason:
            log.info("i2c.chip_recovered", device=self.cfg.name, chip=chip.cfg.name)
            chip.bad_reason = ""

    def _chip_bad(self, chip: _Chip, reason: str) -> None:
        if not chip.bad_reason:
            log.warning("i2c.chip_bad", device=self.cfg.name, chip=chip.cfg.name,
                        address=f"0x{chip.cfg.address:02X}", reason=reason)
        else:
            log.debug("i2c.chip_retry", device=self.cfg.name, chip=chip.cfg.name, reason=reason)
        chip.bad_reason = reason
        now_m, now_w = time.monotonic(), time.time()
        for point, unit in chip.cfg.points:
            self.image.write(Sample(chip.prefix + point, None, unit, Quality.BAD, now_m, now_w, reason))
