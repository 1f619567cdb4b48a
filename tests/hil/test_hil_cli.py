"""``python -m hil`` as a process, and the programmatic API's start/stop contract."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hil.scenario import ScenarioError
from hil.server import HilError, serve_plant
from tests.hil.modbus_raw import RawModbusClient

READY_TIMEOUT_S = 15.0
HIL = [sys.executable, "-m", "hil"]


@asynccontextmanager
async def _serve_process(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, object]]]:
    proc = await asyncio.create_subprocess_exec(
        *HIL, "serve", "--status-interval", "0", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(READY_TIMEOUT_S):
            line = await proc.stdout.readline()
        assert line, (await proc.communicate())[1].decode()
        yield proc, json.loads(line)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _stop(proc: asyncio.subprocess.Process, sig: signal.Signals) -> tuple[int, float, bytes, bytes]:
    started = time.monotonic()
    proc.send_signal(sig)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 5.0)
    assert proc.returncode is not None
    return proc.returncode, time.monotonic() - started, stdout, stderr


async def test_serve_prints_one_ready_line_serves_and_stops_on_sigterm() -> None:
    async with _serve_process("--speed", "2") as (proc, ready):
        assert set(ready) == {"event", "scenario", "speed", "duration_s", "events", "devices"}
        assert ready["duration_s"] is None and ready["events"] == []
        assert ready["event"] == "hil.ready" and ready["scenario"] == "sunny-day" and ready["speed"] == 2.0
        devices = ready["devices"]
        assert isinstance(devices, dict) and list(devices) == ["meter", "inverter", "bess"]
        models = {"meter": [1, 203], "inverter": [1, 103, 120, 123], "bess": [1, 802, 803, 704]}
        for name, endpoint in devices.items():
            assert set(endpoint) == {"host", "port", "unit_id", "sunspec_base", "models"}
            assert endpoint["host"] == "127.0.0.1" and endpoint["unit_id"] == 1
            assert endpoint["sunspec_base"] == 40000 and endpoint["models"] == models[name]
            async with RawModbusClient("127.0.0.1", endpoint["port"]) as client:
                assert (await client.read(40000, 3)) == [0x5375, 0x6E53, 1]
        code, took, stdout, stderr = await _stop(proc, signal.SIGTERM)
        assert code == 0, stderr.decode()
        assert took < 1.0
        assert stdout == b""  # nothing after the ready line
        assert b"Traceback" not in stderr


async def test_serve_stops_on_sigint_with_a_client_connected() -> None:
    async with _serve_process() as (proc, ready):
        devices = ready["devices"]
        assert isinstance(devices, dict)
        async with RawModbusClient("127.0.0.1", devices["bess"]["port"]) as client:
            assert (await client.read(40000, 2)) == [0x5375, 0x6E53]
            code, took, _stdout, stderr = await _stop(proc, signal.SIGINT)
        assert code == 0, stderr.decode()
        assert took < 1.0


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HIL, *args], capture_output=True, text=True, timeout=30)


def _assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hil: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_list_prints_the_shipped_scenarios() -> None:
    result = _run("list")
    assert result.returncode == 0
    names = [line.split("\t")[0] for line in result.stdout.splitlines()]
    assert {"sunny-day", "cloudy-day", "meter-outage"} <= set(names)
    assert all("\t" in line for line in result.stdout.splitlines())


def test_bad_scenario_is_one_line_and_exit_2() -> None:
    _assert_one_line_error(_run("serve", "--scenario", "rainy"), "unknown scenario 'rainy'")


def test_invalid_scenario_file_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[site]\npv_kwp = -1\n")
    _assert_one_line_error(_run("serve", "--scenario", str(path)), "site.pv_kwp: must be > 0")


def test_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _assert_one_line_error(_run("serve", "--port-base", str(port)), "meter", f":{port}", "address already in use")


def test_bad_speed_is_one_line_and_exit_2() -> None:
    _assert_one_line_error(_run("serve", "--speed", "0"), "speed must be within")


def _free_port_base() -> int:
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base > 65000:
            continue
        try:
            sockets = []
            for offset in range(3):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no three consecutive free ports")


async def test_port_base_puts_the_devices_on_consecutive_ports() -> None:
    base = _free_port_base()
    async with serve_plant("sunny-day", port_base=base) as plant:
        assert [plant.endpoints[name]["port"] for name in ("meter", "inverter", "bess")] == [base, base + 1, base + 2]


async def test_shutdown_leaves_no_tasks_and_closes_the_ports() -> None:
    async with serve_plant("sunny-day", speed=10.0) as plant:
        ports = [endpoint["port"] for endpoint in plant.endpoints.values()]
        client = await RawModbusClient("127.0.0.1", ports[0]).connect()
        await client.read(40000, 2)
        await plant.set_slow("inverter", 50.0)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
    await client.close()


async def test_api_errors_are_specific() -> None:
    with pytest.raises(ScenarioError):
        async with serve_plant("no-such-scenario"):
            pass
    with pytest.raises(HilError, match="speed"):
        async with serve_plant("sunny-day", speed=5000.0):
            pass
    with pytest.raises(HilError, match="port base"):
        async with serve_plant("sunny-day", port_base=65535):
            pass
