"""Modbus field adapter (TCP and RTU) for raw register maps and SunSpec devices.

One `ModbusDevice` owns one connection. `session()` connects, (for SunSpec) discovers the model
chain, then polls until the link fails, when it raises `DeviceOffline`; the daemon's supervisor
marks the points stale and calls `session()` again after a backoff. The adapter only does I/O: it
turns replies into samples and the cycle's commands into register writes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edgeagent.config import DeviceConfig
from edgeagent.cycle import Command
from edgeagent.field.points import RegisterPoint, RegType, Table
from edgeagent.field.readplan import SF_LIMIT, ReadBlock, decode_points, plan_reads
from edgeagent.field.registers import RegisterEncodeError, decode, encode, unscale
from edgeagent.field.sunspec import NoSuchRegisters, SunSpecError, discover
from edgeagent.image import ProcessImage, Quality, Sample
from edgeagent.supervise import LinkState, supervise

log = structlog.get_logger("edgeagent.field.modbus")

EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    10: "gateway path unavailable", 11: "gateway target failed to respond",
}
MAX_CONSECUTIVE_TIMEOUTS = 3


class DeviceOffline(Exception):
    """The link to the device is gone; the supervisor reconnects."""


class ExceptionReply(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")
        self.code = code


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One setpoint write: what, why, and how it went (for the HIL bench's record).

    The times are taken when the device's reply arrived (or the write failed): `t_mono` is the
    system-wide monotonic clock, comparable with a plant's trace on the same machine.
    """

    t_wall: float
    t_mono: float
    point: str
    value: float
    origin: str
    reason: str
    ok: bool
    error: str = ""
    rtt_s: float = 0.0  # from taking the command off the queue to the device's reply


