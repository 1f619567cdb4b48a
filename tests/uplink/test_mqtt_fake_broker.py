"""What a real Mosquitto will not do on request: refuse MQTT 5, never acknowledge, never answer at all.

Mosquitto 2.0 speaks MQTT 5 and 3.1.1 alike, so the 3.1.1 fallback is tested against a tiny broker
written here (asyncio, a few packet types) that refuses MQTT 5 the way brokers do: either with an
MQTT 5 CONNACK "unsupported protocol version" (0x84) or, like a 3.1.1-only broker that cannot even
parse the request, a 3.1.1 CONNACK with return code 1. It then serves 3.1.1: CONNACK, SUBACK,
PINGRESP and (unless told not to) PUBACK.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edgeagent.supervise import Backoff
from edgeagent.uplink.mqtt import BrokerConfig, MqttLink, PublishFailed
from tests.helpers import eventually
from tests.mosquitto import make_pki, running

FAST = Backoff(initial_s=0.05, maximum_s=0.1)
REFUSE_V5 = {
    "mqtt5 connack 0x84": bytes([0x20, 0x03, 0x00, 0x84, 0x00]),
    "mqtt3 connack rc 1": bytes([0x20, 0x02, 0x00, 0x01]),
}


class FakeBroker:
    """Refuses MQTT 5 with `refusal`, serves 3.1.1; records each CONNECT's protocol level."""

    def __init__(self, refusal: bytes, *, puback: bool = True) -> None:
        self.refusal = refusal
        self.puback = puback
        self.levels: list[int] = []
        self.published: list[str] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                kind, body = await read_packet(reader)
                if kind == 0x10:  # CONNECT: b"\x00\x04MQTT", then the protocol level
                    self.levels.append(body[6])
                    if body[6] == 5:
                        writer.write(self.refusal)
                        await writer.drain()
                        return
                    writer.write(bytes([0x20, 0x02, 0x00, 0x00]))
                elif kind & 0xF0 == 0x30:  # PUBLISH
                    (topic_len,) = struct.unpack("!H", body[:2])
                    self.published.append(body[2:2 + topic_len].decode())
                    if kind & 0x06 and self.puback:
                        writer.write(bytes([0x40, 0x02]) + body[2 + topic_len:4 + topic_len])
                elif kind == 0x82:  # SUBSCRIBE: grant QoS 1 to each filter
                    count, pos = 0, 2
                    while pos < len(body):
                        (n,) = struct.unpack("!H", body[pos:pos + 2])
                        pos += 2 + n + 1
                        count += 1
                    writer.write(bytes([0x90, 2 + count]) + body[:2] + bytes([1] * count))
                elif kind == 0xC0:  # PINGREQ
                    writer.write(bytes([0xD0, 0x00]))
                elif kind == 0xE0:  # DISCONNECT
                    return
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def drop_all(self) -> None:
        """Close every connection without a word, as a broker restart would."""
        for w in self.writers:
            w.close()


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    kind = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        byte = (await reader.readexactly(1))[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return kind, await reader.readexactly(length)


@asynccontextmanager
async def serving(fake: FakeBroker) -> AsyncIterator[FakeBroker]:
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0)
    fake.port = server.sockets[0].getsockname()[1]
    try:
        yield fake
    finally:
        fake.drop_all()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("refusal", list(REFUSE_V5))
async def test_auto_falls_back_to_311_once_and_stays_there(refusal: str) -> None:
    async with serving(FakeBroker(REFUSE_V5[refusal])) as fake:
        link = MqttLink(BrokerConfig("127.0.0.1", fake.port, connect_timeout_s=2.0), subscriptions=["cmd/#"],
                        backoff=FAST)
        with capture_logs() as logs:
            async with running(link):
                assert await link.wait_connected(5)
                assert link.protocol == "3.1.1"
                assert fake.levels == [5, 4]  # refused 5, reconnected at once with 3.1.1
                await asyncio.wait_for(link.publish("data/a", b"x"), 3)
                fake.drop_all()
                await eventually(lambda: len(fake.levels) == 3 and link.connected, what="a reconnect")
                assert fake.levels == [5, 4, 4]  # the link remembers: no second MQTT 5 attempt
    fallbacks = [e for e in logs if e["event"] == "mqtt.protocol_fallback"]
    assert len(fallbacks) == 1 and fallbacks[0]["using"] == "3.1.1"
    assert [e["event"] for e in logs if e["event"].startswith("mqtt.") and e["log_level"] != "debug"] == [
        "mqtt.protocol_fallback", "mqtt.connected", "mqtt.offline", "mqtt.recovered",
    ]


async def test_a_forced_mqtt5_link_does_not_fall_back() -> None:
    async with serving(FakeBroker(REFUSE_V5["mqtt5 connack 0x84"])) as fake:
        link = MqttLink(BrokerConfig("127.0.0.1", fake.port, protocol="5"), backoff=FAST)
        async with running(link):
            await eventually(lambda: link.link.restarts >= 2, what="two attempts")
            assert link.link.reason == "broker refused the connection: unsupported protocol version"
            assert set(fake.levels) == {5}


async def test_a_broker_that_never_acknowledges_fails_the_publish_and_drops_the_link() -> None:
    async with serving(FakeBroker(REFUSE_V5["mqtt3 connack rc 1"], puback=False)) as fake:
        cfg = BrokerConfig("127.0.0.1", fake.port, protocol="3.1.1", keepalive_s=1, connect_timeout_s=1.0)
        link = MqttLink(cfg, backoff=FAST)  # PUBACK deadline: max(2 × keepalive, connect timeout) = 2 s
        async with running(link):
            assert await link.wait_connected(5)
            t0 = time.monotonic()
            with pytest.raises(PublishFailed, match=r"connection lost before PUBACK: no PUBACK within 2 s"):
                await asyncio.wait_for(link.publish("data/a", b"x"), 5)
            assert 1.9 < time.monotonic() - t0 < 3.5  # pings were answered all along: only the deadline caught it
            assert fake.published == ["data/a"]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_the_loop_keeps_running_while_connecting_to_a_blackhole(tmp_path: Path, tls: bool) -> None:
    """A listener that accepts TCP (the kernel does) but never reads: no TLS handshake, no CONNACK."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)
    port = blackhole.getsockname()[1]
    pki = make_pki(tmp_path / "pki") if tls else None
    cfg = BrokerConfig("127.0.0.1", port, tls=tls, ca_file=pki.ca_file if pki else None, connect_timeout_s=0.4)
    link = MqttLink(cfg, backoff=FAST)
    worst = 0.0
    try:
        async with running(link):
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                t0 = time.monotonic()
                await asyncio.sleep(0.01)
                worst = max(worst, time.monotonic() - t0 - 0.01)
            assert link.link.restarts >= 2
            assert link.link.reason == ("no TLS handshake within 0.4 s" if tls else "no CONNACK within 0.4 s")
    finally:
        blackhole.close()
    assert worst < 0.1, f"the event loop stalled for {worst * 1000:.0f} ms"


async def test_a_refused_port_is_connection_refused() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    link = MqttLink(BrokerConfig("127.0.0.1", port), backoff=FAST)
    async with running(link):
        await eventually(lambda: link.link.restarts >= 1, what="an attempt")
    assert link.link.reason == "connection refused"
