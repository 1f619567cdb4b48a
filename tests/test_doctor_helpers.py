"""Shared pieces of the doctor tests (this module holds no tests): the HIL plant in a thread of its
own, a config writer, and parsing of the doctor's lines.

The plant runs on its own event loop in a thread because `run_doctor` is the synchronous command a
technician runs (it owns its event loop); faults are injected with `ThreadPlant.call`.
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edgeagent.doctor import run_doctor
from edgeagent.doctor_checks_clock import ClockSync
from hil.server import Plant, serve_plant

T = TypeVar("T")
LINE = re.compile(r"^(PASS|WARN|FAIL)  ([^:]+): (.*?)(?: -> (.+))?$")


@dataclass
class ThreadPlant:
    plant: Plant
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def port(self, device: str) -> int:
        return int(self.plant.endpoints[device]["port"])


@contextmanager
def plant_in_thread() -> Iterator[ThreadPlant]:
    ready = threading.Event()
    box: list[ThreadPlant] = []
    errors: list[BaseException] = []
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        stop.append(asyncio.Event())
        async with serve_plant("sunny-day", speed=1.0) as plant:
            box.append(ThreadPlant(plant, asyncio.get_running_loop()))
            ready.set()
            await stop[0].wait()

    def main() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=main, name="hil plant", daemon=True)
    thread.start()
    assert ready.wait(10), "the plant did not start within 10 s"
    if errors:
        raise errors[0]
    try:
        yield box[0]
    finally:
        box[0].loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)


def synced() -> ClockSync:
    return ClockSync(True, "test: synchronised")


@dataclass(frozen=True)
class Line:
    status: str
    what: str
    detail: str
    fix: str


@dataclass(frozen=True)
class Run:
    code: int
    text: str

    @property
    def lines(self) -> list[Line]:
        out = []
        for raw in self.text.splitlines():
            m = LINE.match(raw)
            if m:
                out.append(Line(m[1], m[2], m[3], m[4] or ""))
        return out

    def line(self, what: str) -> Line:
        found = [ln for ln in self.lines if ln.what == what]
        assert len(found) == 1, f"expected one line for {what!r} in:\n{self.text}"
        return found[0]

    def statuses(self) -> dict[str, str]:
        return {ln.what: ln.status for ln in self.lines}


def doctor(path: Path, **kwargs: Any) -> Run:
    out = io.StringIO()
    kwargs.setdefault("clock_probe", synced)
    kwargs.setdefault("timeout_s", 1.0)
    code = run_doctor(path, out=out, **kwargs)
    return Run(code, out.getvalue())


def site_config(tmp: Path, body: str, *, state_dir: Path | None = None) -> Path:
    state = state_dir if state_dir is not None else tmp / "state"
    state.mkdir(exist_ok=True)
    path = tmp / "site.toml"
    path.write_text(f'[site]\nid = "doctor-site"\nnode = "edge-1"\n\n[storage]\ndir = "{state}"\n\n{body}')
    return path


def plant_devices(p: ThreadPlant, *, meter_points: str = '"203.W", "203.Hz", "203.PhVphA"') -> str:
    return f"""
[devices.pcc]
kind = "sunspec"
host = "127.0.0.1"
port = {p.port("meter")}
timeout_ms = 500
points = [{meter_points}]

[devices.pv]
kind = "sunspec"
host = "127.0.0.1"
port = {p.port("inverter")}
timeout_ms = 500
points = ["103.W", "103.St", "120.WRtg"]

[devices.raw]
kind = "modbus"
host = "127.0.0.1"
port = {p.port("bess")}
timeout_ms = 500
points = [{{ name = "suns_hi", address = 40000 }}, {{ name = "suns_lo", address = 40001 }}]
"""
