"""The demo's uplink side: which broker, a witness subscriber, and the broker-outage scenario.

The witness subscribes to the node's whole namespace on the same broker, as a utility's SCADA
would, and records every record id it receives; the summary's `lost` compares that with what the
daemon emitted, so "nothing is lost" is checked from the outside, not taken on trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.demo_broker import DemoBroker, find_mosquitto, free_port
from edgeagent.uplink.messages import NAMESPACE
from edgeagent.uplink.mqtt import BrokerConfig, MqttLink
from edgeagent.uplink.service import Uplink

DRAIN_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class BrokerOutage:
    """Stop the demo's broker at `at_fraction` of the run for `for_fraction` of it."""

    at_fraction: float = 0.25
    for_fraction: float = 0.3


UPLINK_SCENARIOS: dict[str, tuple[str, BrokerOutage]] = {"broker-outage": ("sunny-day", BrokerOutage())}
"""Demo scenarios that act on the uplink: name → (plant scenario, what happens to the broker)."""


@dataclass
class Witness:
    """Counts what a consumer on the broker actually received, by record id and kind."""

    ids: set[int] = field(default_factory=set)
    duplicates: int = 0
    replayed: int = 0
    states: list[str] = field(default_factory=list)
    schemas: dict[str, int] = field(default_factory=dict)

    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        schema = str(doc.get("schema"))
        self.schemas[schema] = self.schemas.get(schema, 0) + 1
        if topic.endswith("/state"):
            self.states.append(str(doc.get("status")))
            return
        record_id = doc.get("id")
        if isinstance(record_id, int):
            if record_id in self.ids:
                self.duplicates += 1
            self.ids.add(record_id)
            self.replayed += bool(doc.get("replayed"))


@dataclass
class DemoUplink:
    """Everything the demo does about the uplink, set up before the daemon starts."""

    broker_url: str
    broker: DemoBroker | None
    note: str
    outage: BrokerOutage | None = None
    witness: Witness = field(default_factory=Witness)
    _link: MqttLink | None = None
    outage_done: bool = False

    def config_toml(self) -> str:
        return f'\n[uplink]\nbroker = "{self.broker_url}"\n\n[uplink.telemetry]\ninterval_ms = 1000\n'

    async def start_witness(self, site: str, node: str) -> None:
        if self.broker is None and self.note:
            return
        host, port = _host_port(self.broker_url)
        self._link = MqttLink(BrokerConfig(host=host, port=port, client_id=f"demo-witness-{node}"),
                              on_message=self.witness.on_message,
                              subscriptions=[f"{NAMESPACE}/{site}/{node}/#"])

    async def run_witness(self) -> None:
        if self._link is not None:
            await self._link.run()

    def stop_witness(self) -> None:
        if self._link is not None:
            self._link.stop()

    async def drive_outage(self, duration_s: float | None) -> None:
        """Stop the broker and bring it back, at fractions of the run (default 60 s)."""
        if self.outage is None or self.broker is None:
            return
        total = duration_s or 60.0
        await asyncio.sleep(total * self.outage.at_fraction)
        await self.broker.stop()
        await asyncio.sleep(total * self.outage.for_fraction)
        await self.broker.start()
        self.outage_done = True

    async def drain(self, uplink: Uplink) -> None:
        """Give the backlog a bounded time to reach the broker before the daemon stops."""
        if self.broker is None and self.note:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                while True:
                    await uplink.refresh_stats()
                    if uplink.mqtt.connected and uplink.backlog() == 0 and uplink.in_flight() == 0:
                        break
                    await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # the witness receives what was just acknowledged

    def summary(self, uplink: Uplink) -> dict[str, Any]:
        stats = uplink.stats
        emitted = sum(uplink.counters.emitted.values())
        delivered = sum(uplink.counters.delivered.values())
        backlog = uplink.backlog()
        thinned = (stats.thinned + stats.dropped) if stats else 0
        received = len(self.witness.ids)
        out: dict[str, Any] = {
            "broker": self.broker_url if not self.note else None,
            "note": self.note or None,
            "emitted": emitted, "delivered": delivered, "backlog": backlog,
            "max_backlog": uplink.counters.max_backlog, "thinned_or_dropped": thinned,
            "rejected_commands": uplink.counters.rejected_commands,
        }
        if not self.note:
            out.update(received=received, duplicates=self.witness.duplicates, replayed=self.witness.replayed,
                       lost=max(0, emitted - received - backlog - thinned), states=self.witness.states[-3:])
        return out


def _host_port(url: str) -> tuple[str, int]:
    m = re.fullmatch(r"mqtts?://([^:/]+)(?::(\d+))?/?", url)
    if not m:
        raise ValueError(f"broker URL must be mqtt://HOST[:PORT], got {url!r}")
    return m.group(1), int(m.group(2) or 1883)


async def prepare(scenario: str, broker_url: str | None, workdir: Path) -> tuple[str, DemoUplink]:
    """Choose the broker and the plant scenario. Returns (plant scenario, demo uplink)."""
    plant_scenario, outage = UPLINK_SCENARIOS.get(scenario, (scenario, None))
    if broker_url is not None:
        _host_port(broker_url)
        if outage is not None:
            raise ValueError(f"scenario {scenario} stops the demo's own broker: it cannot be used with --broker")
        return plant_scenario, DemoUplink(broker_url, None, "", None)
    binary = find_mosquitto()
    if binary is None:
        note = ("no MQTT broker: records wait in the outbox (install mosquitto, "
                "or pass --broker mqtt://HOST:PORT)")
        if outage is not None:
            raise ValueError(f"scenario {scenario} needs mosquitto on the PATH (sudo apt-get install mosquitto)")
        return plant_scenario, DemoUplink(f"mqtt://127.0.0.1:{free_port()}", None, note, None)
    broker = DemoBroker(binary, workdir)
    await broker.start()
    return plant_scenario, DemoUplink(f"mqtt://127.0.0.1:{broker.port}", broker, "", outage)
