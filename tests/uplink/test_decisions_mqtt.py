"""Decisions end to end over a real Mosquitto: a recommendation is published, a test client sends a
signed confirmation on `cmd/decision`, the setpoint reaches the device (a pymodbus server), the
completion is published; a forged confirmation is refused with its code; the birth carries the audit head."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from edgeagent import config
from edgeagent.daemon import Daemon
from edgeagent.decisions.audit_verify import verify
from edgeagent.decisions.recommendation import Evidence, Proposer, SetpointAction
from edgeagent.notify import Notifier
from tests.decisions.service_helpers import SAFETY_TOML, signed, trust_toml
from tests.helpers import eventually
from tests.modbus_server import TestServer
from tests.mosquitto import Mosquitto, PahoProbe, Received
from tests.uplink.schema_check import check

BASE = "edgeagent/v1/t/n"


def _decision(to: str | None = None, reason: str | None = None):  # type: ignore[no-untyped-def]
    def match(m: Received) -> bool:
        if m.topic != f"{BASE}/decisions":
            return False
        doc = json.loads(m.payload)
        if to is not None:
            return doc.get("kind") == "transition" and doc.get("to") == to
        return doc.get("kind") == "command" and doc.get("reason") == reason
    return match


def read_s32(words: list[int]) -> int:
    raw = (words[0] << 16) | words[1]
    return raw - (1 << 32) if raw >= 1 << 31 else raw


async def test_recommendation_confirmed_over_mqtt_reaches_the_device(tmp_path: Path) -> None:
    server = TestServer()
    server.registers.set(10, [250])
    await server.start()
    with Mosquitto(tmp_path / "broker") as broker, PahoProbe(broker, subscribe=[f"{BASE}/#"]) as probe:
        text = (SAFETY_TOML.format(state=tmp_path / "state", port=server.port) + "[scan]\nperiod_ms = 50\n"
                + f'[uplink]\nbroker = "mqtt://127.0.0.1:{broker.port}"\n' + trust_toml())
        daemon = Daemon(config.parse(text), Notifier(""))
        task = asyncio.create_task(daemon.run())
        try:
            birth = await probe.wait_for(lambda m: m.topic == f"{BASE}/state", timeout_s=10)
            assert check(birth.payload)["audit_head"]["seq"] >= 0
            await eventually(lambda: daemon.devices["site"].online, timeout_s=10)
            rec = daemon.decisions.propose(key="charge", proposer=Proposer("rule", "cheap-energy", "1"),
                                           evidence=Evidence({"price_eur_mwh": 12.0}, "2" * 64),
                                           rationale="energy is cheap",
                                           actions=[SetpointAction("site", "bess_w", -15000.0, 0.5)])
            proposed = check((await probe.wait_for(_decision(to="proposed"), timeout_s=10)).payload)
            assert proposed["recommendation_id"] == rec.id and proposed["recommendation"]["rationale"]
            forged = signed("confirm", rec.id, key="outsider", key_id="alice", issued=time.time())
            probe.publish(f"{BASE}/cmd/decision", forged)
            refusal = check((await probe.wait_for(_decision(reason="bad_signature"), timeout_s=10)).payload)
            assert refusal["accepted"] is False and refusal["target"] == rec.id
            probe.publish(f"{BASE}/cmd/decision", signed("confirm", rec.id, issued=time.time()))
            await eventually(lambda: read_s32(server.registers.holding[20:22]) == -15000, timeout_s=10,
                             what="the confirmed setpoint on the device")
            for state in ("confirmed", "executing", "completed"):
                doc = check((await probe.wait_for(_decision(to=state), timeout_s=10)).payload)
                assert doc["recommendation_id"] == rec.id
        finally:
            daemon.request_stop()
            await asyncio.wait_for(task, 15)
            await server.stop()
    result = verify(tmp_path / "state")
    assert result.ok, result.problem
