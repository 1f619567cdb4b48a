"""A minimal Modbus TCP client on asyncio streams, for tests that need to see the wire.

Independent of both pymodbus' client and edgeagent: it frames requests by hand, so the tests
observe exactly what the plant sends (exception codes, refused connections, reply latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Sequence
from types import TracebackType

TIMEOUT_S = 5.0


class ModbusExceptionReply(Exception):
    """The server answered with a Modbus exception."""

    def __init__(self, function_code: int, code: int) -> None:
        super().__init__(f"function {function_code:#x}: exception code {code}")
        self.function_code = function_code
        self.code = code


class RawModbusClient:
    """One TCP connection, one request at a time."""

    def __init__(self, host: str, port: int, unit_id: int = 1) -> None:
        self.host = host
        self.port = port
        self.unit_id = unit_id
        self._tid = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> RawModbusClient:
        async with asyncio.timeout(TIMEOUT_S):
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None

    async def __aenter__(self) -> RawModbusClient:
        return await self.connect()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def request(self, pdu: bytes) -> bytes:
        """Send one PDU, return the reply PDU; ModbusExceptionReply for an exception reply."""
        assert self._reader is not None and self._writer is not None, "not connected"
        self._tid = (self._tid + 1) & 0xFFFF
        self._writer.write(struct.pack(">HHHB", self._tid, 0, len(pdu) + 1, self.unit_id) + pdu)
        async with asyncio.timeout(TIMEOUT_S):
            await self._writer.drain()
            header = await self._reader.readexactly(7)
            tid, _pid, length, _unit = struct.unpack(">HHHB", header)
            body = await self._reader.readexactly(length - 1)
        assert tid == self._tid, f"transaction id {tid} != {self._tid}"
        if body[0] & 0x80:
            raise ModbusExceptionReply(body[0] & 0x7F, body[1])
        return body

    async def read(self, address: int, count: int) -> list[int]:
        """Read holding registers (function 3), any count (split into requests of <= 125)."""
        out: list[int] = []
        while count > 0:
            n = min(count, 125)
            body = await self.request(struct.pack(">BHH", 3, address, n))
            out.extend(struct.unpack(f">{n}H", body[2 : 2 + 2 * n]))
            address += n
            count -= n
        return out

    async def write_single(self, address: int, value: int) -> None:
        """Write one register (function 6)."""
        await self.request(struct.pack(">BHH", 6, address, value & 0xFFFF))

    async def write(self, address: int, values: Sequence[int]) -> None:
        """Write registers (function 16)."""
        payload = struct.pack(f">{len(values)}H", *(v & 0xFFFF for v in values))
        await self.request(struct.pack(">BHHB", 16, address, len(values), 2 * len(values)) + payload)
