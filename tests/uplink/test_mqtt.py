"""MqttLink against a real Mosquitto: PUBACK-resolved publishes, birth/will, outages, inbound, the window.

paho's own threaded client (`PahoProbe`) is the independent observer on the broker side.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from edgeagent.supervise import Backoff
from edgeagent.uplink.mqtt import BrokerConfig, MqttLink, PublishFailed
from tests.helpers import eventually
from tests.mosquitto import Mosquitto, PahoProbe, running

FAST = Backoff(initial_s=0.05, maximum_s=0.3)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker") as b:
        yield b


def config(broker: Mosquitto, **overrides: Any) -> BrokerConfig:
    return dataclasses.replace(BrokerConfig(broker.host, broker.port, connect_timeout_s=2.0), **overrides)


async def test_qos1_publish_resolves_only_on_puback_and_reaches_a_subscriber(broker: Mosquitto) -> None:
    link = MqttLink(config(broker))
    with PahoProbe(broker, ["site/#"]) as probe:
        async with running(link):
            assert await link.wait_connected(5)
            broker.pause()  # the broker holds the PUBACK
            fut = link.publish("site/a", b"reading-1")
            await asyncio.sleep(0.3)
            assert not fut.done(), "resolved without a PUBACK"
            broker.resume()
            await asyncio.wait_for(fut, 3)
            got = await probe.wait_for(lambda m: m.topic == "site/a")
            assert (got.payload, got.qos) == (b"reading-1", 1)

            fast = link.publish("site/b", b"q0", qos=0)
            assert fast.done() and fast.exception() is None  # QoS 0: resolved at once
            assert (await probe.wait_for(lambda m: m.topic == "site/b")).payload == b"q0"


async def test_birth_is_retained_and_the_will_is_published_when_the_link_dies_without_disconnect(
    broker: Mosquitto,
) -> None:
    async def birth() -> None:
        await link.publish("node/state", b"alive", retain=True)

    link = MqttLink(config(broker), will=("node/state", b"dead", True), on_connected=birth)
    async with running(link) as task:
        assert await link.wait_connected(5)
        with PahoProbe(broker, ["node/state"]) as late:  # subscribes after the birth: gets the retained copy
            first = await late.wait_for(lambda m: m.topic == "node/state")
            assert (first.payload, first.retain) == (b"alive", True)
            # An ungraceful death: run() cancelled closes the socket without DISCONNECT, as a crash would.
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            death = await late.wait_for(lambda m: m.payload == b"dead")
            assert death.qos == 1
    with PahoProbe(broker, ["node/state"]) as later:
        assert (await later.wait_for(lambda m: m.topic == "node/state")).payload == b"dead"  # retained will


async def test_stop_disconnects_cleanly_so_the_broker_drops_the_will(broker: Mosquitto) -> None:
    link = MqttLink(config(broker, client_id="edge-stop"), will=("node/state", b"dead", True))
    with PahoProbe(broker, ["node/state"]) as probe:
        async with running(link) as task:
            assert await link.wait_connected(5)
            link.stop()
            await asyncio.wait_for(task, 5)
            assert not link.connected
            await asyncio.sleep(0.3)
        assert probe.received("node/state") == []
    assert "Client edge-stop disconnected." in broker.log()


async def test_outage_fails_inflight_then_reconnects_greets_again_and_resubscribes(broker: Mosquitto) -> None:
    greetings = 0
    inbound: list[tuple[str, bytes]] = []

    async def greet() -> None:
        nonlocal greetings
        greetings += 1
        await link.publish("node/state", b"alive", retain=True)

    link = MqttLink(config(broker), on_connected=greet, on_message=lambda t, p: inbound.append((t, p)),
                    subscriptions=["cmd/#"], backoff=FAST)
    with capture_logs() as logs:
        async with running(link):
            assert await link.wait_connected(5)
            broker.pause()  # the publishes below stay unacknowledged …
            pending = [link.publish(f"data/{i}", b"x") for i in range(3)]
            await asyncio.sleep(0.1)
            broker.stop(kill=True)  # … until the broker dies with them
            for fut in pending:
                with pytest.raises(PublishFailed, match="connection lost before PUBACK"):
                    await asyncio.wait_for(fut, 3)
            assert not link.connected
            await eventually(lambda: link.link.restarts >= 3, what="several failed reconnects")
            assert link.link.reason == "connection refused"
            lost = link.publish("data/late", b"x")
            with pytest.raises(PublishFailed, match="not connected"):
                await lost

            broker.start()
            assert await link.wait_connected(5)
            assert greetings == 2
            with PahoProbe(broker) as probe:
                probe.publish("cmd/ping", b"1")
            await eventually(lambda: inbound == [("cmd/ping", b"1")], what="a command after the reconnect")
    events = [(e["event"], e.get("reason")) for e in logs if e["log_level"] != "debug"]
    assert [name for name, _ in events] == ["mqtt.connected", "mqtt.offline", "mqtt.recovered"]
    assert events[1][1] in ("connection reset by the broker", "broker closed the connection")


async def test_a_silent_broker_is_detected_by_keepalive(broker: Mosquitto) -> None:
    link = MqttLink(config(broker, keepalive_s=1, connect_timeout_s=1.0), backoff=FAST)
    async with running(link):
        assert await link.wait_connected(5)
        broker.pause()
        t0 = time.monotonic()
        await eventually(lambda: not link.link.up, timeout_s=5, what="the link to go down")
        assert link.link.reason == "no reply from the broker within the keepalive (1 s)"
        assert time.monotonic() - t0 < 3.5
        broker.resume()
        assert await link.wait_connected(5)


async def test_inbound_messages_reach_on_message_on_the_loop_thread(broker: Mosquitto) -> None:
    got: list[tuple[str, bytes]] = []
    threads: set[int] = set()

    def on_message(topic: str, payload: bytes) -> None:
        threads.add(threading.get_ident())
        if payload == b"boom":
            raise RuntimeError("handler bug")
        got.append((topic, payload))

    link = MqttLink(config(broker), on_message=on_message, subscriptions=["cmd/+/run", "cfg/#"])
    with capture_logs() as logs:
        async with running(link):
            assert await link.wait_connected(5)
            with PahoProbe(broker) as probe:
                probe.publish("cmd/a/run", b"1", qos=1)
                probe.publish("cmd/a/other", b"not subscribed", qos=1)
                probe.publish("cfg/x/y", b"boom", qos=1)  # the handler raises: logged, link stays up
                probe.publish("cfg/x/y", b"2", qos=0)
            await eventually(lambda: len(got) == 2, what="two messages")
            assert link.connected
    assert got == [("cmd/a/run", b"1"), ("cfg/x/y", b"2")]
    assert threads == {threading.get_ident()}
    assert [e["topic"] for e in logs if e["event"] == "mqtt.on_message_failed"] == ["cfg/x/y"]


async def test_free_window_bounds_unacknowledged_qos1_publishes(broker: Mosquitto) -> None:
    link = MqttLink(config(broker, inflight_max=3))
    async with running(link):
        assert await link.wait_connected(5)
        assert link.free_window == 3
        broker.pause()
        futures = [link.publish(f"w/{i}", b"x") for i in range(3)]
        assert link.free_window == 0
        with pytest.raises(PublishFailed, match="window is 3"):
            link.publish("w/over", b"x")
        qos0 = link.publish("w/q0", b"x", qos=0)  # QoS 0 is not acknowledged, so not windowed
        broker.resume()
        await asyncio.wait_for(asyncio.gather(*futures, qos0), 3)
        assert link.free_window == 3


@pytest.mark.parametrize(("protocol", "window"), [("auto", 5), ("3.1.1", 100)])
async def test_the_window_respects_the_brokers_receive_maximum(tmp_path: Path, protocol: str, window: int) -> None:
    with Mosquitto(tmp_path / "broker", extra_config=["max_inflight_messages 5"]) as broker:
        link = MqttLink(config(broker, protocol=protocol))
        async with running(link):
            assert await link.wait_connected(5)
            assert link.free_window == window  # MQTT 5 announces Receive Maximum; 3.1.1 cannot


async def test_protocol_311_when_configured(broker: Mosquitto) -> None:
    link = MqttLink(config(broker, protocol="3.1.1", client_id="edge-311"))
    with PahoProbe(broker, ["v3/#"]) as probe:
        async with running(link):
            assert await link.wait_connected(5)
            assert link.protocol == "3.1.1"
            await asyncio.wait_for(link.publish("v3/a", b"ok"), 3)
            assert (await probe.wait_for(lambda m: m.topic == "v3/a")).payload == b"ok"
    assert "as edge-311 (p2," in broker.log()  # Mosquitto's name for MQTT 3.1.1


async def test_nothing_is_published_before_on_connected_has_finished(broker: Mosquitto) -> None:
    greeting = asyncio.Event()
    release = asyncio.Event()
    early: list[asyncio.Future[None]] = []

    async def greet() -> None:
        early.append(link.publish("node/hello", b"from on_connected"))
        greeting.set()
        await release.wait()
        await link.publish("node/state", b"alive")

    async def impatient() -> None:
        await greeting.wait()
        early.append(link.publish("other/task", b"too early"))
        assert link.free_window == 0

    link = MqttLink(config(broker), on_connected=greet)
    with PahoProbe(broker, ["#"]) as probe:
        async with running(link):
            await asyncio.wait_for(impatient(), 5)
            assert not link.connected
            with pytest.raises(PublishFailed, match="not connected"):
                await early[1]  # another task's publish during on_connected is refused …
            await early[0]  # … while on_connected's own publishes go out
            release.set()
            assert await link.wait_connected(5)
            await probe.wait_for(lambda m: m.topic == "node/state")
    assert [m.topic for m in probe.received()] == ["node/hello", "node/state"]


async def test_a_failing_on_connected_is_logged_and_retried(broker: Mosquitto) -> None:
    calls = 0

    async def greet() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("birth message could not be built")

    link = MqttLink(config(broker), on_connected=greet, backoff=FAST)
    with capture_logs() as logs:
        async with running(link):
            assert await link.wait_connected(5)
    assert calls == 2
    failed = [e for e in logs if e["event"] == "mqtt.on_connected_failed"]
    assert len(failed) == 1 and "birth message could not be built" in failed[0]["error"]
    offline = [e["reason"] for e in logs if e["event"] == "mqtt.offline"]
    assert offline == ["on_connected failed: RuntimeError('birth message could not be built')"]


async def test_losing_the_broker_during_on_connected_is_an_outage_not_a_bug(
    broker: Mosquitto, caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0
    paused = asyncio.Event()

    async def greet() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            broker.pause()  # the birth below will wait for a PUBACK that never comes
            paused.set()
        await link.publish("node/state", b"alive", retain=True)

    link = MqttLink(config(broker), on_connected=greet, backoff=FAST)
    with capture_logs() as logs:
        async with running(link):
            await asyncio.wait_for(paused.wait(), 5)
            broker.stop(kill=True)
            await eventually(lambda: link.link.restarts >= 1, what="the outage")
            broker.start()
            assert await link.wait_connected(5)
    assert calls == 2
    assert not [e for e in logs if e["event"] == "mqtt.on_connected_failed"]
    assert [e["reason"] for e in logs if e["event"] == "mqtt.offline"] in (
        ["connection reset by the broker"], ["broker closed the connection"],
    )
    gc.collect()  # a failed birth future or task nobody looked at would be reported now
    assert "never retrieved" not in caplog.text


async def test_stop_before_run_makes_run_return_at_once() -> None:
    link = MqttLink(BrokerConfig("127.0.0.1", 1))
    link.stop()
    await asyncio.wait_for(link.run(), 1)
    assert not link.connected


async def test_publish_while_not_running_fails_its_future() -> None:
    link = MqttLink(BrokerConfig("127.0.0.1", 1))
    assert not link.connected and link.free_window == 0 and link.protocol is None
    assert not await link.wait_connected(0.05)
    with pytest.raises(PublishFailed, match="not connected"):
        await link.publish("a/b", b"x")
    with pytest.raises(ValueError, match="wildcards"):
        link.publish("a/#", b"x")
    with pytest.raises(ValueError, match="qos"):
        link.publish("a/b", b"x", qos=2)
