"""Doctor checks for I2C: each bus present and openable, each chip answering as the chip it should be.

The INA226 is identified read-only by its manufacturer and die IDs (`Ina226.check_ids`). The ADS1115
has no ID register: its check reads the configuration register and, unless it already holds the
configuration the daemon uses (the daemon is running), writes that configuration and reads it back
(`Ads1115.configure`): the same write the daemon makes before every CT measurement, so a running
daemon at worst marks one measurement for a retry. Blocking: the runner calls these in a thread.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

from edgeagent.doctor_checks import Finding, fail, passed, user_name
from edgeagent.field.ads1115 import OS_BIT, Ads1115
from edgeagent.field.i2c_adapter import ChipConfig, CtChipConfig, I2cDeviceConfig, Ina226ChipConfig
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
from edgeagent.field.ina226 import DIE_ID, MANUFACTURER_ID, Ina226, WrongChip


def i2c_devices(cfg: object) -> tuple[I2cDeviceConfig, ...]:
    """The config's I2C devices: none until config.py grows an `i2c_devices` section."""
    devices: Iterable[I2cDeviceConfig] = getattr(cfg, "i2c_devices", ()) or ()
    return tuple(devices)


def check_i2c_device(dev: I2cDeviceConfig, factory: BusFactory | None = None) -> list[Finding]:
    """One line for the bus, then (if it opened) one per chip."""
    path = bus_path(dev.bus)
    what = f"i2c {dev.name} bus"
    try:
        bus = open_bus(dev.bus) if factory is None else open_bus(dev.bus, factory)
    except BusUnavailable as exc:
        return [_bus_failure(what, path, exc)]
    try:
        found = [passed(what, f"{path} opened")]
        retry = RetryPolicy(attempts=dev.retries)
        found.extend(_check_chip(dev, chip, bus, retry) for chip in dev.chips)
        return found
    finally:
        bus.close()


def _bus_failure(what: str, path: str, exc: BusUnavailable) -> Finding:
    if exc.errno == errno.ENOENT:
        return fail(what, f"{path} does not exist",
                    "enable the I2C controller (Raspberry Pi: dtparam=i2c_arm=on in config.txt, or raspi-config), "
                    "load the driver (modprobe i2c-dev, and list i2c-dev in /etc/modules-load.d/), then check the "
                    "bus number against ls /dev/i2c-*")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return fail(what, f"{user_name()} may not open {path}",
                    "add the service's user to group i2c (usermod -aG i2c <user>) and allow the device in the "
                    "unit's DeviceAllow=")
    return fail(what, str(exc), "check the I2C adapter (a USB adapter may have been unplugged) and dmesg")


def _check_chip(dev: I2cDeviceConfig, chip: ChipConfig, bus: I2cBus, retry: RetryPolicy) -> Finding:
    what = f"i2c {dev.name}.{chip.name}"
    kind = "INA226" if isinstance(chip, Ina226ChipConfig) else "ADS1115"
    try:
        if isinstance(chip, Ina226ChipConfig):
            Ina226(bus, chip.ina226, retry).check_ids()
            return passed(what, f"INA226 at 0x{chip.address:02X} on {bus_path(dev.bus)}: manufacturer ID "
                          f"0x{MANUFACTURER_ID:04X}, die ID 0x{DIE_ID:04X}")
        return _check_ads1115(what, dev, chip, bus, retry)
    except WrongChip as exc:
        return fail(what, str(exc), f"check the chip's address pins and devices.{dev.name}.{chip.name}'s address; "
                    "an INA219 or INA260 at this address is a different chip: fit an INA226")
    except ChipReset as exc:
        return fail(what, f"{exc}: not an ADS1115, or it resets (supply)",
                    "check the ADDR pin (GND 0x48, VDD 0x49, SDA 0x4A, SCL 0x4B) against the config, and the "
                    "chip's supply")
    except BusUnavailable as exc:
        return fail(what, str(exc), "check the I2C adapter and dmesg")
    except I2cError as exc:
        if exc.errno == errno.ENXIO:
            return fail(what, f"no {kind} answers at 0x{chip.address:02X} on {bus_path(dev.bus)}",
                        f"check SDA, SCL, VCC and GND, the chip's supply and address pins; i2cdetect -y {dev.bus} "
                        "lists the addresses that answer")
        return fail(what, str(exc), "check the wiring's length, the pull-up resistors and the supply: the bus is "
                    "noisy or floating")


def _check_ads1115(what: str, dev: I2cDeviceConfig, chip: ChipConfig, bus: I2cBus, retry: RetryPolicy) -> Finding:
    assert isinstance(chip, CtChipConfig)
    adc = Ads1115(bus, chip.ads1115, retry)
    expected = chip.ads1115.config_word() & ~OS_BIT
    where = f"ADS1115 at 0x{chip.address:02X} on {bus_path(dev.bus)}"
    try:
        adc.check_config()
        return passed(what, f"{where} holds the configured set-up (0x{expected:04X})")
    except ChipReset:
        pass  # not set up yet (no daemon running, or a fresh chip): set it up and read it back
    adc.configure()
    return passed(what, f"{where} answers; configuration 0x{expected:04X} written and read back")
