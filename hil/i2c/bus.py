"""`EmulatedBus`: a stand-in for `smbus2.SMBus` with emulated chips attached by address.

Wire-faithful: a chip hands the bus the bytes it would clock out (MSB first for TI's monitors), and
the bus packs them as the kernel's SMBus word transfer does (first byte on the wire in bits 0-7),
so a driver that forgets the byte swap reads nonsense here as it would on hardware.

Faults as a real bus shows them: ENXIO for an address nobody acknowledges, injected EIO/ETIMEDOUT
on the next N transfers, a floating bus reading all ones (0xFFFF), and an unplugged adapter (ENODEV).
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from hil.i2c.clock import SimClock

BLOCK_MAX = 32  # I2C_SMBUS_BLOCK_MAX, the longest block smbus2 transfers


class Chip(Protocol):
    """An emulated I2C target: `read` returns the bytes it sends, `write` takes the bytes after the
    register pointer (none: only the pointer was written)."""

    def read(self, register: int, length: int) -> bytes: ...

    def write(self, register: int, data: bytes) -> None: ...


class EmulatorLimit(ValueError):
    """A transfer the emulator does not model (rather than invent what the silicon would do)."""


def _os_error(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass
class _Fault:
    remaining: int
    code: int
    address: int | None


class EmulatedBus:
    """Drop-in for `smbus2.SMBus` (the methods edgeagent uses, plus byte transfers).

    `transfer_s` advances `clock` by that much per transfer, like the time the bytes take on the
    wire (about 0.1 ms for a word at 400 kHz), so a driver's timing meets a bus that is not free.
    """

    def __init__(self, clock: SimClock | None = None, transfer_s: float = 0.0) -> None:
        self.clock = clock if clock is not None else SimClock()
        self.transfer_s = transfer_s
        self.floating = False
        self.transfers = 0
        self.failed = 0
        self.closed = False
        self._chips: dict[int, Chip] = {}
        self._faults: list[_Fault] = []
        self._unplugged = False
        self._lock = threading.RLock()

    def attach(self, address: int, chip: Chip) -> None:
        if not 0x03 <= address <= 0x77:
            raise ValueError(f"0x{address:02X} is not a 7-bit I2C target address (0x03-0x77)")
        with self._lock:
            if address in self._chips:
                raise ValueError(f"address 0x{address:02X} already has a chip attached")
            self._chips[address] = chip

    def detach(self, address: int) -> None:
        with self._lock:
            self._chips.pop(address, None)

    def fail_next(self, count: int, code: int = errno.EIO, address: int | None = None) -> None:
        """The next `count` transfers (to `address`, or to any) fail with OSError `code`."""
        with self._lock:
            self._faults.append(_Fault(count, code, address))

    def unplug(self) -> None:
        """The adapter vanishes (a USB-I2C dongle pulled): every transfer fails with ENODEV."""
        with self._lock:
            self._unplugged = True

    def plug(self) -> None:
        with self._lock:
            self._unplugged = False

    @property
    def unplugged(self) -> bool:
        return self._unplugged

    def _chip(self, address: int) -> Chip | None:
        """Account for one transfer and raise the fault it meets; None on a floating bus."""
        if self.closed:
            raise _os_error(errno.EBADF)
        if self._unplugged:
            raise _os_error(errno.ENODEV)
        self.transfers += 1
        if self.transfer_s:
            self.clock.advance(self.transfer_s)
        for fault in self._faults:
            if fault.remaining > 0 and fault.address in (None, address):
                fault.remaining -= 1
                self.failed += 1
                self._faults = [f for f in self._faults if f.remaining > 0]
                raise _os_error(fault.code)
        if self.floating:
            return None
        chip = self._chips.get(address)
        if chip is None:
            raise _os_error(errno.ENXIO)
        return chip

    def _read(self, address: int, register: int, length: int) -> bytes:
        with self._lock:
            chip = self._chip(address)
            if chip is None:
                return b"\xff" * length
            data = chip.read(register & 0xFF, length)
            if len(data) != length:
                raise EmulatorLimit(f"chip at 0x{address:02X} returned {len(data)} bytes for {length}")
            return data

    def _write(self, address: int, register: int, data: bytes) -> None:
        with self._lock:
            chip = self._chip(address)
            if chip is not None:
                chip.write(register & 0xFF, data)

    # The smbus2.SMBus interface.

    def read_byte_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        return self._read(i2c_addr, register, 1)[0]

    def write_byte_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        if not 0 <= value <= 0xFF:
            raise ValueError(f"byte value {value} out of range")
        self._write(i2c_addr, register, bytes([value]))

    def read_word_data(self, i2c_addr: int, register: int, force: bool | None = None) -> int:
        first, second = self._read(i2c_addr, register, 2)
        return first | second << 8

    def write_word_data(self, i2c_addr: int, register: int, value: int, force: bool | None = None) -> None:
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"word value {value} out of range 0..0xFFFF")
        self._write(i2c_addr, register, bytes([value & 0xFF, value >> 8]))

    def read_i2c_block_data(self, i2c_addr: int, register: int, length: int,
                            force: bool | None = None) -> list[int]:
        if not 1 <= length <= BLOCK_MAX:
            raise ValueError(f"block length {length} outside 1..{BLOCK_MAX}")
        return list(self._read(i2c_addr, register, length))

    def write_i2c_block_data(self, i2c_addr: int, register: int, data: Sequence[int],
                             force: bool | None = None) -> None:
        if len(data) > BLOCK_MAX:
            raise ValueError(f"block of {len(data)} bytes is over {BLOCK_MAX}")
        self._write(i2c_addr, register, bytes(data))

    def close(self) -> None:
        with self._lock:
            self.closed = True

    def reopen(self) -> EmulatedBus:
        """This bus, open again (a bus factory for a new session after `close`)."""
        with self._lock:
            self.closed = False
        return self

    def __enter__(self) -> EmulatedBus:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
