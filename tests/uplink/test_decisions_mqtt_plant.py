"""The decisions path end to end on the HIL plant: a recommendation published over a real Mosquitto,
a signed confirmation sent by a test client, the battery setpoint appearing in the plant's own
registers (and its battery following it), the completion published, and the audit chain intact."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from edgeagent.daemon import Daemon
from edgeagent.decisions.audit_verify import verify
from edgeagent.decisions.recommendation import Evidence, Proposer, SetpointAction
from edgeagent.demo import _demo_config
from edgeagent.notify import Notifier
from hil.devices import BessDevice
from hil.server import serve_plant
from tests.decisions.service_helpers import signed, trust_toml
from tests.helpers import eventually
from tests.mosquitto import Mosquitto, PahoProbe, Received
from tests.uplink.schema_check import check

BASE = "edgeagent/v1/demo-site/edge-demo"
CHARGE_W = -40_000.0  # more than the export limiter asks on the sunny-day plant (~15 kW)


def transition(to: str, rec_id: str) -> object:
    def match(m: Received) -> bool:
        if m.topic != f"{BASE}/decisions":
            return False
        doc = json.loads(m.payload)
        return bool(doc.get("kind") == "transition" and doc.get("to") == to and doc.get("recommendation_id") == rec_id)
    return match


async def test_a_signed_confirmation_over_mqtt_drives_the_plant(tmp_path: Path) -> None:
    async with serve_plant("sunny-day", speed=1.0) as plant:
        bess = next(d for d in plant.devices if isinstance(d, BessDevice))
        with Mosquitto(tmp_path / "broker") as broker, PahoProbe(broker, subscribe=[f"{BASE}/#"]) as probe:
            ready = {"ports": {name: ep["port"] for name, ep in plant.endpoints.items()}}
            extra = f'\n[uplink]\nbroker = "mqtt://127.0.0.1:{broker.port}"\n\n' + trust_toml()
            daemon = Daemon(_demo_config(ready, tmp_path / "state", extra), Notifier(""))
            task = asyncio.create_task(daemon.run())
            try:
                await eventually(lambda: all(d.online for d in daemon.devices.values()), timeout_s=15)
                rec = daemon.decisions.propose(
                    key="charge.cheap", proposer=Proposer("rule", "cheap-energy", "1"),
                    evidence=Evidence({"price_eur_mwh": 9.5}, "3" * 64), rationale="energy is cheap now",
                    actions=[SetpointAction("bess", "WSet", CHARGE_W, 3.0)])
                await probe.wait_for(transition("proposed", rec.id), timeout_s=10)  # type: ignore[arg-type]
                probe.publish(f"{BASE}/cmd/decision", signed("confirm", rec.id, node="edge-demo",
                                                              issued=time.time()))
                await eventually(lambda: bess.setpoint_w == CHARGE_W, timeout_s=10,
                                 what="the confirmed setpoint in the plant's registers")
                await eventually(lambda: plant.state.bess_w < CHARGE_W + 2000, timeout_s=10,
                                 what="the plant's battery following it")
                for state in ("confirmed", "executing", "completed"):
                    doc = check((await probe.wait_for(transition(state, rec.id), timeout_s=10)).payload)  # type: ignore[arg-type]
                    assert doc["recommendation_id"] == rec.id
                await eventually(lambda: bess.setpoint_w > CHARGE_W + 5000, timeout_s=10,
                                 what="the export limiter's own setpoint back after the duration")
            finally:
                daemon.request_stop()
                await asyncio.wait_for(task, 15)
    result = verify(tmp_path / "state")
    assert result.ok, result.problem
    audit = "".join(p.read_text(encoding="utf-8") for p in sorted((tmp_path / "state" / "audit").glob("*.jsonl")))
    assert f'"origin":"decision:{rec.id}"' in audit and '"kind":"command.received"' in audit
