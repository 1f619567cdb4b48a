"""One MQTT connection: a paho client on a socket we opened, driven by the event loop, no thread.

paho's socket callbacks map onto the loop: `on_socket_open` adds a reader that calls `loop_read()`,
`on_socket_register_write`/`unregister_write` add and remove a writer that calls `loop_write()`,
`on_socket_close` removes both; `tick()` (called twice a second by the link) runs `loop_misc()`
for keepalive. So every paho callback, `on_message` included, runs on the loop thread and nothing
needs a lock. A connection is used once: the link makes a new one (and a new paho client) for
every attempt, so no state survives from a dead connection into the next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
import structlog
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from edgeagent.uplink.mqtt_net import HandedSocketClient, RecordingSocket, describe_error

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike
    from paho.mqtt.properties import Properties

log = structlog.get_logger("edgeagent.uplink.mqtt")

PAHO_PROTOCOL = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}
UNSUPPORTED_PROTOCOL_VERSION = 0x84  # paho maps a 3.1.1 broker's CONNACK return code 1 to this too
_REFUSALS = {
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "not authorised (bad user name or password)",
    0x87: "not authorised",
    0x88: "server unavailable",
    0x8A: "banned",
}


class PublishFailed(Exception):
    """Not connected, the connection ended before the PUBACK, the broker refused it, or no PUBACK came."""


class Connection:
    """CONNECT → CONNACK → publishes, subscriptions and messages → `lost` (with the reason)."""

    def __init__(
        self,
        sock: RecordingSocket,
        protocol: str,
        *,
        client_id: str,
        username: str | None,
        password: str | None,
        will: tuple[str, bytes, bool] | None,
        window: int,
        on_message: Callable[[str, bytes], None] | None,
        endpoint: str,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.sock = sock
        self.protocol = protocol
        self.endpoint = endpoint
        self.window = window  # lowered to the broker's Receive Maximum at CONNACK
        self.connack: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[str] = loop.create_future()  # result: why the connection ended
        self.refused: ReasonCode | None = None  # CONNACK's refusal, if any
        self.inflight: dict[int, tuple[asyncio.Future[None], float]] = {}  # mid → (future, sent at), oldest first
        self._drained: asyncio.Future[None] | None = None
        self._suback: tuple[int, asyncio.Future[list[ReasonCode]]] | None = None
        self._on_message = on_message
        self._loop = loop
        self.client = client = HandedSocketClient(sock, PAHO_PROTOCOL[protocol], client_id)
        client.max_inflight_messages = 0  # `window` is the limit, enforced by the link before publish
        if username is not None:
            client.username_pw_set(username, password)
        if will is not None:
            client.will_set(will[0], will[1], qos=1, retain=will[2])
        client.on_socket_open = self._socket_open
        client.on_socket_close = self._socket_close
        client.on_socket_register_write = self._register_write
        client.on_socket_unregister_write = self._unregister_write
        client.on_connect = self._connack
        client.on_disconnect = self._disconnected
        client.on_publish = self._puback
        client.on_subscribe = self._subacked
        client.on_message = self._message

    def start(self, host: str, port: int, keepalive_s: int) -> None:
        """Send CONNECT; `connack` resolves on acceptance, `lost` on refusal or loss."""
        self.client.connect_async(host, port, keepalive_s)
        self.client.reconnect()  # takes the handed socket; CONNECT leaves through our writer

    @property
    def up(self) -> bool:
        return self.connack.done() and not self.lost.done()

    def send(self, topic: str, payload: bytes, qos: int, retain: bool) -> asyncio.Future[None]:
        """Queue a publish (never blocks); the future resolves on PUBACK for QoS 1, at once for QoS 0."""
        fut: asyncio.Future[None] = self._loop.create_future()
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            fut.set_exception(PublishFailed(f"cannot publish: {paho.error_string(info.rc)}"))
        elif qos == 0:
            fut.set_result(None)
        else:
            self.inflight[info.mid] = (fut, time.monotonic())
        return fut

    def subscribe(self, filters: tuple[str, ...]) -> asyncio.Future[list[ReasonCode]]:
        """Subscribe with QoS 1; the future resolves with one reason code per filter (SUBACK)."""
        fut: asyncio.Future[list[ReasonCode]] = self._loop.create_future()
        rc, mid = self.client.subscribe([(f, 1) for f in filters])
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            fut.set_exception(ConnectionError(f"cannot subscribe: {paho.error_string(rc)}"))
        else:
            self._suback = (mid, fut)
        return fut

    def drained(self) -> asyncio.Future[None]:
        """Resolves when no publish awaits its PUBACK any more."""
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()
        if not self.inflight:
            self._drained.set_result(None)
        return self._drained

    def disconnect(self) -> None:
        """Send DISCONNECT (the broker then discards the will); `lost` resolves once it left."""
        self.client.disconnect()

    def tick(self, puback_timeout_s: float) -> None:
        """Keepalive (PINGREQ; drop the link when PINGRESP is overdue) and the PUBACK deadline: a broker
        that answers pings but never acknowledges is broken, and the outbox should re-send elsewhere."""
        if self.lost.done():
            return
        self.client.loop_misc()
        oldest = next(iter(self.inflight.values()), None)
        if oldest is not None and time.monotonic() - oldest[1] > puback_timeout_s:
            self.abort(f"no PUBACK within {puback_timeout_s:g} s")

    def abort(self, reason: str) -> None:
        """Drop the connection without DISCONNECT, so the broker publishes the will (idempotent)."""
        self.client.abort()
        self._lost(reason)

    def _lost(self, reason: str) -> None:
        """Every unacknowledged publish fails now, so its sender re-sends it on the next connection."""
        if self.lost.done():
            return
        self.lost.set_result(reason)
        pending, self.inflight = self.inflight, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(PublishFailed(f"connection lost before PUBACK: {reason}"))
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _loss_reason(self, flags: paho.DisconnectFlags, reason: ReasonCode) -> str:
        if self.refused is not None:
            words = _REFUSALS.get(self.refused.value, str(self.refused).lower())
            return f"broker refused the connection: {words}"
        if self.sock.error is not None:
            return describe_error(self.sock.error)
        if flags.is_disconnect_packet_from_server:
            return f"broker disconnected us: {str(reason).lower()}"
        if reason == "Keep alive timeout":
            return f"no reply from the broker within the keepalive ({self.client.keepalive} s)"
        if reason == "Success":
            return "disconnected"
        if reason == "Protocol error":
            return "protocol error (unexpected or malformed packet from the broker)"
        return "broker closed the connection" + ("" if self.connack.done() else " before CONNACK")

    # --- paho callbacks, all on the loop thread ---------------------------------------------

    def _socket_open(self, client: paho.Client, userdata: Any, sock: SocketLike) -> None:
        self._loop.add_reader(self.sock.fd, self._readable)

    def _socket_close(self, client: paho.Client, userdata: Any, sock: SocketLike) -> None:
        self._loop.remove_reader(self.sock.fd)
        self._loop.remove_writer(self.sock.fd)

    def _register_write(self, client: paho.Client, userdata: Any, sock: SocketLike) -> None:
        self._loop.add_writer(self.sock.fd, self._writable)

    def _unregister_write(self, client: paho.Client, userdata: Any, sock: SocketLike) -> None:
        self._loop.remove_writer(self.sock.fd)

    def _readable(self) -> None:
        try:
            rc = self.client.loop_read()
            # TLS may hold whole decrypted packets that the fd will not announce again.
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self.client.socket() is self.sock and self.sock.pending():
                rc = self.client.loop_read()
        except Exception as exc:  # a bug in paho or in a callback: drop this connection, keep the daemon
            log.error("mqtt.internal_error", broker=self.endpoint, error=repr(exc), exc_info=exc)
            self.abort(f"internal error: {exc!r}")

    def _writable(self) -> None:
        try:
            self.client.loop_write()
        except Exception as exc:
            log.error("mqtt.internal_error", broker=self.endpoint, error=repr(exc), exc_info=exc)
            self.abort(f"internal error: {exc!r}")

    def _connack(
        self, client: paho.Client, userdata: Any, flags: paho.ConnectFlags, reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.refused = reason  # paho closes the connection next; _disconnected reports it
            return
        receive_max = getattr(props, "ReceiveMaximum", None)
        if isinstance(receive_max, int) and receive_max > 0:
            self.window = min(self.window, receive_max)  # more unacknowledged would be a protocol error
        if not self.connack.done():
            self.connack.set_result(None)

    def _disconnected(
        self, client: paho.Client, userdata: Any, flags: paho.DisconnectFlags, reason: ReasonCode,
        props: Properties | None,
    ) -> None:
        self._lost(self._loss_reason(flags, reason))

    def _puback(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, props: Properties | None,
    ) -> None:
        entry = self.inflight.pop(mid, None)  # QoS 0 publishes report here too, with mids not in the dict
        if entry is not None and not entry[0].done():
            if reason.is_failure:
                entry[0].set_exception(PublishFailed(f"broker refused the publish: {str(reason).lower()}"))
            else:
                entry[0].set_result(None)
        if not self.inflight and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _subacked(
        self, client: paho.Client, userdata: Any, mid: int, codes: list[ReasonCode], props: Properties | None,
    ) -> None:
        if self._suback is not None and self._suback[0] == mid and not self._suback[1].done():
            self._suback[1].set_result(list(codes))

    def _message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        if self._on_message is None:
            return
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            log.warning("mqtt.message_rejected", broker=self.endpoint, reason="topic is not valid UTF-8")
            return
        try:
            self._on_message(topic, bytes(msg.payload))
        except Exception as exc:  # the handler's bug must not take the link down
            log.error("mqtt.on_message_failed", broker=self.endpoint, topic=topic, error=repr(exc), exc_info=exc)
