"""The I2C bus as edgeagent uses it: the slice of `smbus2.SMBus` the chip drivers call, opening a
real bus with an error a technician can act on, retrying a real bus's transient errors, and the
byte order of the MSB-first chips (INA226, ADS1115) on an SMBus word transfer.

Why the swap: SMBus defines a word as low byte first, and the kernel (hence `read_word_data`) packs
the first byte on the wire into bits 0-7. TI's monitors and ADCs send their 16-bit registers MSB
first, so the word smbus2 returns has its bytes the wrong way round, and a word written must be
swapped before it is sent. Forgetting this is the classic bug: 12 V on an INA226 (0x2580) reads
as 0x8025.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import smbus2

T = TypeVar("T")

#: Transient errors of a real bus (arbitration lost, a NACK mid-transfer, clock stretching too long).
RETRYABLE_ERRNOS = frozenset({errno.EIO, errno.EREMOTEIO, errno.ETIMEDOUT, errno.EAGAIN})
#: The bus itself is gone (USB-I2C adapter unplugged, file descriptor closed): nothing to retry.
BUS_GONE_ERRNOS = frozenset({errno.ENODEV, errno.EBADF, errno.ESHUTDOWN, errno.ENOENT})


class I2cBus(Protocol):
    """The subset of `smbus2.SMBus` used here; `hil.i2c.bus.EmulatedBus` offers the same."""

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int: ...

    def write_word_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None: ...

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int,
                            force: bool | None = None) -> list[int]: ...

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int],
                             force: bool | None = None) -> None: ...

    def close(self) -> None: ...


BusFactory = Callable[[int | str], I2cBus]


def errno_name(code: int | None) -> str:
    """`EIO` for 5, and so on; a number without a symbolic name is shown as such."""
    if code is None:
        return "OSError"
    return errno.errorcode.get(code, f"errno {code}")


class I2cError(Exception):
    """A transfer that failed for good. `errno_name` is what a point's BAD reason starts with."""

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.errno = code
        self.errno_name = errno_name(code)


class BusUnavailable(I2cError):
    """The bus cannot be opened or has vanished: every point on it goes STALE."""


class ChipReset(Exception):
    """A chip no longer holds the configuration written to it (brown-out, reset): configure it again."""


class Implausible(Exception):
    """A register value the chip cannot produce (bit patterns of a floating bus, 0xFFFF).

    Drivers raise it from their parsers; `with_retries` retries it like EIO and then reports it
    as EBADMSG, the errno Linux itself uses for corrupt I2C data (a PEC mismatch)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """`attempts` transfers in all, sleeping `backoff_s` x attempt between them."""

    attempts: int = 3
    backoff_s: float = 0.002
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"retry attempts must be at least 1, got {self.attempts}")
        if self.backoff_s < 0:
            raise ValueError(f"retry backoff must not be negative, got {self.backoff_s} s")


DEFAULT_RETRY = RetryPolicy()


def with_retries(op: Callable[[], T], what: str, policy: RetryPolicy) -> T:
    """Run `op`, retrying transient errors; raise `I2cError` (or `BusUnavailable`) naming the errno.

    ENXIO (no device acknowledges the address) is not retried: a missing or miswired chip does not
    come back within milliseconds, and the caller polls again anyway."""
    last_code: int | None = None
    last_text = ""
    for attempt in range(1, policy.attempts + 1):
        try:
            return op()
        except Implausible as exc:
            last_code, last_text = errno.EBADMSG, f"implausible reading: {exc}"
        except OSError as exc:
            code = exc.errno
            text = (exc.strerror or os.strerror(code)) if code is not None else str(exc)
            if code in BUS_GONE_ERRNOS:
                raise BusUnavailable(f"{errno_name(code)} ({text}) {what}: the I2C bus is gone", code) from exc
            if code == errno.ENXIO:
                raise I2cError(f"ENXIO (no device acknowledges) {what}: check the wiring, the supply and "
                               "the address pins", code) from exc
            if code not in RETRYABLE_ERRNOS:
                raise I2cError(f"{errno_name(code)} ({text}) {what}", code) from exc
            last_code, last_text = code, text
        if attempt < policy.attempts:
            policy.sleep(policy.backoff_s * attempt)
    raise I2cError(f"{errno_name(last_code)} ({last_text}) {what}, {policy.attempts} attempts", last_code)


def bus_path(bus: int | str) -> str:
    return f"/dev/i2c-{bus}" if isinstance(bus, int) else bus


def _smbus2(bus: int | str) -> I2cBus:
    return smbus2.SMBus(bus)


def open_bus(bus: int | str, factory: BusFactory = _smbus2) -> I2cBus:
    """Open bus `bus` (a number N for /dev/i2c-N, or a path); `factory` stands in for smbus2 in tests."""
    path = bus_path(bus)
    try:
        return factory(bus)
    except FileNotFoundError:
        raise BusUnavailable(f"{path} does not exist: enable the I2C controller (on a Raspberry Pi "
                             "dtparam=i2c_arm=on) and load the i2c-dev module (modprobe i2c-dev)",
                             errno.ENOENT) from None
    except PermissionError as exc:
        raise BusUnavailable(f"no permission to open {path}: add the user to group i2c "
                             "(usermod -aG i2c <user>, then log in again)", exc.errno) from None
    except OSError as exc:
        raise BusUnavailable(f"cannot open {path}: {errno_name(exc.errno)} ({exc.strerror or exc})",
                             exc.errno) from None


def swap16(word: int) -> int:
    """Swap the two bytes of a 16-bit word (its own inverse)."""
    return ((word & 0xFF) << 8) | ((word >> 8) & 0xFF)


def to_signed16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def to_word16(value: int) -> int:
    """The two's-complement register word of a signed or unsigned 16-bit value."""
    if not -0x8000 <= value <= 0xFFFF:
        raise ValueError(f"{value} does not fit a 16-bit register")
    return value & 0xFFFF


def read_register(bus: I2cBus, address: int, register: int) -> int:
    """The 16-bit value of an MSB-first register (one SMBus word read, bytes swapped)."""
    return swap16(bus.read_word_data(address, register) & 0xFFFF)


def write_register(bus: I2cBus, address: int, register: int, value: int) -> None:
    """Write a 16-bit value to an MSB-first register (bytes swapped for the SMBus word write)."""
    bus.write_word_data(address, register, swap16(to_word16(value)))
