"""A real pymodbus TCP server for tests, with a register store the test controls.

Requests go through pymodbus' own server, framing and request handling; only the storage
behind it is ours (it replaces the server's context, which its request handler reads and writes).
That lets tests inject exception replies, slow replies and silence, and restart on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Sequence

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusTcpServer


class Registers:
    def __init__(self) -> None:
        self.holding = [0] * 65536
        self.input = [0] * 65536
        self.holes: set[int] = set()  # addresses answering with "illegal data address"
        self.failure = False  # answer every request with "server device failure"
        self.delay_s = 0.0
        self.reads = 0
        self.read_times: list[float] = []
        self.writes: list[tuple[int, list[int]]] = []

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1):  # type: ignore[no-untyped-def]
        self.reads += 1
        self.read_times.append(time.monotonic())
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.failure:
            return ExcCodes.DEVICE_FAILURE
        if any(a in self.holes for a in range(address, address + count)) or address + count > 65536:
            return ExcCodes.ILLEGAL_ADDRESS
        table = self.input if func_code == 4 else self.holding
        return table[address : address + count]

    async def async_setValues(self, device_id: int, func_code: int, address: int, values: Sequence[int]):  # type: ignore[no-untyped-def]
        if any(a in self.holes for a in range(address, address + len(values))):
            return ExcCodes.ILLEGAL_ADDRESS
        self.holding[address : address + len(values)] = list(values)
        self.writes.append((address, list(values)))
        return None

    def device_ids(self) -> list[int]:
        return [1]

    def set(self, address: int, values: Sequence[int], table: str = "holding") -> None:
        target = self.input if table == "input" else self.holding
        target[address : address + len(values)] = list(values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestServer:
    """Start, stop and restart a pymodbus TCP server on one fixed loopback port."""

    __test__ = False

    def __init__(self, registers: Registers | None = None, port: int | None = None) -> None:
        self.registers = registers or Registers()
        self.port = port or free_port()
        self._server: ModbusTcpServer | None = None

    async def start(self) -> None:
        placeholder = ModbusServerContext(devices={1: ModbusDeviceContext(hr=ModbusSequentialDataBlock(1, [0]))})
        self._server = ModbusTcpServer(placeholder, address=("127.0.0.1", self.port))
        self._server.context = self.registers
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.shutdown()
            self._server = None


class SilentServer:
    """Accepts TCP connections and never answers: a device that hangs."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)
            while await reader.read(256):
                pass

        self._server = await asyncio.start_server(swallow, "127.0.0.1", self.port)

    async def stop(self) -> None:
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
