"""The MQTT link: one broker connection kept up, QoS 1 publishes that resolve on PUBACK, subscriptions.

paho-mqtt speaks the protocol; it runs on the event loop without its network thread. Each
connection attempt opens TCP and TLS without blocking (`mqtt_net`), hands the socket to a fresh
paho client and drives it with the loop's readers and writers (`mqtt_conn`). `run()` keeps a
connection up with `supervise()`: jittered backoff between attempts, and `self.link` (a
`LinkState`) logs `mqtt.connected`, `mqtt.offline` with its reason ("broker refused the connection:
not authorised", "certificate verify failed: …", "connection refused", "no CONNACK within 10 s")
and `mqtt.recovered` once per transition; failed retries only at debug level.

Durability is the outbox's job, not the MQTT session's: every connection is a clean session and
every publish not acknowledged when a connection ends fails with `PublishFailed`, so the outbox
re-sends it. One source of truth for "delivered" is easier to trust than two.

Protocol "auto" tries MQTT 5 and, if the broker answers CONNACK "unsupported protocol version",
reconnects at once with 3.1.1 and keeps 3.1.1 for the life of the link (logged once as
`mqtt.protocol_fallback`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import structlog

from edgeagent.supervise import Backoff, LinkState, supervise
from edgeagent.uplink.mqtt_config import BrokerConfig, InsecureBroker, check_config, is_loopback, topic_problems
from edgeagent.uplink.mqtt_conn import UNSUPPORTED_PROTOCOL_VERSION, Connection, PublishFailed
from edgeagent.uplink.mqtt_net import RecordingSocket, describe_error, open_tcp, tls_context, tls_handshake

__all__ = ["BrokerConfig", "InsecureBroker", "MqttLink", "PublishFailed"]

log = structlog.get_logger("edgeagent.uplink.mqtt")
T = TypeVar("T")

GOODBYE_S = 2.0  # stop(): time for in-flight PUBACKs, then for the DISCONNECT to leave
TICK_S = 0.5  # loop_misc() period: paho's keepalive works in whole seconds
_DEFAULT_BACKOFF = Backoff()
# The connection whose on_connected is running: its birth may publish before the link is "connected".
_GREETING: contextvars.ContextVar[Connection | None] = contextvars.ContextVar("mqtt_greeting", default=None)


class _LinkDown(Exception):
    """A connection attempt or session ended; the message is the reason shown to the operator."""

    def __init__(self, reason: str, *, unsupported_protocol: bool = False) -> None:
        super().__init__(reason)
        self.unsupported_protocol = unsupported_protocol


class MqttLink:
    """A broker link that keeps itself connected: construct, run `run()` in a task, `publish()`."""

    def __init__(
        self,
        cfg: BrokerConfig,
        *,
        will: tuple[str, bytes, bool] | None = None,
        on_connected: Callable[[], Awaitable[None]] | None = None,
        on_message: Callable[[str, bytes], None] | None = None,
        subscriptions: Sequence[str] = (),
        backoff: Backoff = _DEFAULT_BACKOFF,
    ) -> None:
        """`will` is (topic, payload, retain), published with QoS 1 by the broker when the link dies
        without DISCONNECT (not after `stop()`). `on_connected` is awaited after each (re)connect,
        before anyone else may publish: the birth goes there. `on_message(topic, payload)` runs on
        the loop for messages on `subscriptions`, which are renewed after every connect.
        Raises InsecureBroker (plaintext to a remote host) or ValueError (bad settings or topics)."""
        check_config(cfg, will[0] if will else None, subscriptions)
        self.cfg = cfg
        self._will = will
        self._on_connected = on_connected
        self._on_message = on_message
        self._subscriptions = tuple(subscriptions)
        self._backoff = backoff
        self.link = LinkState("mqtt", broker=cfg.endpoint)
        self._conn: Connection | None = None
        self._ready = False
        self._ready_event = asyncio.Event()
        self._stop_event = asyncio.Event()
        self._stopping = False
        self._running = False
        self._fell_back = False  # "auto" and the broker refused MQTT 5: 3.1.1 for the life of this link
        self._refused_subscriptions: dict[str, str] = {}
        # A broker that answers pings but never PUBACKs is broken; bound the wait like the keepalive.
        self._puback_timeout_s = max(2.0 * cfg.keepalive_s, cfg.connect_timeout_s) if cfg.keepalive_s else 60.0
        if not cfg.tls and not is_loopback(cfg.host):
            log.warning("mqtt.insecure", broker=cfg.endpoint, reason="plaintext to a remote broker (allow_insecure)")

    # --- public API -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Connected, subscribed and greeted (on_connected done): publishing is open."""
        return self._ready

    @property
    def protocol(self) -> str | None:
        """The MQTT version of the current connection, "5" or "3.1.1"; None while there is none."""
        return self._conn.protocol if self._conn is not None and self._conn.up else None

    @property
    def free_window(self) -> int:
        """How many more QoS 1 publishes may await their PUBACK right now; 0 while not connected."""
        conn = self._conn
        if conn is None or not self._may_publish(conn):
            return 0
        return max(0, conn.window - len(conn.inflight))

    async def wait_connected(self, timeout_s: float | None = None) -> bool:
        """True once connected (at once if already), False if `timeout_s` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready_event.wait()
        except TimeoutError:
            return self._ready
        return True

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> asyncio.Future[None]:
        """Queue a publish and return at once. The future resolves on PUBACK (QoS 1) or immediately
        (QoS 0); it fails with PublishFailed if not connected now or if the connection ends first.
        Raises PublishFailed when `free_window` is 0 for a QoS 1 publish, and ValueError for a bad
        topic or QoS (0 and 1 only: QoS 2 adds nothing to the outbox's re-sends)."""
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1 (got {qos})")
        problems = topic_problems(topic, wildcards=False)
        if problems:
            raise ValueError(f"cannot publish to {topic!r}: {'; '.join(problems)}")
        conn = self._conn
        if conn is None or not self._may_publish(conn):
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            why = "stopping" if self._stopping else (self.link.reason or "connecting")
            fut.set_exception(PublishFailed(f"not connected to the broker: {why}"))
            return fut
        if qos == 1 and len(conn.inflight) >= conn.window:
            raise PublishFailed(
                f"{len(conn.inflight)} publishes await their PUBACK and the window is {conn.window}: "
                "wait for free_window before publishing more"
            )
        return conn.send(topic, payload, qos, retain)

    async def run(self) -> None:
        """Connect, stay connected, reconnect with jittered backoff; returns after `stop()`.
        Cancelling it drops the connection without DISCONNECT (the broker publishes the will)."""
        if self._running:
            raise RuntimeError("MqttLink.run() is already running")
        self._running = True
        sup = asyncio.create_task(
            supervise(self.link, self._session, self._on_down, self._backoff, stopped=lambda: self._stopping),
            name=f"mqtt {self.cfg.endpoint}",
        )
        stop = asyncio.create_task(self._stop_event.wait())
        try:
            await asyncio.wait([sup, stop], return_when=asyncio.FIRST_COMPLETED)
            if not sup.done() and self._ready:  # a live session disconnects cleanly, in bounded time
                await asyncio.wait([sup], timeout=2 * GOODBYE_S + 1)
            if sup.done():
                sup.result()  # supervise() only ends when stopped; anything else is a bug to surface
        finally:
            self._running = False
            stop.cancel()
            sup.cancel()  # still connecting or backing off: nothing to disconnect cleanly
            await asyncio.gather(sup, stop, return_exceptions=True)

    def stop(self) -> None:
        """End `run()`: in-flight publishes get up to 2 s for their PUBACK, then DISCONNECT, after
        which the broker discards the will (publish your own goodbye first). Final: a stopped link
        does not run again."""
        self._stopping = True
        self._stop_event.set()

    # --- sessions ---------------------------------------------------------------------------

    async def _session(self) -> None:
        """One connection from CONNECT to its end; raises _LinkDown with the reason it ended."""
        conn = await self._connect()
        self._conn = conn
        ticker = asyncio.create_task(self._tick(conn), name="mqtt keepalive")
        try:
            await self._subscribe(conn)
            await self._greet(conn)
            self._set_ready(True)
            self.link.set_up(protocol=conn.protocol)
            stop = asyncio.create_task(self._stop_event.wait())
            waiters: list[asyncio.Future[Any]] = [conn.lost, stop]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if conn.lost.done():
                raise _LinkDown(conn.lost.result())
            await self._goodbye(conn)
        finally:
            ticker.cancel()
            self._conn = None
            self._set_ready(False)
            conn.abort("stopped" if self._stopping else "cancelled")

    def _on_down(self, reason: str) -> None:
        self._set_ready(False)

    async def _connect(self) -> Connection:
        password = self._read_password()
        protocol = "3.1.1" if self.cfg.protocol == "3.1.1" or self._fell_back else "5"
        try:
            return await self._attempt(protocol, password)
        except _LinkDown as exc:
            if not (exc.unsupported_protocol and protocol == "5" and self.cfg.protocol == "auto"):
                raise
        self._fell_back = True
        log.warning("mqtt.protocol_fallback", broker=self.cfg.endpoint, reason="broker refused MQTT 5", using="3.1.1")
        return await self._attempt("3.1.1", password)

    async def _attempt(self, protocol: str, password: str | None) -> Connection:
        """TCP, TLS, CONNECT → CONNACK, all within connect_timeout_s."""
        cfg = self.cfg
        phase = "TCP connection"
        conn: Connection | None = None
        try:
            async with asyncio.timeout(cfg.connect_timeout_s):
                ctx = tls_context(cfg.ca_file, cfg.cert_file, cfg.key_file) if cfg.tls else None
                sock = await open_tcp(cfg.host, cfg.port)
                if ctx is not None:
                    phase = "TLS handshake"
                    sock = await tls_handshake(sock, ctx, cfg.host)
                phase = "CONNACK"
                conn = Connection(
                    RecordingSocket(sock), protocol, client_id=cfg.client_id, username=cfg.username,
                    password=password, will=self._will, window=cfg.inflight_max, on_message=self._on_message,
                    endpoint=cfg.endpoint,
                )
                conn.start(cfg.host, cfg.port, cfg.keepalive_s)
                waiters: list[asyncio.Future[Any]] = [conn.connack, conn.lost]
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError as exc:
            # asyncio.timeout's deadline, or the kernel's own ETIMEDOUT (errno set) from a long connect
            reason = f"no {phase} within {cfg.connect_timeout_s:g} s" if exc.errno is None else describe_error(exc)
            if conn is not None:
                conn.abort(reason)
            raise _LinkDown(reason) from None
        except BaseException as exc:
            reason = describe_error(exc)
            if conn is not None:
                conn.abort(reason)
            if isinstance(exc, OSError):
                raise _LinkDown(reason) from exc
            raise
        if conn.connack.done():
            return conn
        unsupported = conn.refused is not None and conn.refused.value == UNSUPPORTED_PROTOCOL_VERSION
        raise _LinkDown(conn.lost.result(), unsupported_protocol=unsupported)

    def _read_password(self) -> str | None:
        """Read at each connect, so a rotated password needs no restart. Never logged."""
        path = self.cfg.password_file
        if path is None:
            return None
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise _LinkDown(f"cannot read password file {path}: {describe_error(exc)}") from None
        except UnicodeDecodeError:
            raise _LinkDown(f"password file {path} is not UTF-8 text") from None
        password = text.rstrip("\r\n")
        if not password:
            raise _LinkDown(f"password file {path} is empty")
        return password

    async def _within(self, conn: Connection, fut: asyncio.Future[T], what: str, timeout_s: float) -> T:
        """The result of `fut`, unless the connection ends or `timeout_s` passes first (_LinkDown)."""
        waiters: list[asyncio.Future[Any]] = [fut, conn.lost]
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise _LinkDown(f"no {what} within {timeout_s:g} s") from None
        if not fut.done():
            raise _LinkDown(conn.lost.result())
        try:
            return fut.result()
        except ConnectionError as exc:
            raise _LinkDown(str(exc)) from exc

    async def _subscribe(self, conn: Connection) -> None:
        """(Re)subscribe after every connect: clean sessions forget subscriptions. A filter the broker
        refuses (its ACL) is logged when the set of refusals changes; reconnecting would not help."""
        if not self._subscriptions:
            return
        codes = await self._within(conn, conn.subscribe(self._subscriptions), "SUBACK", self.cfg.connect_timeout_s)
        refused = {t: str(c).lower() for t, c in zip(self._subscriptions, codes, strict=False) if c.is_failure}
        if refused != self._refused_subscriptions:
            if refused:
                log.warning("mqtt.subscribe_refused", broker=self.cfg.endpoint, refused=refused)
            self._refused_subscriptions = refused

    async def _greet(self, conn: Connection) -> None:
        """Await on_connected, whose publishes (the birth) go out before anyone else's."""
        if self._on_connected is None:
            return
        callback = self._on_connected

        async def greet() -> None:
            await callback()

        ctx = contextvars.copy_context()
        ctx.run(_GREETING.set, conn)
        task = asyncio.create_task(greet(), name="mqtt on_connected", context=ctx)
        waiters: list[asyncio.Future[Any]] = [task, conn.lost]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        exc = None if task.cancelled() else task.exception()  # retrieved in every case, never left dangling
        if conn.lost.done():  # its publishes failed because the link did: the loss is the reason
            raise _LinkDown(conn.lost.result())
        if task.cancelled() or exc is not None:
            log.error("mqtt.on_connected_failed", broker=self.cfg.endpoint, error=repr(exc), exc_info=exc)
            raise _LinkDown(f"on_connected failed: {exc!r}")

    async def _tick(self, conn: Connection) -> None:
        while not conn.lost.done():
            await asyncio.sleep(TICK_S)
            try:
                conn.tick(self._puback_timeout_s)
            except Exception as exc:  # a bug in paho or in a callback: drop this connection, keep the daemon
                log.error("mqtt.internal_error", broker=self.cfg.endpoint, error=repr(exc), exc_info=exc)
                conn.abort(f"internal error: {exc!r}")

    async def _goodbye(self, conn: Connection) -> None:
        """Let in-flight publishes get their PUBACK (bounded), then DISCONNECT and wait for it to leave."""
        self._set_ready(False)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GOODBYE_S):
                await asyncio.shield(conn.drained())  # also resolves if the connection ends
        if conn.lost.done():
            return
        conn.disconnect()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GOODBYE_S):
                await asyncio.shield(conn.lost)

    # --- state ------------------------------------------------------------------------------

    def _may_publish(self, conn: Connection) -> bool:
        if not conn.up or self._stopping:
            return False
        return self._ready or _GREETING.get() is conn

    def _set_ready(self, ready: bool) -> None:
        self._ready = ready
        if ready:
            self._ready_event.set()
        else:
            self._ready_event.clear()
