"""ADS1115 driver against the register-level emulator, and CT true RMS over whole cycles."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.field.ads1115 import (
    FULL_SCALES_V,
    Ads1115,
    Ads1115Config,
    CtCalibration,
    Mux,
    decode_conversion_v,
    measure_ct,
    rms_whole_cycles,
)
from edgeagent.field.i2c_bus import I2cError, RetryPolicy, read_register, swap16, write_register
from hil.i2c.ads1115 import Ads1115Chip, single_input
from hil.i2c.bus import EmulatedBus
from hil.i2c.clock import SimClock

NO_WAIT = RetryPolicy(3, 0.0, lambda s: None)


def adc(bus: EmulatedBus, clock: SimClock, signal: Callable[[float], float], rate_error: float = 0.0,
        **cfg: object) -> tuple[Ads1115, Ads1115Chip]:
    chip = Ads1115Chip(single_input(signal), clock.now, rate_error=rate_error)
    bus.attach(0x48, chip)
    config = Ads1115Config(**{"mux": Mux.AIN0, **cfg})  # type: ignore[arg-type]
    return Ads1115(bus, config, NO_WAIT, clock.now, clock.sleep), chip


def sine(rms: float, hz: float, offset_v: float = 0.0, phase: float = 0.4) -> Callable[[float], float]:
    return lambda t: offset_v + rms * math.sqrt(2) * math.sin(2 * math.pi * hz * t + phase)


@pytest.mark.parametrize("full_scale_v", FULL_SCALES_V)
def test_pga_full_scales_and_clipping(bus: EmulatedBus, clock: SimClock, full_scale_v: float) -> None:
    level = {"v": 0.5 * full_scale_v}
    driver, _ = adc(bus, clock, lambda t: level["v"], full_scale_v=full_scale_v)
    assert driver.single_shot_v() == pytest.approx(0.5 * full_scale_v)
    assert driver.read_code() == 16384
    level["v"] = 1.5 * full_scale_v
    assert driver.single_shot_v() == pytest.approx(full_scale_v * 32767 / 32768)
    level["v"] = -1.5 * full_scale_v
    assert driver.single_shot_v() == -full_scale_v


def test_negative_differential_input_byte_order_and_sign(bus: EmulatedBus, clock: SimClock) -> None:
    chip = Ads1115Chip(lambda t: (1.0, 2.0, 0.0, 0.0), clock.now)
    bus.attach(0x49, chip)
    driver = Ads1115(bus, Ads1115Config(address=0x49, mux=Mux.AIN0_AIN1, full_scale_v=2.048), NO_WAIT, clock.now,
                     clock.sleep)
    assert driver.single_shot_v() == pytest.approx(-1.0, abs=6.25e-5)
    word = read_register(bus, 0x49, 0x00)
    assert word == (-16000) & 0xFFFF and swap16(word) != word


def test_single_shot_os_bit_and_conversion_time(bus: EmulatedBus, clock: SimClock) -> None:
    _, chip = adc(bus, clock, lambda t: 1.0 if t >= 0.0005 else 0.25, data_rate_sps=128)
    assert read_register(bus, 0x48, 0x01) & 0x8000  # powered down, not converting
    write_register(bus, 0x48, 0x01, Ads1115Config(mux=Mux.AIN0, data_rate_sps=128).config_word(start=True))
    assert not read_register(bus, 0x48, 0x01) & 0x8000
    clock.advance(1 / 128 - 1e-4)
    assert read_register(bus, 0x48, 0x00) == 0  # no result before 1/DR
    clock.advance(2e-4)
    assert read_register(bus, 0x48, 0x01) & 0x8000
    assert read_register(bus, 0x48, 0x00) == 16000
    assert chip.conversions == 1
    clock.advance(1.0)
    assert chip.conversions == 1  # single-shot: powered down after one conversion


def test_continuous_mode_converts_at_the_data_rate(bus: EmulatedBus, clock: SimClock) -> None:
    driver, chip = adc(bus, clock, lambda t: t, data_rate_sps=250, continuous=True, full_scale_v=6.144)
    write_register(bus, 0x48, 0x01, driver.cfg.config_word())
    start = clock.now()
    clock.advance(0.0039)
    assert read_register(bus, 0x48, 0x00) == 0
    clock.advance(0.0002)
    assert decode_conversion_v(read_register(bus, 0x48, 0x00), 6.144) == pytest.approx(start + 0.004, abs=2e-4)
    clock.advance(1.0)
    assert chip.conversions == 251
    assert not read_register(bus, 0x48, 0x01) & 0x8000  # OS reads 0: always converting


def test_config_readback_and_floating_bus(bus: EmulatedBus, clock: SimClock) -> None:
    driver, _ = adc(bus, clock, lambda t: 0.1, continuous=True)
    driver.configure()
    assert read_register(bus, 0x48, 0x01) & 0x7FFF == driver.cfg.config_word()
    bus.floating = True
    with pytest.raises(I2cError, match=r"EBADMSG.*floating bus"):
        driver.check_config()


@pytest.mark.parametrize(("field", "value", "message"), [
    ("address", 0x40, "0x48-0x4B"), ("full_scale_v", 3.0, "full scale"), ("data_rate_sps", 100, "data rate"),
])
def test_config_refuses_what_the_chip_cannot_do(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Ads1115Config(**{field: value})  # type: ignore[arg-type]


def test_comparator_traditional_window_and_latch(bus: EmulatedBus, clock: SimClock) -> None:
    level = {"v": 0.0}
    _, chip = adc(bus, clock, lambda t: level["v"])
    write_register(bus, 0x48, 0x03, 16000)  # Hi_thresh 1.0 V at ±2.048 V
    write_register(bus, 0x48, 0x02, 8000)  # Lo_thresh 0.5 V
    base = 0x4000 | 0b010 << 9 | 0b111 << 5  # AIN0, ±2.048 V, continuous, 860 SPS
    write_register(bus, 0x48, 0x01, base | 0b01)  # traditional, active low, assert after 2 conversions
    level["v"] = 1.2
    clock.advance(1.5 / 860)
    assert not chip.alert_asserted  # one conversion over the limit is not enough
    clock.advance(1 / 860)
    assert chip.alert_asserted and not chip.alert_pin_high
    level["v"] = 0.7  # within the hysteresis band: stays asserted
    clock.advance(3 / 860)
    assert chip.alert_asserted
    level["v"] = 0.3
    clock.advance(1 / 860)
    assert not chip.alert_asserted
    write_register(bus, 0x48, 0x01, base | 0x0010 | 0x0004)  # window, latching, queue 1
    clock.advance(2 / 860)  # 0.3 V is below Lo_thresh: outside the window
    assert chip.alert_asserted
    level["v"] = 0.7
    clock.advance(2 / 860)
    assert chip.alert_asserted  # latched
    read_register(bus, 0x48, 0x00)
    assert not chip.alert_asserted


def test_ct_calibrations() -> None:
    assert CtCalibration.burden(2000, 33.0).a_per_v == pytest.approx(2000 / 33)
    assert CtCalibration.voltage_output(100.0).a_per_v == 100.0
    with pytest.raises(ValueError, match=r"burden resistor"):
        CtCalibration.burden(2000, 0.0)
    with pytest.raises(ValueError, match=r"turns ratio"):
        CtCalibration.burden(-1, 10.0)
    with pytest.raises(ValueError, match=r"A/V"):
        CtCalibration.voltage_output(math.nan)


@pytest.mark.parametrize(("hz", "nominal_hz", "offset_v", "mux", "rate_error", "transfer_s"), [
    (50.0, 50.0, 0.0, Mux.AIN0_AIN1, 0.0, 0.0),
    (50.0, 50.0, 1.65, Mux.AIN0, 0.0, 0.0),  # a CT biased at mid-rail on a single-ended input
    (49.5, 50.0, 1.65, Mux.AIN0, 0.0, 0.0),  # off-nominal grid frequency
    (60.0, 60.0, 0.0, Mux.AIN0_AIN1, 0.0, 0.0),
    (50.4, 50.0, 0.2, Mux.AIN0, 0.07, 1.2e-4),  # a fast oscillator and a bus that takes time per read
])
def test_ct_true_rms_of_a_sine_within_one_percent(clock: SimClock, hz: float, nominal_hz: float, offset_v: float,
                                                  mux: Mux, rate_error: float, transfer_s: float) -> None:
    bus = EmulatedBus(clock, transfer_s=transfer_s)
    ct = CtCalibration.burden(2000, 33.0)  # 20 A primary -> 10 mA secondary -> 0.33 V
    driver, _ = adc(bus, clock, sine(0.33, hz, offset_v), rate_error, mux=mux, full_scale_v=4.096, continuous=True)
    reading = measure_ct(driver, ct, nominal_hz, cycles=10)
    assert reading.rms_a == pytest.approx(20.0, rel=0.01)
    assert reading.cycles == 10 or reading.cycles == 11
    assert reading.samples >= 10 * 860 / hz * 0.8
    assert not reading.clipped


def test_ct_clipping_is_flagged(bus: EmulatedBus, clock: SimClock) -> None:
    driver, _ = adc(bus, clock, sine(1.0, 50.0), full_scale_v=0.512, continuous=True)
    reading = measure_ct(driver, CtCalibration.voltage_output(30.0), 50.0, cycles=4)
    assert reading.clipped
    assert reading.rms_a < 30.0 * 0.6


def test_whole_cycles_matter() -> None:
    """10.4 cycles at 49.5 Hz: the RMS over whole cycles is exact, over the raw block it is not."""
    t = np.arange(0.0, 10.4 / 49.5, 1 / 860)
    v = 2.0 + 1.0 * math.sqrt(2) * np.sin(2 * np.pi * 49.5 * t + 1.3)
    result = rms_whole_cycles(t, v, 50.0)
    assert result.rms == pytest.approx(1.0, rel=2e-3)
    assert result.cycles == 9 or result.cycles == 10
    naive = float(np.std(v))
    assert abs(naive - 1.0) > 3 * abs(result.rms - 1.0)


def test_rms_refuses_unusable_blocks() -> None:
    with pytest.raises(ValueError, match=r"shorter than one 50 Hz cycle"):
        rms_whole_cycles([0.0, 0.005, 0.01], [0.0, 1.0, 0.0], 50.0)
    with pytest.raises(ValueError, match=r"increase strictly"):
        rms_whole_cycles([0.0, 0.03, 0.02, 0.05], [0.0, 1.0, 0.0, 1.0], 50.0)
    with pytest.raises(ValueError, match=r"finite"):
        rms_whole_cycles([0.0, 0.01, 0.03], [0.0, math.nan, 0.0], 50.0)
    assert rms_whole_cycles([0.0, 0.01, 0.02, 0.03], [0.5] * 4, 50.0).rms == 0.0


@given(st.integers(0, 0xFFFF), st.sampled_from(FULL_SCALES_V))
def test_any_conversion_word_decodes_within_full_scale(word: int, full_scale_v: float) -> None:
    volts = decode_conversion_v(word, full_scale_v)
    assert math.isfinite(volts)
    assert -full_scale_v <= volts < full_scale_v


@settings(max_examples=80)
@given(st.floats(0.05, 2.0), st.floats(45.0, 55.0), st.floats(-1.0, 1.0), st.floats(0.0, 2 * math.pi),
       st.floats(0.0, 0.01))
def test_rms_of_any_sine_near_nominal_within_one_percent(rms: float, hz: float, offset: float, phase: float,
                                                         noise: float) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(0.0, 11.5 / 50.0, 1 / 860)
    t += rng.uniform(0, 2e-4, size=t.size)  # read-time jitter
    v = offset + rms * math.sqrt(2) * np.sin(2 * np.pi * hz * t + phase) + rng.normal(0, noise * rms, size=t.size)
    assert rms_whole_cycles(t, v, 50.0).rms == pytest.approx(rms, rel=0.01)
