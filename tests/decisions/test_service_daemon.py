"""The decisions service inside the daemon, against a pymodbus server: the re-check at execution
(an interlock that trips after the confirmation blocks the action, nothing is written), and a
confirmation through the local control socket that reaches the device and is audited."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgeagent import config
from edgeagent.control_client import call
from edgeagent.daemon import Daemon
from edgeagent.decisions.audit_verify import verify
from edgeagent.decisions.recommendation import Evidence, Proposer, SetpointAction
from edgeagent.notify import Notifier
from tests.decisions.service_helpers import SAFETY_TOML, signed, trust_toml
from tests.helpers import eventually
from tests.modbus_server import TestServer

RULE = Proposer("rule", "cheap-energy", "1")
EVIDENCE = Evidence({"price_eur_mwh": 12.0}, "1" * 64)


def s32(value: int) -> list[int]:
    raw = value & 0xFFFFFFFF
    return [raw >> 16, raw & 0xFFFF]


def read_s32(words: list[int]) -> int:
    raw = (words[0] << 16) | words[1]
    return raw - (1 << 32) if raw >= 1 << 31 else raw


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[tuple[Daemon, TestServer]]:
    server = TestServer()
    server.registers.set(10, [250])  # 25.0 °C
    server.registers.set(20, s32(1234))
    await server.start()
    cfg = config.parse(SAFETY_TOML.format(state=tmp_path, port=server.port) + "[scan]\nperiod_ms = 50\n"
                       + trust_toml())
    daemon = Daemon(cfg, Notifier(""))
    yield daemon, server
    await server.stop()


def charge(daemon: Daemon, value: float = -20000.0, duration_s: float = 0.5) -> str:
    return daemon.decisions.propose(key="charge", proposer=RULE, evidence=EVIDENCE, rationale="energy is cheap",
                                    actions=[SetpointAction("site", "bess_w", value, duration_s)]).id


async def test_interlock_trip_after_confirmation_blocks_and_nothing_is_written(
        site: tuple[Daemon, TestServer], tmp_path: Path) -> None:
    """The cycle is stepped by hand, so "confirmed while safe, tripped before execution" is exact."""
    daemon, server = site
    device = daemon.devices["site"]
    await daemon.decisions.open()
    tasks = [asyncio.create_task(device.run()), asyncio.create_task(daemon.decisions.run())]
    try:
        await eventually(lambda: daemon.image.snapshot().value("site.temp_c") == pytest.approx(25.0), timeout_s=5)
        daemon.cycle.step()
        rec_id = charge(daemon)
        outcome = daemon.decisions.handle_signed(signed("confirm", rec_id, issued=time.time()), "test")
        assert outcome.accepted and outcome.state == "confirmed"
        assert daemon.safety.interlocks is not None and not daemon.safety.interlocks.active()
        server.registers.set(10, [470])  # 47.0 °C, after the confirmation, before execution
        await eventually(lambda: daemon.image.snapshot().value("site.temp_c") == pytest.approx(47.0), timeout_s=5)
        record = daemon.cycle.step()
        assert daemon.decisions.engine.state(rec_id) is not None
        assert daemon.decisions.engine.state(rec_id).value == "blocked"  # type: ignore[union-attr]
        assert not any(c.origin.startswith("decision:") for c in record.requests + record.commands)
        assert [c.origin for c in record.commands] == ["interlock:bess_overtemp"]
        await eventually(lambda: read_s32(server.registers.holding[20:22]) == 0, what="the safe action written")
        for _ in range(5):
            daemon.cycle.step()
            await asyncio.sleep(0.06)
        assert all(not w.origin.startswith("decision:") for w in device.writes)
        assert read_s32(server.registers.holding[20:22]) == 0
    finally:
        device.stop()
        daemon.decisions.request_stop()
        await asyncio.wait_for(tasks[1], 5)
        tasks[0].cancel()
        await asyncio.gather(tasks[0], return_exceptions=True)
    result = verify(tmp_path)
    assert result.ok, result.problem
    audited = [json.loads(line) for f in sorted((tmp_path / "audit").glob("audit-*.jsonl"))
               for line in f.read_text().splitlines()]
    transitions = [(r["data"]["to"]) for r in audited if r["kind"] == "recommendation.transition"]
    assert transitions == ["confirmed", "blocked"]
    assert any(r["kind"] == "interlock.trip" for r in audited)
    blocked = next(r for r in audited if r["kind"] == "recommendation.transition" and r["data"]["to"] == "blocked")
    assert "bess_overtemp" in blocked["data"]["reason"]


async def test_confirm_through_the_control_socket_writes_the_setpoint_and_completes(
        site: tuple[Daemon, TestServer], tmp_path: Path) -> None:
    daemon, server = site
    task = asyncio.create_task(daemon.run())
    try:
        await eventually(lambda: daemon.devices["site"].online, timeout_s=10)
        rec_id = charge(daemon, duration_s=0.5)
        sock = tmp_path / "control.sock"
        listed = await asyncio.to_thread(call, sock, "recommendations")
        assert [r["id"] for r in listed["recommendations"]] == [rec_id]
        message = signed("confirm", rec_id, issued=time.time()).decode()
        reply = await asyncio.to_thread(call, sock, "decide", {"command": message})
        assert reply["ok"] and reply["state"] == "confirmed" and reply["by"] == "Alice", reply
        again = await asyncio.to_thread(call, sock, "decide", {"command": message})
        assert not again["ok"] and again["code"] == "replayed"
        await eventually(lambda: read_s32(server.registers.holding[20:22]) == -20000, timeout_s=3,
                         what="the confirmed setpoint on the device")
        await eventually(lambda: (s := daemon.decisions.engine.state(rec_id)) is not None and s.value == "completed",
                         timeout_s=3, what="completed after its duration")
    finally:
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
    result = verify(tmp_path)
    assert result.ok, result.problem
    audited = [json.loads(line) for f in sorted((tmp_path / "audit").glob("audit-*.jsonl"))
               for line in f.read_text().splitlines()]
    written = [r["data"] for r in audited if r["kind"] == "setpoint.written"]
    assert {"device": "site", "point": "bess_w", "value": -20000.0, "origin": f"decision:{rec_id}",
            "reason": f"recommendation {rec_id} (charge)"} in written
    received = [r["data"] for r in audited if r["kind"] == "command.received"]
    assert [(c["accepted"], c["reason"]) for c in received] == [(True, None), (False, "replayed")]
    assert received[0]["via"].startswith("control socket")
