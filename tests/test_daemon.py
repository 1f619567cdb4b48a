"""The daemon: supervision keeps it alive, systemd notify, orderly bounded shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgeagent import config
from edgeagent.daemon import Daemon
from edgeagent.image import Quality
from edgeagent.notify import Notifier
from tests.helpers import eventually
from tests.modbus_server import TestServer


def site(port_a: int, port_b: int, state_dir: Path) -> str:
    return f"""
[site]
id = "t"
node = "n"
[scan]
period_ms = 20
[storage]
dir = "{state_dir}"
[log]
format = "json"
[devices.a]
kind = "modbus"
host = "127.0.0.1"
port = {port_a}
poll_ms = 50
points = [{{ name = "x", address = 1 }}]
[devices.b]
kind = "modbus"
host = "127.0.0.1"
port = {port_b}
poll_ms = 50
points = [{{ name = "y", address = 1 }}]
"""


@pytest.fixture
async def servers() -> AsyncIterator[tuple[TestServer, TestServer]]:
    a, b = TestServer(), TestServer()
    a.registers.set(1, [11])
    b.registers.set(1, [22])
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


async def test_a_crashing_adapter_is_restarted_and_the_daemon_lives(
        servers: tuple[TestServer, TestServer], tmp_path: Path) -> None:
    a, b = servers
    daemon = Daemon(config.parse(site(a.port, b.port, tmp_path)), Notifier(""))
    dev_a = daemon.devices["a"]
    real_poll = dev_a._poll
    crashes = 0

    async def buggy_poll(timeouts: int) -> int:
        nonlocal crashes
        if crashes < 2:
            crashes += 1
            raise ZeroDivisionError("a bug in the adapter")
        return await real_poll(timeouts)

    dev_a._poll = buggy_poll  # type: ignore[method-assign]
    run = asyncio.create_task(daemon.run())
    try:
        await eventually(lambda: daemon.image.latest("a.x").value == 11, timeout_s=10, what="a recovers")
        assert crashes == 2 and dev_a.link.restarts == 2
        assert daemon.image.latest("b.y").quality is Quality.GOOD
        cycles = daemon.cycle.stats.cycles
        await eventually(lambda: daemon.cycle.stats.cycles > cycles + 5, what="cycle keeps running")
        assert not run.done()
    finally:
        daemon.request_stop()
        await asyncio.wait_for(run, 5)


async def test_stop_is_orderly_and_bounded(servers: tuple[TestServer, TestServer], tmp_path: Path) -> None:
    a, b = servers
    daemon = Daemon(config.parse(site(a.port, b.port, tmp_path)), Notifier(""))
    run = asyncio.create_task(daemon.run())
    await eventually(lambda: all(d.online for d in daemon.devices.values()))
    t0 = time.monotonic()
    daemon.request_stop()
    await asyncio.wait_for(run, 5)
    assert time.monotonic() - t0 < 1.0
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_run_command_notifies_systemd_and_stops_on_sigterm(
        servers: tuple[TestServer, TestServer], tmp_path: Path) -> None:
    a, b = servers
    cfg = tmp_path / "site.toml"
    cfg.write_text(site(a.port, b.port, tmp_path / "state"))
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.setblocking(False)
    env = {**os.environ, "NOTIFY_SOCKET": sock_path, "WATCHDOG_USEC": "400000"}
    env.pop("WATCHDOG_PID", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgeagent", "run", "-c", str(cfg), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    messages: list[bytes] = []
    loop = asyncio.get_running_loop()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and sum(m == b"WATCHDOG=1" for m in messages) < 3:
            with contextlib.suppress(TimeoutError):
                messages.append(await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.5))
        assert any(m.startswith(b"READY=1\nSTATUS=running: devices") for m in messages), messages
        assert sum(m == b"WATCHDOG=1" for m in messages) >= 3
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 8) == 0
        assert time.monotonic() - t0 < 6
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        sock.close()
    out = (await proc.stdout.read()).decode()  # type: ignore[union-attr]
    assert '"event": "daemon.ready"' in out and '"event": "daemon.stopped"' in out
    assert "Traceback" not in out


async def test_run_with_a_bad_config_exits_2_without_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "site.toml"
    cfg.write_text('[site]\nid = "x"\nnode = "y"\n[devices.a]\nkind = "modbus"\nhost = 5\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgeagent", "run", "-c", str(cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    text = err.decode()
    assert f"{cfg}:6: devices.a.host: must be a string (got 5)" in text
    assert "Traceback" not in text
