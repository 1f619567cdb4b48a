"""The bus layer: wire byte order, retries with errno names, opening a real bus, the emulated bus's faults."""

from __future__ import annotations

import errno
import re
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgeagent.field.i2c_bus import (
    BusUnavailable,
    I2cBus,
    I2cError,
    Implausible,
    RetryPolicy,
    open_bus,
    read_register,
    swap16,
    to_signed16,
    with_retries,
    write_register,
)
from hil.i2c.bus import EmulatedBus
from hil.i2c.clock import SimClock
from hil.i2c.ina226 import Ina226Chip


def ina(bus: EmulatedBus, clock: SimClock, bus_v: float = 12.0, current_a: float = 3.0, address: int = 0x40) -> None:
    bus.attach(address, Ina226Chip(lambda t: (bus_v, current_a), 0.002, clock.now))
    clock.advance(0.01)  # the power-on conversion (1 x 1.1 ms + 1.1 ms) has completed


def test_word_read_packs_the_msb_first_bytes_like_the_kernel(bus: EmulatedBus, clock: SimClock) -> None:
    ina(bus, clock, bus_v=12.0)
    assert bus.read_i2c_block_data(0x40, 0x02, 2) == [0x25, 0x80]  # 9600 x 1.25 mV, MSB first on the wire
    assert bus.read_word_data(0x40, 0x02) == 0x8025  # SMBus: first byte in bits 0-7
    assert read_register(bus, 0x40, 0x02) == 0x2580


def test_a_driver_that_forgot_the_swap_reads_nonsense(bus: EmulatedBus, clock: SimClock) -> None:
    ina(bus, clock, bus_v=12.0, current_a=-3.0)
    naive_bus = bus.read_word_data(0x40, 0x02)
    naive_shunt = to_signed16(bus.read_word_data(0x40, 0x01))
    assert naive_bus * 1.25e-3 != pytest.approx(12.0, abs=0.1)
    assert naive_bus & 0x8000  # impossible for the bus register: the driver's plausibility check catches it
    assert naive_shunt * 2.5e-6 != pytest.approx(-0.006, abs=1e-4)
    assert to_signed16(read_register(bus, 0x40, 0x01)) * 2.5e-6 == pytest.approx(-0.006)


def test_word_write_is_swapped_onto_the_wire(bus: EmulatedBus, clock: SimClock) -> None:
    ina(bus, clock)
    write_register(bus, 0x40, 0x05, 0x20C4)
    assert bus.read_i2c_block_data(0x40, 0x05, 2) == [0x20, 0xC4]
    bus.write_word_data(0x40, 0x05, 0x20C4)  # what a driver without the swap would send
    assert read_register(bus, 0x40, 0x05) == 0x4420  # 0xC420 with the reserved bit 15 cleared


def test_empty_address_is_enxio_and_not_retried(bus: EmulatedBus) -> None:
    with pytest.raises(I2cError, match=r"ENXIO") as info:
        with_retries(lambda: read_register(bus, 0x45, 0), "reading 0x45", RetryPolicy(sleep=lambda s: None))
    assert info.value.errno_name == "ENXIO"
    assert bus.transfers == 1


def test_transient_errors_are_retried_with_growing_backoff(bus: EmulatedBus, clock: SimClock) -> None:
    ina(bus, clock)
    slept: list[float] = []
    bus.fail_next(2, errno.EIO)
    word = with_retries(lambda: read_register(bus, 0x40, 0xFE), "id", RetryPolicy(3, 0.002, slept.append))
    assert word == 0x5449
    assert bus.transfers == 3
    assert slept == [0.002, 0.004]


@pytest.mark.parametrize("code", [errno.EIO, errno.ETIMEDOUT, errno.EREMOTEIO, errno.EAGAIN])
def test_retries_exhausted_name_the_errno(bus: EmulatedBus, clock: SimClock, code: int) -> None:
    ina(bus, clock)
    bus.fail_next(5, code)
    with pytest.raises(I2cError) as info:
        with_retries(lambda: read_register(bus, 0x40, 0x02), "reading bus volts", RetryPolicy(4, 0, lambda s: None))
    assert info.value.errno == code
    assert str(info.value).startswith(errno.errorcode[code])
    assert "4 attempts" in str(info.value) and "reading bus volts" in str(info.value)
    assert bus.transfers == 4


