"""I2C sensors in the site config, and in the daemon: INA226 and CT points in the process image,
usable by interlocks like any other point. The bus below smbus2 is the register-level emulator."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from edgeagent import config
from edgeagent.daemon import Daemon
from edgeagent.field.ads1115 import Mux
from edgeagent.field.i2c_adapter import CtChipConfig, Ina226ChipConfig
from edgeagent.field.i2c_bus import I2cBus
from edgeagent.image import Quality
from edgeagent.notify import Notifier
from edgeagent.safety.interlocks import InterlockState
from hil.i2c.ads1115 import Ads1115Chip
from hil.i2c.bus import EmulatedBus
from hil.i2c.clock import SimClock
from hil.i2c.ina226 import Ina226Chip
from tests.helpers import eventually

SITE = """
[site]
id = "s"
node = "n"
[scan]
period_ms = 50
[storage]
dir = "{state}"
[devices.dcbus]
kind = "i2c"
bus = 1
poll_ms = 50
[[devices.dcbus.chips]]
name = "battery"
type = "ina226"
address = 0x40
shunt_ohm = 0.002
max_current_a = 10
averages = 4
[[devices.dcbus.chips]]
name = "feeder"
type = "ct"
address = 0x48
input = "AIN0-AIN1"
turns_ratio = 2000
burden_ohm = 33
nominal_hz = 50
cycles = 4
[devices.relay]
kind = "modbus"
host = "127.0.0.1"
port = 1
points = [{{ name = "trip", address = 0, type = "uint16", writable = true }}]
[[setpoints]]
point = "relay.trip"
min = 0
max = 1
[[interlocks]]
name = "dc_undervoltage"
points = ["dcbus.battery.bus_v"]
condition = "below"
limit = 24.0
hysteresis = 0.5
safe_action = [{{ point = "relay.trip", value = 1 }}]
"""


def parse(text: str, tmp: Path) -> config.Config:
    return config.parse(text.format(state=tmp), "site.toml")


def test_i2c_devices_load_with_their_points(tmp_path: Path) -> None:
    cfg = parse(SITE, tmp_path)
    (dev,) = cfg.i2c_devices
    battery, feeder = dev.chips
    assert isinstance(battery, Ina226ChipConfig) and battery.ina226.calibration.cal > 0
    assert isinstance(feeder, CtChipConfig) and feeder.ads1115.mux is Mux.AIN0_AIN1
    assert feeder.ct.a_per_v == pytest.approx(2000 / 33)
    assert dev.point_names() == ["dcbus.battery.bus_v", "dcbus.battery.shunt_v", "dcbus.battery.current_a",
                                 "dcbus.battery.power_w", "dcbus.feeder.current_a"]
    assert cfg.safety.interlocks[0].points == ("dcbus.battery.bus_v",)


@pytest.mark.parametrize(("change", "expected"), [
    (('type = "ina226"', 'type = "ina219"'), "devices.dcbus.chips[0].type: must be one of ina226, ct"),
    (("address = 0x40", "address = 0x50"), "devices.dcbus.chips[0].address"),
    (("max_current_a = 10", "max_current_a = 10\ncolour = 1"), "devices.dcbus.chips[0].colour: unknown key"),
    (("shunt_ohm = 0.002", "shunt_ohm = 0.5"), "devices.dcbus.chips[0]: "),  # 10 A x 0.5 Ω: far over 81.92 mV
    (("burden_ohm = 33", "burden_ohm = 33\na_per_v = 60"), "not both"),
    (("turns_ratio = 2000\nburden_ohm = 33\n", ""), "a CT needs its calibration"),
    (('input = "AIN0-AIN1"', 'input = "AIN5"'), "devices.dcbus.chips[1].input: must be one of"),
    (("bus = 1", "bus = -1"), "devices.dcbus.bus: must be a bus number"),
    (('points = ["dcbus.battery.bus_v"]', 'points = ["dcbus.battery.bus_mv"]'), "interlocks[0].points[0]"),
])
def test_i2c_mistakes_are_reported_precisely(change: tuple[str, str], expected: str, tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError) as info:
        parse(SITE.replace(*change), tmp_path)
    lines = info.value.problems
    assert any(expected in line for line in lines), lines
    assert all(line.startswith("site.toml:") for line in lines)


async def test_the_daemon_reads_the_sensors_and_an_interlock_acts_on_them(tmp_path: Path) -> None:
    clock = SimClock(follow_real=True)
    bus = EmulatedBus(clock)
    volts = [25.6]
    bus.attach(0x40, Ina226Chip(lambda t: (volts[0], -8.5), 0.002, clock.now))
    bus.attach(0x48, Ads1115Chip(
        lambda t: (0.33 * math.sqrt(2) * math.sin(2 * math.pi * 50 * t), 0.0, 0.0, 0.0), clock.now))

    def open_bus(number: int | str) -> I2cBus:
        assert number == 1
        return bus.reopen()

    daemon = Daemon(parse(SITE, tmp_path), Notifier(""), i2c_bus_factory=open_bus)
    task = asyncio.create_task(daemon.run())
    try:
        image = daemon.image
        await eventually(lambda: image.snapshot().value("dcbus.battery.bus_v") is not None
                         and image.snapshot().value("dcbus.feeder.current_a") is not None, timeout_s=10,
                         what="sensor points")
        snap = image.snapshot()
        assert snap.value("dcbus.battery.bus_v") == pytest.approx(25.6, abs=0.01)
        assert snap.value("dcbus.battery.current_a") == pytest.approx(-8.5, abs=0.01)  # charging: negative
        assert snap.value("dcbus.feeder.current_a") == pytest.approx(20.0, rel=0.02)  # 0.33 V rms x 2000 / 33 Ω
        assert snap["dcbus.battery.bus_v"].quality is Quality.GOOD
        interlocks = daemon.safety.interlocks
        assert interlocks is not None
        await eventually(lambda: interlocks.state("dc_undervoltage") is InterlockState.IDLE, timeout_s=5,
                         what="start-up trip cleared")
        volts[0] = 22.0  # a sag on the DC bus
        await eventually(lambda: interlocks.state("dc_undervoltage") is InterlockState.TRIPPED, timeout_s=5,
                         what="undervoltage trip")
        assert "dcbus.battery.bus_v=22" in interlocks.reason("dc_undervoltage")
        assert daemon.health().devices == 2
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