class ModbusDevice:
    def __init__(self, cfg: DeviceConfig, image: ProcessImage) -> None:
        self.cfg = cfg
        self.image = image
        self.link = LinkState("modbus", device=cfg.name, endpoint=cfg.link.describe())
        self.points: tuple[RegisterPoint, ...] = cfg.registers
        self.unresolved: dict[str, str] = {}
        self.blocks: tuple[ReadBlock, ...] = plan_reads(self.points) if self.points else ()
        self.polls = 0
        self.writes: deque[WriteRecord] = deque(maxlen=1000)
        self._pending: dict[str, Command] = {}
        self._wake = asyncio.Event()
        self._client: Any = None
        self._last_request = 0.0
        self._stopped = False

    @property
    def names(self) -> list[str]:
        return self.cfg.point_names()

    def submit(self, command: Command) -> None:
        """Queue a setpoint from the cycle; never blocks. The latest command per point wins."""
        self._pending[command.point] = command
        self._wake.set()

    @property
    def online(self) -> bool:
        return self.link.up

    def mark_down(self, reason: str) -> None:
        """Called by the supervisor when a session ended: every point goes STALE."""
        self.image.mark_stale(self.names, reason)

    async def run(self) -> None:
        """Sessions until `stop()`, with backoff between them (the daemon's task for this device)."""
        await supervise(self.link, self.session, self.mark_down, stopped=lambda: self._stopped)

    def stop(self) -> None:
        """Ask the session to end at its next step and close the link.

        Cancellation alone is not enough on Python 3.11: pymodbus awaits replies with
        `asyncio.wait_for`, which there can swallow a cancel that arrives with the reply, and the
        session would keep polling. The flag makes shutdown certain; cancel makes it prompt.
        """
        self._stopped = True
        self._wake.set()
        if self._client is not None:
            self._client.close()

    async def session(self) -> None:
        """Connect, discover, poll until the link fails (raises DeviceOffline) or `stop()`."""
        self._client = self._make_client()
        try:
            await self._connect()
            if self.cfg.kind == "sunspec":
                await self._discover()
            timeouts = 0
            first = True
            while not self._stopped:
                started = time.monotonic()
                await self._flush_writes()
                timeouts = await self._poll(timeouts)
                self.polls += 1
                if first:
                    self.link.set_up(points=len(self.points))
                    first = False
                self._wake.clear()
                delay = self.cfg.poll_s - (time.monotonic() - started)
                if delay > 0:
                    # Wake early for a new setpoint: writes should not wait a whole poll period.
                    try:
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
        finally:
            self._client.close()

    def _make_client(self) -> Any:
        link = self.cfg.link
        # pymodbus' own reconnect and retries are off: the supervisor owns reconnection, and a
        # retry would double the time a dead device holds up the poll.
        timeout = self.cfg.timeout_s
        if link.transport == "tcp":
            return AsyncModbusTcpClient(link.host, port=link.port, timeout=timeout, retries=0, reconnect_delay=0)
        return AsyncModbusSerialClient(link.serial_port, baudrate=link.baudrate, parity=link.parity,
                                       stopbits=link.stopbits, bytesize=link.bytesize, timeout=timeout,
                                       retries=0, reconnect_delay=0)

    async def _connect(self) -> None:
        try:
            async with asyncio.timeout(self.cfg.timeout_s * 2):
                ok = await self._client.connect()
        except TimeoutError:
            raise DeviceOffline(f"connect to {self.cfg.link.describe()} timed out") from None
        except OSError as exc:
            raise DeviceOffline(f"cannot connect to {self.cfg.link.describe()}: {exc}") from None
        if not ok:
            raise DeviceOffline(f"cannot connect to {self.cfg.link.describe()}")

    async def _discover(self) -> None:
        async def read(address: int, count: int) -> Sequence[int]:
            try:
                return await self._read(Table.HOLDING, address, count)
            except ExceptionReply as exc:
                if exc.code == 2:  # no registers there: discovery tries the next base
                    raise NoSuchRegisters(str(exc)) from None
                raise

        try:
            smap = await discover(read, self.cfg.sunspec_bases)
        except (ExceptionReply, SunSpecError, DeviceReplyError, RequestTimeout) as exc:
            raise DeviceOffline(f"SunSpec discovery failed: {exc}") from None
        points: list[RegisterPoint] = []
        unresolved: dict[str, str] = {}
        for ref in self.cfg.sunspec_points:
            try:
                points.append(smap.resolve(ref.ref, ref.name))
            except SunSpecError as exc:
                unresolved[ref.name] = str(exc)
        self.points = tuple(points)
        self.blocks = plan_reads(self.points) if self.points else ()
        if unresolved != self.unresolved:
            for name, why in unresolved.items():
                log.error("sunspec.point_unresolved", device=self.cfg.name, point=name, error=why)
        self.unresolved = unresolved
        now_m, now_w = time.monotonic(), time.time()
        for name, why in unresolved.items():
            self.image.write(Sample(f"{self.cfg.name}.{name}", None, "", Quality.BAD, now_m, now_w, why))

    async def _read(self, table: Table, address: int, count: int) -> list[int]:
        fn = (self._client.read_holding_registers if table is Table.HOLDING
              else self._client.read_input_registers)
        reply = await self._request(lambda: fn(address, count=count, device_id=self.cfg.link.unit_id))
        registers = list(getattr(reply, "registers", []))
        if len(registers) != count:
            raise DeviceReplyError(f"asked for {count} registers at {address}, got {len(registers)}")
        return registers

    async def _request(self, make_request: Callable[[], Awaitable[Any]]) -> Any:
        """One request under a timeout. pymodbus raises "not connected" when the request is
        made, not when awaited, so the request is made inside the handlers here."""
        gap = self.cfg.min_gap_s - (time.monotonic() - self._last_request)
        if gap > 0:
            await asyncio.sleep(gap)
        try:
            async with asyncio.timeout(self.cfg.timeout_s + 0.5):
                reply = await make_request()
        except TimeoutError:
            raise RequestTimeout(f"no reply within {self.cfg.timeout_s * 1000:.0f} ms") from None
        except ModbusException as exc:
            if not self._client.connected:
                raise DeviceOffline(f"connection to {self.cfg.link.describe()} lost") from None
            raise RequestTimeout(str(exc).strip() or "no valid reply") from None
        finally:
            self._last_request = time.monotonic()
        if reply.isError():
            raise ExceptionReply(int(getattr(reply, "exception_code", 0)))
        return reply

    async def _poll(self, timeouts: int) -> int:
        data: dict[ReadBlock, Sequence[int]] = {}
        failed: dict[ReadBlock, tuple[Quality, str]] = {}
        for block in self.blocks:
            try:
                data[block] = await self._read(block.table, block.address, block.count)
                timeouts = 0
            except ExceptionReply as exc:
                failed[block] = (Quality.BAD, str(exc))
            except DeviceReplyError as exc:
                failed[block] = (Quality.BAD, str(exc))
            except RequestTimeout as exc:
                failed[block] = (Quality.STALE, str(exc))
                timeouts += 1
                if timeouts >= MAX_CONSECUTIVE_TIMEOUTS or not self._client.connected:
                    raise DeviceOffline(f"{timeouts} requests in a row timed out") from None
        self._publish(data, failed)
        return timeouts

    def _publish(self, data: dict[ReadBlock, Sequence[int]], failed: dict[ReadBlock, tuple[Quality, str]]) -> None:
        now_m, now_w = time.monotonic(), time.time()
        prefix = self.cfg.name + "."
        by_name = {p.name: p for p in self.points}
        for result in decode_points(data, self.points):
            point = by_name[result.name]
            if result.ok and isinstance(result.value, float) and not math.isfinite(result.value):
                quality, reason, value = Quality.BAD, "not a number", None
            elif result.ok:
                quality, reason, value = Quality.GOOD, "", result.value
            else:
                block_fail = next((f for b, f in failed.items() if _contains(b, point)), None)
                quality, reason = block_fail or (Quality.BAD, result.reason)
                value = None
            self.image.write(Sample(prefix + point.name, value, point.unit, quality, now_m, now_w, reason))

    async def _flush_writes(self) -> None:
        pending, self._pending = self._pending, {}
        for command in pending.values():
            error = ""
            started = time.monotonic()
            try:
                await self._write(command)
            except (ExceptionReply, RegisterEncodeError, DeviceReplyError, KeyError, RequestTimeout) as exc:
                error = str(exc)
                log.warning("modbus.write_failed", device=self.cfg.name, point=command.point,
                            value=command.value, origin=command.origin, error=error)
            done = time.monotonic()
            self.writes.append(WriteRecord(time.time(), done, command.point, command.value, command.origin,
                                           command.reason, not error, error, done - started))

    async def _write(self, command: Command) -> None:
        point = next((p for p in self.points if p.name == command.point), None)
        if point is None or not point.writable:
            raise KeyError(f"{self.cfg.name}.{command.point} is not a writable point")
        sf: int | None = None
        if point.sf_address is not None:
            words = await self._read(Table.HOLDING, point.sf_address, 1)
            sf_value = decode(words, RegType.SUNSSF, sunspec_sentinels=True)
            if not isinstance(sf_value, int) or not -SF_LIMIT <= sf_value <= SF_LIMIT:
                raise DeviceReplyError(f"scale factor at {point.sf_address} unusable (0x{words[0]:04X})")
            sf = sf_value
        words = encode(unscale(command.value, point.scale, sf), point.type, point.word_order)
        unit_id = self.cfg.link.unit_id
        await self._request(lambda: self._client.write_registers(point.address, words, device_id=unit_id))
        log.info("modbus.write", device=self.cfg.name, point=command.point, value=command.value,
                 origin=command.origin, reason=command.reason)


class RequestTimeout(Exception):
    pass


class DeviceReplyError(Exception):
    """A reply that is well-formed Modbus but not what was asked for."""


def _contains(block: ReadBlock, point: RegisterPoint) -> bool:
    return block.covers(point.table, point.address, point.size)
