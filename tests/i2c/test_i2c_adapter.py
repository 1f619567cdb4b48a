"""The I2C adapter: chips on one emulated bus polled into a process image under `supervise`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
from collections.abc import AsyncIterator, Callable

import pytest
from structlog.testing import capture_logs

from edgeagent.field.ads1115 import Ads1115Config, CtCalibration, Mux
from edgeagent.field.i2c_adapter import CtChipConfig, I2cDevice, I2cDeviceConfig, Ina226ChipConfig
from edgeagent.field.i2c_bus import I2cBus
from edgeagent.field.ina226 import Ina226Config
from edgeagent.image import ProcessImage, Quality
from edgeagent.supervise import Backoff
from hil.i2c.ads1115 import Ads1115Chip
from hil.i2c.bus import EmulatedBus
from hil.i2c.clock import SimClock
from hil.i2c.ina226 import Ina226Chip
from tests.helpers import eventually

FAST = Backoff(initial_s=0.02, maximum_s=0.05)


def ina_chip(name: str, address: int) -> Ina226ChipConfig:
    return Ina226ChipConfig(name, Ina226Config(shunt_ohm=0.002, max_current_a=10.0, address=address, averages=4))


CT = CtChipConfig("feeder", Ads1115Config(0x48, Mux.AIN0_AIN1, 2.048, 860, continuous=True),
                  CtCalibration.burden(2000, 33.0), 50.0, cycles=4)


def device_config(*extra: Ina226ChipConfig | CtChipConfig) -> I2cDeviceConfig:
    chips = (ina_chip("battery", 0x40), ina_chip("pv", 0x41), CT, *extra)
    return I2cDeviceConfig("dc", 1, chips, poll_s=0.03, timeout_s=0.5)


class Rig:
    def __init__(self, cfg: I2cDeviceConfig, factory: Callable[[int | str], I2cBus] | None = None) -> None:
        self.clock = SimClock(follow_real=True)
        self.bus = EmulatedBus(self.clock)
        self.battery = Ina226Chip(lambda t: (25.6, -8.5), 0.002, self.clock.now)  # charging: negative
        self.pv = Ina226Chip(lambda t: (38.0, 7.25), 0.002, self.clock.now)
        self.bus.attach(0x40, self.battery)
        self.bus.attach(0x41, self.pv)
        ct_v = 0.33  # 20 A rms on a 2000:1 CT into 33 Ω
        self.bus.attach(0x48, Ads1115Chip(
            lambda t: (ct_v * math.sqrt(2) * math.sin(2 * math.pi * 50 * t), 0.0, 0.0, 0.0), self.clock.now))
        self.opened = 0
        self.image = ProcessImage(cfg.point_specs())
        self.device = I2cDevice(cfg, self.image, factory or self.open, self.clock.now, self.clock.sleep, FAST)

    def open(self, bus: int | str) -> I2cBus:
        assert bus == 1
        self.opened += 1
        return self.bus.reopen()

    def value(self, point: str) -> float | str | None:
        return self.image.latest(point).value

    def quality(self, point: str) -> Quality:
        return self.image.latest(point).quality


@contextlib.asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[Rig]:
    task = asyncio.create_task(rig.device.run())
    try:
        yield rig
    finally:
        rig.device.stop()
        async with asyncio.timeout(2.0):
            await task


def all_good(rig: Rig) -> bool:
    return all(rig.image.latest(n).good for n in rig.device.names)


async def test_chips_on_one_bus_fill_the_process_image() -> None:
    async with running(Rig(device_config())) as rig:
        await eventually(lambda: all_good(rig), what="every point GOOD")
        assert rig.device.online
    assert rig.value("dc.battery.bus_v") == pytest.approx(25.6, abs=1.25e-3)
    assert rig.value("dc.battery.current_a") == pytest.approx(-8.5, abs=1e-3)
    assert rig.value("dc.battery.shunt_v") == pytest.approx(-0.017)
    assert rig.value("dc.battery.power_w") == pytest.approx(-217.6, rel=2e-3)
    assert rig.value("dc.pv.current_a") == pytest.approx(7.25, abs=1e-3)
    assert rig.value("dc.pv.power_w") == pytest.approx(275.5, rel=2e-3)
    assert rig.value("dc.feeder.current_a") == pytest.approx(20.0, rel=0.01)
    assert rig.image.latest("dc.feeder.current_a").unit == "A"
    assert rig.device.names == ["dc.battery.bus_v", "dc.battery.shunt_v", "dc.battery.current_a",
                                "dc.battery.power_w", "dc.pv.bus_v", "dc.pv.shunt_v", "dc.pv.current_a",
                                "dc.pv.power_w", "dc.feeder.current_a"]


async def test_retries_then_bad_with_errno_for_that_chip_only_then_recovery() -> None:
    rig = Rig(device_config())
    with capture_logs() as logs:
        async with running(rig):
            await eventually(lambda: all_good(rig), what="every point GOOD")
            rig.bus.fail_next(60, errno.EIO, address=0x41)
            await eventually(lambda: rig.quality("dc.pv.current_a") is Quality.BAD, what="pv BAD")
            sample = rig.image.latest("dc.pv.bus_v")
            assert sample.quality is Quality.BAD and sample.value is None
            assert sample.reason.startswith("EIO") and "3 attempts" in sample.reason and "0x41" in sample.reason
            assert rig.image.latest("dc.battery.current_a").good and rig.device.online
            await eventually(lambda: rig.quality("dc.pv.current_a") is Quality.GOOD, what="pv recovered")
    bad = [e for e in logs if e["event"] == "i2c.chip_bad"]
    assert len(bad) == 1 and bad[0]["chip"] == "pv"
    assert [e["chip"] for e in logs if e["event"] == "i2c.chip_recovered"] == ["pv"]


async def test_missing_and_wrong_chips_are_bad_with_a_clear_reason() -> None:
    missing = ina_chip("aux", 0x44)
    wrong = Ina226ChipConfig("gen", Ina226Config(shunt_ohm=0.002, max_current_a=10.0, address=0x49))
    rig = Rig(device_config(missing, wrong))
    rig.bus.attach(0x49, Ads1115Chip(lambda t: (0.0, 0.0, 0.0, 0.0), rig.clock.now))
    async with running(rig):
        await eventually(lambda: rig.quality("dc.gen.bus_v") is Quality.BAD
                         and rig.quality("dc.aux.bus_v") is Quality.BAD and rig.image.latest("dc.pv.bus_v").good,
                         what="aux and gen BAD, pv GOOD")
    assert rig.image.latest("dc.aux.current_a").reason.startswith("ENXIO")
    assert "0x49 is not an INA226: manufacturer ID 0x8000" in rig.image.latest("dc.gen.power_w").reason


async def test_floating_bus_is_bad_with_ebadmsg() -> None:
    rig = Rig(device_config())
    async with running(rig):
        await eventually(lambda: all_good(rig), what="every point GOOD")
        rig.bus.floating = True
        await eventually(lambda: all(rig.quality(n) is Quality.BAD for n in rig.device.names), what="all BAD")
        assert rig.image.latest("dc.battery.bus_v").reason.startswith("EBADMSG")
        assert rig.image.latest("dc.feeder.current_a").reason.startswith("EBADMSG")
        rig.bus.floating = False
        await eventually(lambda: all_good(rig), what="every point GOOD again")


async def test_bus_gone_makes_every_point_stale_then_it_reconnects() -> None:
    rig = Rig(device_config())
    with capture_logs() as logs:
        async with running(rig):
            await eventually(lambda: all_good(rig), what="every point GOOD")
            rig.bus.unplug()
            await eventually(lambda: all(rig.quality(n) is Quality.STALE for n in rig.device.names), what="STALE")
            assert "ENODEV" in rig.image.latest("dc.pv.bus_v").reason
            assert rig.value("dc.pv.bus_v") == pytest.approx(38.0)  # last value kept for diagnosis
            assert not rig.device.online
            await asyncio.sleep(0.15)  # a few failed reconnects
            rig.bus.plug()
            await eventually(lambda: all_good(rig), what="every point GOOD after reconnect")
    link_events = ("i2c.connected", "i2c.offline", "i2c.recovered")
    assert [e["event"] for e in logs if e["event"] in link_events] == list(link_events)
    assert rig.opened >= 2


async def test_bus_that_cannot_be_opened_is_stale_with_the_reason() -> None:
    def missing(bus: int | str) -> I2cBus:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    rig = Rig(device_config(), factory=missing)
    async with running(rig):
        await eventually(lambda: rig.device.link.restarts >= 1, what="a failed session")
        await eventually(lambda: "does not exist" in rig.image.latest("dc.pv.bus_v").reason, what="reason in image")
    assert rig.quality("dc.battery.current_a") is Quality.STALE


async def test_chip_that_lost_its_calibration_is_set_up_again() -> None:
    rig = Rig(device_config())
    async with running(rig):
        await eventually(lambda: all_good(rig), what="every point GOOD")
        rig.battery.power_cycle()
        await eventually(lambda: rig.quality("dc.battery.current_a") is Quality.BAD, what="battery BAD")
        assert "chip reset" in rig.image.latest("dc.battery.current_a").reason
        await eventually(lambda: rig.image.latest("dc.battery.current_a").good, what="battery set up again")
        assert rig.value("dc.battery.current_a") == pytest.approx(-8.5, abs=1e-3)


def test_config_refuses_clashes_and_allows_cts_sharing_an_adc() -> None:
    with pytest.raises(ValueError, match="'battery' and 'other' are both at address 0x40"):
        I2cDeviceConfig("dc", 1, (ina_chip("battery", 0x40), ina_chip("other", 0x40)))
    with pytest.raises(ValueError, match="chip name 'battery' is used twice"):
        I2cDeviceConfig("dc", 1, (ina_chip("battery", 0x40), ina_chip("battery", 0x41)))
    with pytest.raises(ValueError, match="without dots"):
        ina_chip("a.b", 0x40)
    with pytest.raises(ValueError, match="continuous mode"):
        CtChipConfig("l1", Ads1115Config(), CtCalibration(10.0))
    with pytest.raises(ValueError, match="too slow for true RMS"):
        CtChipConfig("l1", Ads1115Config(data_rate_sps=128, continuous=True), CtCalibration(10.0))
    with pytest.raises(ValueError, match="has no chips"):
        I2cDeviceConfig("dc", 1, ())
    l1 = CtChipConfig("l1", Ads1115Config(0x48, Mux.AIN0, continuous=True), CtCalibration(10.0))
    l2 = CtChipConfig("l2", Ads1115Config(0x48, Mux.AIN1, continuous=True), CtCalibration(10.0))
    cfg = I2cDeviceConfig("ac", "/dev/i2c-3", (l1, l2), poll_s=1.0, timeout_s=1.0)
    assert cfg.point_names() == ["ac.l1.current_a", "ac.l2.current_a"]
    assert cfg.max_age_s == pytest.approx(3 + 1 + 2 * 11.5 / 50)
    with pytest.raises(ValueError, match="both at address 0x48"):
        I2cDeviceConfig("ac", 1, (l1, CtChipConfig("l3", l1.ads1115, CtCalibration(10.0))))


async def test_ct_inputs_sharing_one_adc_read_their_own_channel() -> None:
    l1 = CtChipConfig("l1", Ads1115Config(0x48, Mux.AIN0, 4.096, continuous=True), CtCalibration(100.0), cycles=3)
    l2 = CtChipConfig("l2", Ads1115Config(0x48, Mux.AIN1, 4.096, continuous=True), CtCalibration(100.0), cycles=3)
    clock = SimClock(follow_real=True)
    bus = EmulatedBus(clock)

    def pins(t: float) -> tuple[float, float, float, float]:
        w = 2 * math.pi * 50 * t
        return (1.65 + 0.1 * math.sqrt(2) * math.sin(w), 1.65 + 0.25 * math.sqrt(2) * math.sin(w - 2.09), 0.0, 0.0)

    bus.attach(0x48, Ads1115Chip(pins, clock.now))
    cfg = I2cDeviceConfig("ac", 1, (l1, l2), poll_s=0.05)
    image = ProcessImage(cfg.point_specs())
    device = I2cDevice(cfg, image, lambda n: bus.reopen(), clock.now, clock.sleep, FAST)
    task = asyncio.create_task(device.run())
    try:
        await eventually(lambda: all(image.latest(n).good for n in device.names), what="both CTs GOOD")
    finally:
        device.stop()
        await task
    assert image.latest("ac.l1.current_a").value == pytest.approx(10.0, rel=0.01)
    assert image.latest("ac.l2.current_a").value == pytest.approx(25.0, rel=0.01)


async def test_readings_at_full_scale_are_bad_not_good() -> None:
    rig = Rig(device_config())
    rig.bus.detach(0x40)
    rig.bus.attach(0x40, Ina226Chip(lambda t: (51.2, -12.5), 0.002, rig.clock.now))  # beyond 40.96 V and 10 A
    async with running(rig):
        await eventually(lambda: rig.quality("dc.battery.bus_v") is Quality.BAD, what="battery BAD")
    assert rig.image.latest("dc.battery.bus_v").reason == "bus input saturated at 40.96 V"
    assert rig.image.latest("dc.battery.current_a").reason == "shunt input saturated at ±81.92 mV"
    assert rig.image.latest("dc.pv.current_a").good
