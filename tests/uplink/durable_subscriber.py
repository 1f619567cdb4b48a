"""A consumer as a utility would run one: paho with a persistent session (QoS 1), so the broker
keeps its queue across our outages and its own restarts; de-duplicates by record id."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.mosquitto import Mosquitto


@dataclass
class Seen:
    docs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    duplicates: int = 0
    ids: set[int] = field(default_factory=set)


class DurableSubscriber:
    def __init__(self, broker: Mosquitto, topic: str, client_id: str = "utility-scada") -> None:
        self.seen = Seen()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise RuntimeError("subscriber: no SUBACK within 5 s")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        doc = json.loads(msg.payload)
        with self._lock:
            record_id = doc.get("id")
            if isinstance(record_id, int):
                if record_id in self.seen.ids:
                    self.seen.duplicates += 1
                    return
                self.seen.ids.add(record_id)
            self.seen.docs.append((msg.topic, doc))

    def docs(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return list(self.seen.docs)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
