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
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edgeagent.demo_broker import DemoBroker, find_mosquitto, free_port
from edgeagent.uplink.messages import NAMESPACE
from edgeagent.uplink.service import Uplink

DRAIN_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class BrokerOutage:
    """Stop the demo's broker at `at_fraction` of the run for `for_fraction` of it."""

    at_fraction: float = 0.25
    for_fraction: float = 0.3


UPLINK_SCENARIOS: dict[str, tuple[str, BrokerOutage | None]] = {
    "broker-outage": ("sunny-day", BrokerOutage()),
    "approval": ("sunny-day", None),  # edgeagent.demo_decisions: the plant just runs
}
"""Demo scenarios that are not plant scenarios: name → (plant scenario, what happens to the broker)."""


@dataclass
class Witness:
    """Counts what a consumer on the broker actually received, by record id and kind.

    It is paho's own threaded client with a persistent session (QoS 1), as a utility's SCADA
    would subscribe: the broker queues for it while it reconnects, so what it misses is lost.
    """

    ids: set[int] = field(default_factory=set)
    duplicates: int = 0
    replayed: int = 0
    states: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _client: paho.Client | None = None

    def start(self, host: str, port: int, topic: str, client_id: str) -> None:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        client.on_message = lambda c, u, msg: self.on_message(msg.topic, bytes(msg.payload))
        client.reconnect_delay_set(1, 2)
        client.connect_async(host, port, keepalive=10)
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            doc = json.loads(payload)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        with self._lock:
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
    outage_done: bool = False

    def config_toml(self) -> str:
        return f'\n[uplink]\nbroker = "{self.broker_url}"\n\n[uplink.telemetry]\ninterval_ms = 1000\n'

    async def start_witness(self, site: str, node: str) -> None:
        if self.note:
            return
        host, port = _host_port(self.broker_url)
        topic = f"{NAMESPACE}/{site}/{node}/#"
        await asyncio.to_thread(self.witness.start, host, port, topic, f"demo-witness-{node}")

    def stop_witness(self) -> None:
        self.witness.stop()

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
        if self.note or not uplink.mqtt.connected:
            return  # no broker now: the records wait in the outbox, and the summary says how many
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
