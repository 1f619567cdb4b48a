"""INA226 driver against the register-level emulator: calibration maths, byte order and sign, IDs,
alerts, conversion timing, resets and overflow, and the register parsers."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.field.i2c_bus import ChipReset, I2cError, Implausible, RetryPolicy, read_register, swap16
from edgeagent.field.ina226 import (
    AlertFunction,
    Calibration,
    Ina226,
    Ina226Alert,
    Ina226Config,
    Mode,
    NotReady,
    WrongChip,
    calibrate,
    decode_alert,
    decode_bus_v,
    decode_current_a,
    decode_power_w,
    decode_shunt_v,
)
from hil.i2c.ads1115 import Ads1115Chip, single_input
from hil.i2c.bus import EmulatedBus
from hil.i2c.clock import SimClock
from hil.i2c.ina226 import Ina226Chip

NO_WAIT = RetryPolicy(3, 0.0, lambda s: None)


class Plant:
    """A settable (bus volts, amps) source for the emulated chip."""

    def __init__(self, bus_v: float = 12.0, current_a: float = 0.0) -> None:
        self.bus_v = bus_v
        self.current_a = current_a

    def __call__(self, t: float) -> tuple[float, float]:
        return self.bus_v, self.current_a


def rig(bus: EmulatedBus, clock: SimClock, plant: Plant, shunt_ohm: float = 0.002, address: int = 0x40,
        max_current_a: float = 10.0, **cfg: Any) -> tuple[Ina226, Ina226Chip]:
    chip = Ina226Chip(plant, shunt_ohm, clock.now)
    bus.attach(address, chip)
    config = Ina226Config(shunt_ohm=shunt_ohm, max_current_a=max_current_a, address=address, **cfg)
    driver = Ina226(bus, config, NO_WAIT, clock.now, clock.sleep)
    driver.setup()
    return driver, chip


def test_datasheet_worked_example(bus: EmulatedBus, clock: SimClock) -> None:
    """Programming section: 2 mΩ shunt, Current_LSB 1 mA -> CAL 2560; 10 A at 12 V gives shunt 8000,
    bus 9600, current 10000 and power 4800 (x 25 mW = 120 W)."""
    cal = calibrate(0.002, 10.0, current_lsb_a=0.001)
    assert cal.cal == 2560
    assert cal.current_lsb_a == pytest.approx(0.001)
    assert cal.power_lsb_w == pytest.approx(0.025)
    driver, _ = rig(bus, clock, Plant(12.0, 10.0), current_lsb_a=0.001, averages=1)
    reading = driver.read()
    assert [read_register(bus, 0x40, r) for r in (0x01, 0x02, 0x04, 0x03, 0x05)] == [8000, 9600, 10000, 4800, 2560]
    values = (reading.shunt_v, reading.bus_v, reading.current_a, reading.power_w)
    assert values == pytest.approx((0.020, 12.0, 10.0, 120.0))


def test_default_current_lsb_is_imax_over_2_to_15() -> None:
    cal = calibrate(0.002, 10.0)
    assert cal.cal == math.floor(0.00512 / (10.0 / 2**15 * 0.002)) == 8388
    assert cal.current_lsb_a >= 10.0 / 2**15
    assert cal.current_lsb_a == pytest.approx(0.00512 / (8388 * 0.002))
    assert cal.power_lsb_w == pytest.approx(25 * cal.current_lsb_a)


def test_calibration_refusals_give_the_numbers() -> None:
    with pytest.raises(ValueError, match=r"CAL = 0.00512 / \(3.05176e-05 A x 0.0001 Ω\) = 1677722, beyond the 15-bit"):
        calibrate(0.0001, 1.0)
    with pytest.raises(ValueError, match=r"current_lsb_a >= 0.00156"):
        Ina226Config(shunt_ohm=0.0001, max_current_a=1.0)
    with pytest.raises(ValueError, match=r"= 0.512, which rounds to 0"):
        calibrate(1.0, 0.05, current_lsb_a=0.01)
    with pytest.raises(ValueError, match=r"drops 100.00 mV, beyond the ±81.92 mV"):
        calibrate(0.001, 100.0)
    with pytest.raises(ValueError, match=r"below I_max / 2\^15"):
        calibrate(0.002, 10.0, current_lsb_a=0.0001)
    with pytest.raises(ValueError, match=r"shunt resistance"):
        calibrate(0.0, 10.0)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("address", 0x50, "0x40-0x4F"), ("averages", 3, "averages"), ("bus_conversion_us", 1000, "bus conversion"),
    ("mode", Mode.POWER_DOWN, "POWER_DOWN"),
])
def test_config_refuses_what_the_chip_cannot_do(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ina226Config(**{"shunt_ohm": 0.002, "max_current_a": 10.0, field: value})  # type: ignore[arg-type]


def test_config_word_encodes_averages_times_and_mode() -> None:
    cfg = Ina226Config(shunt_ohm=0.002, max_current_a=10, averages=64, bus_conversion_us=332,
                       shunt_conversion_us=8244, mode=Mode.SHUNT_TRIGGERED)
    assert cfg.config_word == 0x4000 | 0b011 << 9 | 0b010 << 6 | 0b111 << 3 | 0b001
    assert cfg.conversion_s == pytest.approx(64 * 8244e-6)


@pytest.mark.parametrize(("bus_v", "current_a"), [(12.0, 3.0), (12.0, -3.0), (24.3, -0.5), (0.5, 7.5), (36.0, -9.9)])
def test_byte_order_and_sign(bus: EmulatedBus, clock: SimClock, bus_v: float, current_a: float) -> None:
    driver, _ = rig(bus, clock, Plant(bus_v, current_a))
    reading = driver.read()
    lsb = driver.cfg.calibration.current_lsb_a
    assert reading.bus_v == pytest.approx(bus_v, abs=1.25e-3)
    assert reading.shunt_v == pytest.approx(current_a * 0.002, abs=2.5e-6)
    assert reading.current_a == pytest.approx(current_a, abs=lsb)
    assert reading.power_w == pytest.approx(bus_v * current_a, abs=0.01 * abs(bus_v * current_a) + 0.02)
    assert math.copysign(1, reading.current_a) == math.copysign(1, current_a)
    for register in (0x01, 0x02, 0x04):  # each value would read differently with the bytes swapped
        word = read_register(bus, 0x40, register)
        assert swap16(word) != word


def test_several_chips_on_one_bus(bus: EmulatedBus, clock: SimClock) -> None:
    drivers = [rig(bus, clock, Plant(10.0 + i, -2.0 + i), address=address)[0]
               for i, address in enumerate((0x40, 0x41, 0x45, 0x4F))]
    readings = [d.read() for d in drivers]
    assert [r.bus_v for r in readings] == pytest.approx([10.0, 11.0, 12.0, 13.0])
    assert [r.current_a for r in readings] == pytest.approx([-2.0, -1.0, 0.0, 1.0], abs=3.1e-4)


def test_wrong_chip_is_refused_with_its_ids(bus: EmulatedBus, clock: SimClock) -> None:
    bus.attach(0x48, Ads1115Chip(single_input(lambda t: 0.0), clock.now))  # an ADC where an INA226 should be
    driver = Ina226(bus, Ina226Config(shunt_ohm=0.002, max_current_a=10, address=0x48), NO_WAIT, clock.now, clock.sleep)
    with pytest.raises(WrongChip, match=r"0x48 is not an INA226: manufacturer ID 0x8000 \(expected 0x5449\), "
                                        r"die ID 0x7FFF \(expected 0x2260\)"):
        driver.setup()


def test_floating_bus_at_setup_is_ebadmsg_not_a_wrong_chip(bus: EmulatedBus, clock: SimClock) -> None:
    bus.attach(0x40, Ina226Chip(Plant(), 0.002, clock.now))
    bus.floating = True
    driver = Ina226(bus, Ina226Config(shunt_ohm=0.002, max_current_a=10), NO_WAIT, clock.now, clock.sleep)
    with pytest.raises(I2cError, match=r"EBADMSG.*floating bus") as info:
        driver.setup()
    assert info.value.errno_name == "EBADMSG"


def test_floating_bus_while_reading_is_retried_then_ebadmsg(bus: EmulatedBus, clock: SimClock) -> None:
    driver, _ = rig(bus, clock, Plant(12.0, 1.0))
    driver.read()
    bus.floating = True
    with pytest.raises(I2cError, match=r"EBADMSG.*0xFFFF in the bus voltage register.*3 attempts"):
        driver.read()


def test_chip_reset_is_detected_and_setup_restores_it(bus: EmulatedBus, clock: SimClock) -> None:
    driver, chip = rig(bus, clock, Plant(12.0, 4.0))
    assert driver.read().current_a == pytest.approx(4.0, abs=3.1e-4)
    chip.power_cycle()  # brown-out: CAL back to 0, so the current register would read 0 A
    clock.advance(0.01)
    with pytest.raises(ChipReset, match=r"calibration reads 0x0000, expected 0x20C4"):
        driver.read()
    driver.setup()
    assert driver.read().current_a == pytest.approx(4.0, abs=3.1e-4)


def test_no_new_data_before_the_conversion_time(bus: EmulatedBus, clock: SimClock) -> None:
    plant = Plant(12.0, 1.0)
    driver, chip = rig(bus, clock, plant, averages=4, bus_conversion_us=1100, shunt_conversion_us=1100)
    assert driver.ready_in_s() == pytest.approx(4 * 2.2e-3)
    clock.advance(8.7e-3)
    assert read_register(bus, 0x40, 0x02) == 0  # reset value: the first averaged result is not there yet
    clock.advance(0.2e-3)
    assert read_register(bus, 0x40, 0x02) == 9600
    plant.bus_v = 24.0  # within the second cycle (8.8-17.6 ms), before its first bus sample
    clock.advance(8.5e-3)  # 17.4 ms
    assert read_register(bus, 0x40, 0x02) == 9600
    clock.advance(0.3e-3)  # 17.7 ms
    assert read_register(bus, 0x40, 0x02) == 19200
    assert chip.conversions == 2


def test_read_waits_for_the_first_result_or_says_when_it_comes(bus: EmulatedBus, clock: SimClock) -> None:
    driver, _ = rig(bus, clock, Plant(12.0, 1.0), averages=16)
    t0 = clock.now()
    assert driver.read().bus_v == pytest.approx(12.0)  # it slept (on the emulator's clock) until the result
    assert clock.now() - t0 == pytest.approx(16 * 2.2e-3, abs=1e-3)
    slow, _ = rig(bus, clock, Plant(12.0, 1.0), averages=1024, bus_conversion_us=8244, shunt_conversion_us=8244,
                  address=0x41)
    with pytest.raises(NotReady, match=r"first result in 16.88 s"):
        slow.read()


def test_triggered_mode_converts_once_per_read(bus: EmulatedBus, clock: SimClock) -> None:
    plant = Plant(12.0, 2.0)
    driver, chip = rig(bus, clock, plant, mode=Mode.BOTH_TRIGGERED, averages=4)
    assert driver.read().current_a == pytest.approx(2.0, abs=3.1e-4)
    count = chip.conversions
    plant.current_a = -5.0
    clock.advance(1.0)
    assert chip.conversions == count  # idle between triggers
    assert read_register(bus, 0x40, 0x01) == 1600
    assert driver.read().current_a == pytest.approx(-5.0, abs=3.1e-4)
    assert chip.conversions == count + 1


def test_shunt_only_mode_reports_bus_and_power_as_not_measured(bus: EmulatedBus, clock: SimClock) -> None:
    driver, _ = rig(bus, clock, Plant(12.0, 2.0), mode=Mode.SHUNT_CONTINUOUS)
    reading = driver.read()
    assert reading.current_a == pytest.approx(2.0, abs=3.1e-4)
    assert math.isnan(reading.bus_v) and math.isnan(reading.power_w)


def test_shunt_saturation_and_current_overflow(bus: EmulatedBus, clock: SimClock) -> None:
    plant = Plant(12.0, 50.0)  # 100 mV across 2 mΩ: beyond the ±81.92 mV input
    driver, _ = rig(bus, clock, plant, max_current_a=40.0)
    reading = driver.read()
    assert reading.saturated
    assert reading.shunt_v == pytest.approx(0.0819175)
    plant.current_a = -50.0
    clock.advance(0.05)
    assert driver.read().shunt_v == pytest.approx(-0.08192)
    over, _ = rig(bus, clock, Plant(12.0, 30.0), address=0x41)  # CAL 8388 > 2048: current register overflows
    reading = over.read()
    assert reading.saturated
    assert read_register(bus, 0x41, 0x04) == 0x7FFF
    assert over.read_flags().math_overflow


@pytest.mark.parametrize("alert", [
    Ina226Alert(AlertFunction.CURRENT_OVER, 7.5),
    Ina226Alert(AlertFunction.CURRENT_UNDER, -2.5, active_high=True),
    Ina226Alert(AlertFunction.BUS_OVER, 14.4, latch=True),
    Ina226Alert(AlertFunction.BUS_UNDER, 10.5, conversion_ready=True),
    Ina226Alert(AlertFunction.POWER_OVER, 250.0, active_high=True, latch=True),
    Ina226Alert(None, conversion_ready=True),
])
def test_alert_config_round_trips_through_the_chip(bus: EmulatedBus, clock: SimClock, alert: Ina226Alert) -> None:
    driver, _ = rig(bus, clock, Plant(), alert=alert)
    back = driver.read_alert()
    assert back is not None
    assert back.limit == pytest.approx(alert.limit, abs=driver.cfg.calibration.power_lsb_w)
    assert dataclasses.replace(back, limit=alert.limit) == alert


def test_alert_limit_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"alert limit 50.0 V for BUS_OVER is out of range"):
        Ina226Config(shunt_ohm=0.002, max_current_a=10, alert=Ina226Alert(AlertFunction.BUS_OVER, 50.0))


def test_alert_pin_fires_over_the_limit_and_follows_it_when_transparent(bus: EmulatedBus, clock: SimClock) -> None:
    plant = Plant(12.0, 2.0)
    driver, chip = rig(bus, clock, plant, averages=1, alert=Ina226Alert(AlertFunction.CURRENT_OVER, 5.0))
    clock.advance(0.01)
    assert not chip.alert_asserted and chip.alert_pin_high  # open drain, active low: idle high
    plant.current_a = 6.0
    clock.advance(0.01)
    assert chip.alert_asserted and not chip.alert_pin_high
    assert driver.read_flags().alert_function
    plant.current_a = 4.0
    clock.advance(0.01)
    assert not chip.alert_asserted


def test_latched_alert_holds_until_mask_enable_is_read(bus: EmulatedBus, clock: SimClock) -> None:
    plant = Plant(12.0, 1.0)
    driver, chip = rig(bus, clock, plant, averages=1,
                       alert=Ina226Alert(AlertFunction.POWER_OVER, 100.0, active_high=True, latch=True))
    plant.current_a = 9.0  # 108 W
    clock.advance(0.01)
    assert chip.alert_asserted and chip.alert_pin_high  # active high
    plant.current_a = 1.0
    clock.advance(0.01)
    assert chip.alert_asserted  # latched
    assert driver.read_flags().alert_function
    assert not chip.alert_asserted and not chip.alert_pin_high


def test_conversion_ready_flag_is_set_per_result_and_cleared_by_reading(bus: EmulatedBus, clock: SimClock) -> None:
    driver, chip = rig(bus, clock, Plant(), averages=4, alert=Ina226Alert(None, conversion_ready=True))
    assert not driver.read_flags().conversion_ready
    clock.advance(0.009)
    assert chip.alert_asserted
    assert driver.read_flags().conversion_ready
    assert not chip.alert_asserted
    assert not driver.read_flags().conversion_ready


@given(st.integers(0, 0xFFFF))
def test_shunt_and_current_words_decode_in_range(word: int) -> None:
    cal = calibrate(0.002, 10.0)
    assert -0.08192 <= decode_shunt_v(word) <= 0.0819175
    assert -32768 * cal.current_lsb_a <= decode_current_a(word, cal) <= 32767 * cal.current_lsb_a


@given(st.integers(0, 0xFFFF))
def test_bus_and_power_words_decode_in_range_or_clearly_refuse(word: int) -> None:
    cal = Calibration(2560, 0.001, 0.025)
    if word < 0x8000:
        assert 0.0 <= decode_bus_v(word) < 40.96
    else:
        with pytest.raises(Implausible, match=r"bit 15 is always 0"):
            decode_bus_v(word)
    if word <= 0x8000 * 0x7FFF // 20000:
        assert 0.0 <= decode_power_w(word, cal) <= 53686 * 0.025
    else:
        with pytest.raises(Implausible, match=r"above the largest possible"):
            decode_power_w(word, cal)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
def test_any_alert_registers_decode_to_a_finite_setup(mask: int, limit: int) -> None:
    alert = decode_alert(mask, limit, 0.002, calibrate(0.002, 10.0))
    if alert is not None:
        assert math.isfinite(alert.limit)


@settings(max_examples=60)
@given(st.floats(-40.0, 40.0), st.floats(0.0, 36.0))
def test_any_current_and_bus_voltage_read_back_within_an_lsb(current_a: float, bus_v: float) -> None:
    clock = SimClock()
    bus = EmulatedBus(clock)
    driver, _ = rig(bus, clock, Plant(bus_v, current_a), max_current_a=40.0, averages=1)
    reading = driver.read()
    lsb = driver.cfg.calibration.current_lsb_a
    assert reading.current_a == pytest.approx(current_a, abs=lsb + 1.25e-3)
    assert reading.bus_v == pytest.approx(bus_v, abs=0.7e-3)
