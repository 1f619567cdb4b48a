"""edgeagent against the HIL plant: SunSpec discovery, scale factors, writes, a server outage,
and the demo end to end. The plant is independent code (pysunspec2 encodes its registers)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgeagent.config_safety import SafetyConfig
from edgeagent.cycle import Command
from edgeagent.daemon import Daemon
from edgeagent.demo import _demo_config
from edgeagent.image import Quality
from edgeagent.notify import Notifier
from hil.server import Plant, serve_plant
from tests.helpers import eventually


@pytest.fixture
async def plant() -> AsyncIterator[Plant]:
    async with serve_plant("sunny-day", speed=20.0) as p:
        yield p


@pytest.fixture
async def daemon(plant: Plant, tmp_path: Path) -> AsyncIterator[Daemon]:
    ready = {"ports": {name: ep["port"] for name, ep in plant.endpoints.items()}}
    # Field I/O tests: without the demo's export limiter, which would own the setpoints.
    d = Daemon(dataclasses.replace(_demo_config(ready, tmp_path), safety=SafetyConfig()), Notifier(""))
    task = asyncio.create_task(d.run())
    await eventually(lambda: all(dev.online for dev in d.devices.values()), timeout_s=10, what="all online")
    await eventually(lambda: all(v.good for v in d.image.snapshot().values()), timeout_s=5, what="all good")
    yield d
    d.request_stop()
    await asyncio.wait_for(task, 5)


def value(d: Daemon, point: str) -> float:
    v = d.image.snapshot().value(point)
    assert v is not None, f"{point} is not good: {d.image.latest(point)}"
    return v


async def test_sunspec_discovery_finds_every_model_and_reads_points_by_name(plant: Plant, daemon: Daemon) -> None:
    for device in daemon.devices.values():
        assert not device.unresolved
    # Same instant, same truth: our decoded values match the plant's physics within its resolution.
    state = plant.state
    assert value(daemon, "pcc.W") == pytest.approx(state.meter_w, abs=0.02 * abs(state.pv_w) + 200)
    assert value(daemon, "pv.WRtg") == 100_000
    assert value(daemon, "pv.W") > 0  # late morning in the sunny-day scenario
    assert 45 <= value(daemon, "pcc.Hz") <= 55 and 200 <= value(daemon, "pcc.PhVphA") <= 260
    assert daemon.image.latest("pcc.W").unit == "W"
    assert daemon.image.latest("pcc.PhVphA").unit == "V"
    # The sign convention holds end to end: meter = load − PV − battery discharge, import > 0.
    assert value(daemon, "pcc.W") == pytest.approx(
        state.load_w - value(daemon, "pv.W") - value(daemon, "bess.W"), abs=0.05 * state.load_w + 500)


async def test_scale_factor_change_at_run_time_is_followed(plant: Plant, daemon: Daemon) -> None:
    meter = plant.devices[0].image
    before = value(daemon, "pcc.PhVphA")
    sf = meter.scale_factor(203, "PhVphA")
    meter.set_raw(203, "V_SF", sf - 1)  # the device switches to a finer resolution
    assert meter.scale_factor(203, "PhVphA") == sf - 1
    polls = daemon.devices["pcc"].polls
    await eventually(lambda: daemon.devices["pcc"].polls >= polls + 3, what="polls after the change")
    after = value(daemon, "pcc.PhVphA")
    assert after == pytest.approx(before, rel=0.05)  # same voltage, not 10x off


async def test_setpoint_write_limits_the_inverter(plant: Plant, daemon: Daemon) -> None:
    pv = daemon.devices["pv"]
    rated = value(daemon, "pv.WRtg")
    pv.submit(Command("pv", "WMaxLimPct", 20.0, "test", "curtail to 20 %"))
    pv.submit(Command("pv", "WMaxLim_Ena", 1.0, "test", "enable the limit"))
    await eventually(lambda: daemon.image.snapshot().value("pv.WMaxLimPct") == 20.0, what="read back")
    await eventually(lambda: (daemon.image.snapshot().value("pv.W") or rated) <= 0.2 * rated + 500,
                     timeout_s=10, what="inverter output under the limit")
    assert [w.point for w in pv.writes] == ["WMaxLimPct", "WMaxLim_Ena"]
    assert all(w.ok for w in pv.writes)


async def test_killing_the_meter_server_makes_points_stale_then_reconnects(plant: Plant, daemon: Daemon) -> None:
    pcc = daemon.devices["pcc"]
    await plant.set_offline("meter", True)
    await eventually(lambda: daemon.image.snapshot()["pcc.W"].quality is Quality.STALE, timeout_s=5,
                     what="meter points stale")
    assert not pcc.online
    assert daemon.image.snapshot()["pv.W"].good  # the other devices carry on
    cycles = daemon.cycle.stats.cycles
    await plant.set_offline("meter", False)
    await eventually(lambda: pcc.online and daemon.image.snapshot()["pcc.W"].good, timeout_s=10,
                     what="meter back")
    assert pcc.link.restarts >= 1
    assert daemon.cycle.stats.cycles > cycles  # same daemon, never restarted


async def test_demo_end_to_end_with_duration_and_json(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgeagent", "demo", "--duration", "6", "--speed", "10", "--json",
        "--state-dir", str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["scenario"] == "sunny-day" and summary["passed"] is True
    assert 5.5 <= summary["duration_s"] <= 10
    assert set(summary["points"]) >= {"pcc.W", "pv.W", "bess.SoC"}
    assert all(p["quality"] == "good" for p in summary["points"].values())
    assert summary["points"]["pcc.W"]["unit"] == "W"
    assert (tmp_path / "edgeagent.log").read_text().count('"event": "modbus.connected"') == 3
    assert "hil.ready" in (tmp_path / "hil.log").read_text()


async def test_demo_with_unknown_scenario_says_so_and_exits_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgeagent", "demo", "--duration", "5", "--scenario", "no-such-day",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    text = err.decode()
    assert "no-such-day" in text and "Traceback" not in text


async def test_demo_broker_outage_loses_nothing(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgeagent", "demo", "--scenario", "broker-outage", "--duration", "16",
        "--speed", "5", "--json", "--state-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["passed"] is True
    assert summary["lost"] == 0 and summary["emitted"] == summary["delivered"] > 5
    assert summary["max_backlog"] > 0  # records waited while the broker was down
    assert summary["uplink"]["replayed"] > 0
    assert {c["name"] for c in summary["checks"]} >= {"no_records_lost", "broker_outage_survived"}


async def test_the_demo_export_limit_holds_on_the_plant(tmp_path: Path) -> None:
    """The demo's agreement: at most 30 kW export, the battery charging first."""
    async with serve_plant("sunny-day", speed=1.0) as plant:
        ready = {"ports": {name: ep["port"] for name, ep in plant.endpoints.items()}}
        cfg = _demo_config(ready, tmp_path)
        assert cfg.safety.export_limit is not None and cfg.safety.export_limit.static_kw == 30
        d = Daemon(cfg, Notifier(""))
        task = asyncio.create_task(d.run())
        try:
            await eventually(lambda: (d.image.snapshot().value("pcc.W") or -1e9) > -30_000
                             and (d.image.snapshot().value("bess.W") or 0) < -1_000, timeout_s=20,
                             what="export under 30 kW with the battery charging")
            await asyncio.sleep(3)
            assert (d.image.snapshot().value("pcc.W") or -1e9) >= -30_500  # held, with 2 kW margin
            assert plant.state.meter_w >= -30_500
            assert d.image.snapshot().value("bess.WSetEna") == 1  # activated before the first write
        finally:
            d.request_stop()
            await asyncio.wait_for(task, 10)
