"""The `kind = "i2c"` devices of the site config: INA226 shunt monitors and CTs on ADS1115 inputs.

```toml
[devices.dcbus]
kind = "i2c"
bus = 1                                  # /dev/i2c-1 (or a path)
poll_ms = 1000

[[devices.dcbus.chips]]                  # an INA226 shunt monitor on the battery string
name = "battery"
type = "ina226"
address = 0x40                           # 0x40-0x4F (A0/A1 pins)
shunt_ohm = 0.002
max_current_a = 10

[[devices.dcbus.chips]]                  # a 2000:1 CT across 33 ohm on ADS1115 inputs 0-1
name = "feeder"
type = "ct"
address = 0x48                           # 0x48-0x4B
input = "AIN0-AIN1"
turns_ratio = 2000                       # or a_per_v = 30 for a voltage-output CT
burden_ohm = 33
nominal_hz = 50
```
Points are named `DEVICE.CHIP.bus_v`, `.shunt_v`, `.current_a`, `.power_w` (INA226) and
`DEVICE.CHIP.current_a` (CT). The drivers' own constructors validate the numbers (calibration
that does not fit the register, an address outside the chip's range…); their messages become
config problems at the chip's key path, so every mistake is still reported with its line.
"""

from __future__ import annotations

from typing import Any

from edgeagent.configcheck import Checker
from edgeagent.field.ads1115 import Ads1115Config, CtCalibration, Mux
from edgeagent.field.i2c_adapter import ChipConfig, CtChipConfig, I2cDeviceConfig, Ina226ChipConfig
from edgeagent.field.ina226 import Ina226Config

DEVICE_KEYS = ["kind", "bus", "poll_ms", "timeout_ms", "max_age_ms", "retries", "chips"]
_INA226_KEYS = ["name", "type", "address", "shunt_ohm", "max_current_a", "averages", "bus_conversion_us",
                "shunt_conversion_us"]
_CT_KEYS = ["name", "type", "address", "input", "full_scale_v", "data_rate_sps", "turns_ratio", "burden_ohm",
            "a_per_v", "nominal_hz", "cycles"]
_INPUTS = {"AIN0-AIN1": Mux.AIN0_AIN1, "AIN0-AIN3": Mux.AIN0_AIN3, "AIN1-AIN3": Mux.AIN1_AIN3,
           "AIN2-AIN3": Mux.AIN2_AIN3, "AIN0": Mux.AIN0, "AIN1": Mux.AIN1, "AIN2": Mux.AIN2, "AIN3": Mux.AIN3}



def parse_i2c_device(c: Checker, name: str, t: dict[str, Any]) -> I2cDeviceConfig | None:
    path = f"devices.{name}"
    c.only_keys(t, path, DEVICE_KEYS)
    bus_raw = t.get("bus")
    bus: int | str = 1
    if isinstance(bus_raw, bool) or not isinstance(bus_raw, int | str) or (isinstance(bus_raw, int) and bus_raw < 0):
        c.error(f"{path}.bus", "must be a bus number (1 for /dev/i2c-1) or a device path", bus_raw)
    else:
        bus = bus_raw
    poll_s = c.number(t, "poll_ms", path, default=1000, minimum=10, maximum=3_600_000) / 1000
    timeout_s = c.number(t, "timeout_ms", path, default=1000, minimum=10, maximum=60_000) / 1000
    max_age_s = c.number(t, "max_age_ms", path, default=0, minimum=0, maximum=86_400_000) / 1000
    retries = c.integer(t, "retries", path, default=3, minimum=1, maximum=10)
    raw_chips = t.get("chips")
    if not isinstance(raw_chips, list) or not raw_chips:
        c.error(f"{path}.chips", 'must be a non-empty list like [{ name = "battery", type = "ina226", ... }]',
                raw_chips)
        return None
    chips = [chip for i, raw in enumerate(raw_chips) if (chip := _chip(c, raw, f"{path}.chips[{i}]"))]
    if len(chips) != len(raw_chips):
        return None
    return c.build(path, lambda: I2cDeviceConfig(name, bus, tuple(chips), poll_s, timeout_s, retries,
                                                   max_age_s))


def _chip(c: Checker, raw: Any, path: str) -> ChipConfig | None:
    if not isinstance(raw, dict):
        c.error(path, "must be a table { name = ..., type = ..., address = ... }", raw)
        return None
    kind = c.string(raw, "type", path, choices=["ina226", "ct"])
    if kind == "ina226":
        return _ina226(c, raw, path)
    if kind == "ct":
        return _ct(c, raw, path)
    return None


def _ina226(c: Checker, t: dict[str, Any], path: str) -> Ina226ChipConfig | None:
    c.only_keys(t, path, _INA226_KEYS)
    name = c.string(t, "name", path)
    address = c.integer(t, "address", path, default=0x40, minimum=0x40, maximum=0x4F)
    shunt_ohm = c.number(t, "shunt_ohm", path, minimum=0)
    max_current_a = c.number(t, "max_current_a", path, minimum=0)
    averages = c.integer(t, "averages", path, default=16, minimum=1, maximum=1024)
    bus_us = c.integer(t, "bus_conversion_us", path, default=1100, minimum=140, maximum=8244)
    shunt_us = c.integer(t, "shunt_conversion_us", path, default=1100, minimum=140, maximum=8244)
    if any(p.path.startswith(path) for p in c.problems):
        return None
    return c.build(path, lambda: Ina226ChipConfig(name, Ina226Config(
        shunt_ohm=shunt_ohm, max_current_a=max_current_a, address=address, averages=averages,
        bus_conversion_us=bus_us, shunt_conversion_us=shunt_us)))


def _ct(c: Checker, t: dict[str, Any], path: str) -> CtChipConfig | None:
    c.only_keys(t, path, _CT_KEYS)
    name = c.string(t, "name", path)
    address = c.integer(t, "address", path, default=0x48, minimum=0x48, maximum=0x4B)
    mux_name = c.string(t, "input", path, default="AIN0-AIN1", choices=list(_INPUTS))
    full_scale_v = c.number(t, "full_scale_v", path, default=2.048)
    rate = c.integer(t, "data_rate_sps", path, default=860)
    nominal_hz = c.number(t, "nominal_hz", path, default=50.0)
    cycles = c.integer(t, "cycles", path, default=10, minimum=1, maximum=100)
    calibration: CtCalibration | None = None
    if "a_per_v" in t and ("turns_ratio" in t or "burden_ohm" in t):
        c.error(path, "give either a_per_v (a voltage-output CT) or turns_ratio and burden_ohm, not both")
    elif "a_per_v" in t:
        a_per_v = c.number(t, "a_per_v", path, minimum=0)
        calibration = c.build(f"{path}.a_per_v", lambda: CtCalibration.voltage_output(a_per_v))
    elif "turns_ratio" in t or "burden_ohm" in t:
        ratio = c.number(t, "turns_ratio", path, minimum=0)
        burden = c.number(t, "burden_ohm", path, minimum=0)
        calibration = c.build(path, lambda: CtCalibration.burden(ratio, burden))
    else:
        c.error(path, "a CT needs its calibration: a_per_v, or turns_ratio and burden_ohm")
    if calibration is None or mux_name not in _INPUTS or any(p.path.startswith(path) for p in c.problems):
        return None
    cal = calibration
    return c.build(path, lambda: CtChipConfig(name, Ads1115Config(address, _INPUTS[mux_name], full_scale_v, rate,
                                                                    continuous=True), cal, nominal_hz, cycles))
