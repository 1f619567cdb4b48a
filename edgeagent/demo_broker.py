"""A throw-away Mosquitto for the demo: loopback only, anonymous, no persistence.

The demo uses it when a `mosquitto` binary is on the PATH, so a technician sees telemetry flow
without setting anything up; `--broker URL` points the demo at a real broker instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from pathlib import Path


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoBroker:
    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        store = workdir / "mosquitto-store"
        store.mkdir(parents=True, exist_ok=True)
        # Persistence keeps the witness's session (its subscription and queue) across the
        # broker-outage scenario's restart, as a utility's broker would.
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {store}/\nmax_queued_messages 0\n"
            f"log_dest file {self.log}\nlog_type error\nlog_type warning\nlog_type notice\n"
            + ("user root\n" if os.geteuid() == 0 else ""))
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, timeout_s: float = 5.0) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            self.binary, "-c", str(self.conf),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        async with asyncio.timeout(timeout_s):
            while True:
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return
                if self._proc.returncode is not None:
                    raise RuntimeError(f"mosquitto exited with status {self._proc.returncode}; see {self.log}")
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        self._proc.terminate()
        try:
            async with asyncio.timeout(5):
                await self._proc.wait()
        except TimeoutError:
            self._proc.kill()
            await self._proc.wait()
