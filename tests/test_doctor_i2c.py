"""The doctor's I2C lines on the emulated bus (the only stand-in below smbus2): chips that answer
with the right IDs, a chip with the wrong ID, an empty address, a missing bus, a bus gone."""

from __future__ import annotations

import errno

import pytest

from edgeagent.doctor_checks import Status
from edgeagent.doctor_checks_i2c import check_i2c_device, i2c_devices
from edgeagent.field.ads1115 import Ads1115Config, CtCalibration
from edgeagent.field.i2c_adapter import CtChipConfig, I2cDeviceConfig, Ina226ChipConfig
from edgeagent.field.i2c_bus import I2cBus
from edgeagent.field.ina226 import Ina226Config
from hil.i2c.ads1115 import Ads1115Chip, single_input
from hil.i2c.bus import EmulatedBus
from hil.i2c.ina226 import Ina226Chip


def _ina(name: str = "dc", address: int = 0x40) -> Ina226ChipConfig:
    return Ina226ChipConfig(name, Ina226Config(shunt_ohm=0.002, max_current_a=20.0, address=address))


def _ct(name: str = "feeder", address: int = 0x48) -> CtChipConfig:
    return CtChipConfig(name, Ads1115Config(address=address, continuous=True, data_rate_sps=860),
                        CtCalibration.voltage_output(100.0))


def _device(*chips: Ina226ChipConfig | CtChipConfig, bus: int | str = 1) -> I2cDeviceConfig:
    return I2cDeviceConfig("battery", bus, tuple(chips), retries=2)


@pytest.fixture
def bus() -> EmulatedBus:
    b = EmulatedBus()
    b.attach(0x40, Ina226Chip(lambda t: (51.2, 4.0), 0.002, b.clock.now))
    b.attach(0x48, Ads1115Chip(single_input(lambda t: 0.0), b.clock.now))
    return b


def test_chips_with_the_right_ids_pass(bus: EmulatedBus) -> None:
    findings = check_i2c_device(_device(_ina(), _ct()), lambda n: bus.reopen())
    assert [(f.what, f.status) for f in findings] == [
        ("i2c battery bus", Status.PASS), ("i2c battery.dc", Status.PASS), ("i2c battery.feeder", Status.PASS)]
    assert "manufacturer ID 0x5449, die ID 0x2260" in findings[1].detail
    assert "written and read back" in findings[2].detail
    assert bus.closed  # the doctor closes what it opened
    again = check_i2c_device(_device(_ct()), lambda n: bus.reopen())  # already set up: left as it is
    assert "holds the configured set-up" in again[1].detail


def test_wrong_chip_id_fails_with_the_ids_read(bus: EmulatedBus) -> None:
    """An ADS1115 sits at 0x48 where the config expects an INA226: its registers are not the IDs."""
    [_, finding] = check_i2c_device(_device(_ina("dc", 0x48)), lambda n: bus.reopen())
    assert finding.status is Status.FAIL
    assert "is not an INA226" in finding.detail and "expected 0x5449" in finding.detail
    assert "address pins" in finding.fix


def test_nothing_at_the_address(bus: EmulatedBus) -> None:
    [_, finding] = check_i2c_device(_device(_ina("dc", 0x41)), lambda n: bus.reopen())
    assert finding.status is Status.FAIL
    assert finding.detail == "no INA226 answers at 0x41 on /dev/i2c-1"
    assert "i2cdetect -y 1" in finding.fix


def test_missing_bus_on_this_machine() -> None:
    """The real smbus2 path: /dev/i2c-250 does not exist here (nor on a Pi)."""
    [finding] = check_i2c_device(_device(_ina(), bus=250))
    assert finding.status is Status.FAIL
    assert finding.detail == "/dev/i2c-250 does not exist"
    assert "dtparam=i2c_arm=on" in finding.fix and "modprobe i2c-dev" in finding.fix


def test_bus_without_permission() -> None:
    def denied(number: int | str) -> I2cBus:
        raise PermissionError(errno.EACCES, "Permission denied")

    [finding] = check_i2c_device(_device(_ina()), denied)
    assert finding.status is Status.FAIL and "may not open /dev/i2c-1" in finding.detail
    assert "group i2c" in finding.fix


def test_bus_unplugged_mid_check(bus: EmulatedBus) -> None:
    bus.unplug()
    [opened, finding] = check_i2c_device(_device(_ina()), lambda n: bus.reopen())
    assert opened.status is Status.PASS
    assert finding.status is Status.FAIL and "ENODEV" in finding.detail


def test_floating_bus(bus: EmulatedBus) -> None:
    bus.floating = True
    [_, ina, ct] = check_i2c_device(_device(_ina(), _ct()), lambda n: bus.reopen())
    assert ina.status is Status.FAIL and "0xFFFF" in ina.detail
    assert ct.status is Status.FAIL and "0xFFFF" in ct.detail


def test_i2c_devices_come_from_the_config_when_it_has_them() -> None:
    class WithI2c:
        i2c_devices = (_device(_ina()),)

    assert i2c_devices(object()) == ()
    assert i2c_devices(WithI2c()) == WithI2c.i2c_devices
