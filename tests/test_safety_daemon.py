"""The safety phases wired into the daemon, against pymodbus servers: trips and meter fallback
reach the device registers, and each is one structured event."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edgeagent import config
from edgeagent.daemon import Daemon
from edgeagent.notify import Notifier
from tests.helpers import eventually
from tests.modbus_server import TestServer

SITE = """
[site]
id = "t"
node = "n"
[scan]
period_ms = 50
[storage]
dir = "{state}"
[devices.meter]
kind = "modbus"
host = "127.0.0.1"
port = {meter_port}
poll_ms = 50
timeout_ms = 200
points = [{{ name = "W", address = 0, type = "int32", unit = "W" }}]
[devices.site]
kind = "modbus"
host = "127.0.0.1"
port = {site_port}
poll_ms = 50
timeout_ms = 200
points = [
  {{ name = "temp_c", address = 10, type = "int16", scale = 0.1, unit = "°C" }},
  {{ name = "soc", address = 11, type = "uint16", unit = "%" }},
  {{ name = "pv_w", address = 12, type = "int32", unit = "W" }},
  {{ name = "bess_w", address = 20, type = "int32", writable = true, unit = "W" }},
  {{ name = "pv_pct", address = 22, type = "uint16", writable = true, unit = "%" }},
]
[[setpoints]]
point = "site.bess_w"
min = -50000
max = 50000
[[setpoints]]
point = "site.pv_pct"
min = 0
max = 100
[[interlocks]]
name = "bess_overtemp"
points = ["site.temp_c"]
condition = "above"
limit = 45
hysteresis = 2
safe_action = [{{ point = "site.bess_w", value = 0 }}, {{ point = "site.pv_pct", value = 0 }}]
[export_limit]
meter = "meter.W"
static_kw = 10
contract_min_kw = 0
contract_max_kw = 20
bess = {{ setpoint = "site.bess_w", soc = "site.soc", max_charge_w = 50000 }}
pv = {{ setpoint = "site.pv_pct", rated_w = 100000, power_point = "site.pv_w" }}
"""


def s32(value: int) -> list[int]:
    raw = value & 0xFFFFFFFF
    return [raw >> 16, raw & 0xFFFF]


def read_s32(words: list[int]) -> int:
    raw = (words[0] << 16) | words[1]
    return raw - (1 << 32) if raw >= 1 << 31 else raw


@pytest.fixture
async def plant(tmp_path: Path) -> AsyncIterator[tuple[Daemon, TestServer, TestServer]]:
    meter, site = TestServer(), TestServer()
    meter.registers.set(0, s32(2000))  # importing 2 kW: nothing to limit
    site.registers.set(10, [250, 50])  # 25.0 °C, SoC 50 %
    site.registers.set(12, s32(30000))
    await meter.start()
    await site.start()
    cfg = config.parse(SITE.format(state=tmp_path, meter_port=meter.port, site_port=site.port))
    daemon = Daemon(cfg, Notifier(""))
    task = asyncio.create_task(daemon.run())
    await eventually(lambda: all(d.online for d in daemon.devices.values()), timeout_s=10)
    yield daemon, meter, site
    daemon.request_stop()
    await asyncio.wait_for(task, 10)
    await meter.stop()
    await site.stop()


async def test_overtemperature_trip_writes_the_safe_setpoints(plant: tuple[Daemon, TestServer, TestServer]) -> None:
    daemon, _, site = plant
    regs = site.registers
    await eventually(lambda: regs.holding[22] == 100, what="controller writes PV 100 % while under the limit")
    regs.set(20, s32(-20000))  # someone else charged the battery
    with capture_logs() as logs:
        t0 = time.monotonic()
        regs.set(10, [460])  # 46.0 °C
        await eventually(lambda: read_s32(regs.holding[20:22]) == 0 and regs.holding[22] == 0, timeout_s=3,
                         what="safe setpoints written")
        reaction_s = time.monotonic() - t0
        regs.set(10, [420])  # 42.0 °C: below limit - hysteresis
        await eventually(lambda: regs.holding[22] == 100, timeout_s=3, what="released after clear")
    names = [e["event"] for e in logs]
    assert "interlock.trip" in names and "interlock.clear" in names
    trip = next(e for e in logs if e["event"] == "interlock.trip")
    assert trip["interlock"] == "bess_overtemp" and trip["values"]["site.temp_c"] == pytest.approx(46.0)
    assert reaction_s < 1.0  # poll 50 ms + one cycle + the write's round trip
    assert daemon.safety.interlocks is not None and not daemon.safety.interlocks.active()


async def test_meter_loss_moves_to_the_fallback_within_a_second(plant: tuple[Daemon, TestServer, TestServer]) -> None:
    daemon, meter, site = plant
    regs = site.registers
    await eventually(lambda: regs.holding[22] == 100, what="normal operation")
    with capture_logs() as logs:
        t0 = time.monotonic()
        await meter.stop()
        await eventually(lambda: regs.holding[22] < 100, timeout_s=3, what="PV curtailed on fallback")
        fallback_s = time.monotonic() - t0
    assert fallback_s < 1.0 + 0.2 * 3  # detection (3 timeouts of 200 ms at most) + one cycle + write
    assert any(e["event"] == "export_limit.fallback_entered" for e in logs)
    limiter = daemon.safety.export_limit
    assert limiter is not None and limiter.state.value == "fallback"