def test_faults_can_target_one_address(bus: EmulatedBus, clock: SimClock) -> None:
    ina(bus, clock, address=0x40)
    ina(bus, clock, address=0x41)
    bus.fail_next(1, errno.EIO, address=0x41)
    assert read_register(bus, 0x40, 0xFE) == 0x5449
    with pytest.raises(OSError, match=r"Input/output"):
        read_register(bus, 0x41, 0xFE)
    assert read_register(bus, 0x41, 0xFE) == 0x5449


def test_implausible_values_are_retried_then_reported_as_ebadmsg(bus: EmulatedBus, clock: SimClock) -> None:
    ina(bus, clock)
    bus.floating = True
    assert read_register(bus, 0x40, 0x02) == 0xFFFF
    before = bus.transfers

    def checked() -> int:
        word = read_register(bus, 0x40, 0x02)
        if word & 0x8000:
            raise Implausible(f"0x{word:04X}")
        return word

    with pytest.raises(I2cError, match=r"EBADMSG.*0xFFFF") as info:
        with_retries(checked, "reading bus volts", RetryPolicy(3, 0, lambda s: None))
    assert info.value.errno == errno.EBADMSG
    assert bus.transfers - before == 3


def test_unplugged_adapter_is_bus_gone_without_retries(bus: EmulatedBus, clock: SimClock) -> None:
    ina(bus, clock)
    bus.unplug()
    with pytest.raises(BusUnavailable, match=r"ENODEV.*bus is gone"):
        with_retries(lambda: read_register(bus, 0x40, 0x02), "reading", RetryPolicy(3, 0, lambda s: None))
    bus.plug()
    assert read_register(bus, 0x40, 0xFF) == 0x2260
    bus.close()
    with pytest.raises(OSError) as info:
        read_register(bus, 0x40, 0xFF)
    assert info.value.errno == errno.EBADF


def test_other_errors_are_not_retried(bus: EmulatedBus, clock: SimClock) -> None:
    ina(bus, clock)
    bus.fail_next(3, errno.EINVAL)
    with pytest.raises(I2cError, match=r"^EINVAL"):
        with_retries(lambda: read_register(bus, 0x40, 0x02), "reading", RetryPolicy(3, 0, lambda s: None))
    assert bus.transfers == 1


def test_retry_policy_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match=r"at least 1"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match=r"negative"):
        RetryPolicy(backoff_s=-1)


def test_open_missing_bus_says_what_to_enable() -> None:
    with pytest.raises(BusUnavailable, match=r"/dev/i2c-4093 does not exist.*modprobe i2c-dev"):
        open_bus(4093)


def test_open_without_permission_says_add_the_user_to_group_i2c() -> None:
    def denied(bus: int | str) -> I2cBus:
        raise PermissionError(errno.EACCES, "Permission denied", f"/dev/i2c-{bus}")

    with pytest.raises(BusUnavailable, match=r"no permission to open /dev/i2c-1: add the user to group i2c"):
        open_bus(1, denied)


def test_open_something_that_is_not_an_i2c_bus(tmp_path: Path) -> None:
    path = tmp_path / "not-a-bus"
    path.write_bytes(b"")
    with pytest.raises(BusUnavailable, match=re.escape(f"cannot open {path}: ENOTTY")):
        open_bus(str(path))  # the real smbus2: the I2C_FUNCS ioctl fails on a plain file


def test_emulated_bus_refuses_what_smbus2_would_not_send(bus: EmulatedBus) -> None:
    with pytest.raises(ValueError, match=r"word value"):
        bus.write_word_data(0x40, 0, 0x10000)
    with pytest.raises(ValueError, match=r"block length"):
        bus.read_i2c_block_data(0x40, 0, 33)
    with pytest.raises(ValueError, match=r"7-bit"):
        bus.attach(0x80, Ina226Chip(lambda t: (0.0, 0.0), 0.1, time.monotonic))


def test_sim_clock_sleeps_skip_ahead_and_can_follow_real_time() -> None:
    manual = SimClock(5.0)
    manual.sleep(0.25)
    assert manual.now() == 5.25
    with pytest.raises(ValueError, match=r"negative"):
        manual.sleep(-1)
    real = SimClock(follow_real=True)
    first = real.now()
    real.sleep(10.0)
    time.sleep(0.01)
    assert real.now() - first >= 10.01


@given(st.integers(0, 0xFFFF))
def test_swap_is_its_own_inverse_and_signed_words_stay_in_range(word: int) -> None:
    assert swap16(swap16(word)) == word
    assert -0x8000 <= to_signed16(word) <= 0x7FFF
    assert to_signed16(word) & 0xFFFF == word
