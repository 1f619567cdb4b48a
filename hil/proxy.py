"""A small TCP proxy in front of each device's Modbus server: the place where the network fails.

Clients connect to the proxy's public port; each connection is piped to the internal
pymodbus server.  Because every byte passes through here, two faults can be injected without
touching the Modbus stack:

* **offline** - :meth:`FaultProxy.stop` closes the listening socket and aborts every open
  connection (a switched-off device: new connections are refused, old ones reset);
  :meth:`FaultProxy.start` listens again on the same port.
* **slow** - with ``delay_s`` > 0 every chunk of reply data is held back that long before it is
  sent, so each reply arrives at least ``delay_s`` after the request.
"""

from __future__ import annotations

import asyncio
import contextlib

CONNECT_TIMEOUT_S = 2.0
STOP_TIMEOUT_S = 1.0


class FaultProxy:
    """Proxy from ``host:port`` (0 = ephemeral, fixed after the first start) to an upstream server."""

    def __init__(self, host: str, port: int, upstream: tuple[str, int]) -> None:
        self.host = host
        self.port = port
        self.upstream = upstream
        self.delay_s = 0.0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def listening(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again).  OSError if the port cannot be bound."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        if self.port == 0:
            self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and drop every connection (reset, not a polite close)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=STOP_TIMEOUT_S)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(upstream_writer)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pump(reader, upstream_writer, delayed=False))
                group.create_task(self._pump(upstream_reader, writer, delayed=True))
        except (OSError, TimeoutError):
            pass  # upstream unreachable or connection reset: the client sees the connection close
        except asyncio.CancelledError:
            # Only stop() cancels handlers.  End normally: asyncio's stream server calls
            # task.exception() on its handler tasks, which raises for a cancelled task.
            pass
        finally:
            for stream in (writer, upstream_writer):
                if stream is not None:
                    self._writers.discard(stream)
                    stream.transport.abort()
            self._handlers.discard(task)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, delayed: bool) -> None:
        """Copy bytes until EOF, then close the sink so that the other direction ends too."""
        try:
            while data := await source.read(4096):
                if delayed and self.delay_s > 0.0:
                    await asyncio.sleep(self.delay_s)
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.close()
