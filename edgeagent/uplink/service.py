"""The uplink: telemetry and events into the durable outbox, and from there to the broker.

Records leave the outbox only on the broker's PUBACK. After every (re)connect the birth is
published first (retained), then the backlog in order per lane, events and decisions before
telemetry; a record created before the current connection existed is marked `replayed`. Delivery
is at least once: a record whose PUBACK was lost is sent again with the same id, and consumers
de-duplicate by id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from edgeagent.config import UplinkConfig
from edgeagent.image import ProcessImage
from edgeagent.uplink import messages
from edgeagent.uplink.commands import (
    CommandHandler,
    InboundCommand,
    Refusal,
    SignedHandler,
    is_signed_command,
    parse_command,
)
from edgeagent.uplink.mqtt import BrokerConfig, MqttLink, PublishFailed
from edgeagent.uplink.outbox import AsyncOutbox, Lane, Outbox, OutboxError, OutboxStats, Record
from edgeagent.uplink.telemetry import TelemetryPolicy

log = structlog.get_logger("edgeagent.uplink")

FETCH_IDLE_S = 1.0
ACK_BATCH = 200


@dataclass
class UplinkCounters:
    emitted: dict[str, int] = field(default_factory=lambda: {lane.value: 0 for lane in Lane})
    delivered: dict[str, int] = field(default_factory=lambda: {lane.value: 0 for lane in Lane})
    republished: int = 0
    rejected_commands: int = 0
    max_backlog: int = 0
    emit_failures: int = 0


@dataclass(frozen=True, slots=True)
class Identity:
    site: str
    node: str
    version: str
    config_sha256: str
    models: Mapping[str, str] = field(default_factory=dict)


def broker_config(cfg: UplinkConfig) -> BrokerConfig:
    return BrokerConfig(
        host=cfg.host, port=cfg.port, tls=cfg.tls, ca_file=cfg.ca_file, cert_file=cfg.cert_file,
        key_file=cfg.key_file, username=cfg.username, password_file=cfg.password_file,
        client_id=cfg.client_id, keepalive_s=cfg.keepalive_s, protocol=cfg.protocol,
        allow_insecure=cfg.allow_insecure, inflight_max=cfg.inflight_max,
    )


def ping_handler(command: InboundCommand) -> str | None:
    """The one command this node understands before the decisions issue: `ping`."""
    return None if command.command == "ping" else f"unknown command {command.command!r}"


class Uplink:
    def __init__(self, cfg: UplinkConfig, identity: Identity, state_dir: Path, image: ProcessImage,
                 handler: CommandHandler = ping_handler) -> None:
        self.cfg = cfg
        self.identity = identity
        self.image = image
        self.handler = handler
        self.signed_handler: SignedHandler | None = None
        """Set by the daemon: where `cmd/decision` payloads go (the decisions service)."""
        self.audit_head: Callable[[], tuple[int, str]] | None = None
        """Set by the daemon: the audit chain head, for the birth message."""
        self.topics = messages.Topics(identity.site, identity.node)
        self.started_wall = time.time()
        self.outbox = AsyncOutbox(lambda: Outbox(state_dir / "outbox.sqlite", budget_bytes=cfg.budget_bytes,
                                                 thin_keep_one_in=cfg.thin_keep_one_in))
        self.mqtt = MqttLink(
            broker_config(cfg),
            will=(self.topics.state, messages.will(identity.site, identity.node), True),
            on_connected=self._on_connected,
            on_message=self._on_message,
            subscriptions=[self.topics.cmd_filter],
        )
        self.policy = TelemetryPolicy(cfg.telemetry)
        self.counters = UplinkCounters()
        self.stats: OutboxStats | None = None
        self._connected_wall = 0.0
        self._wake = asyncio.Event()
        self._in_flight: dict[int, Record] = {}
        self._acked: list[Record] = []
        self._acked_ids: dict[int, Record] = {}  # PUBACKed, not yet deleted from the outbox: never resend
        self._ack_wake = asyncio.Event()
        self._started = asyncio.Event()
        self._stop = asyncio.Event()

    # -- emitting (the rest of the daemon calls these) -------------------------------------
    def emit_event(self, name: str, severity: str, data: Mapping[str, Any]) -> None:
        """Queue an event without awaiting (safe from synchronous code such as link callbacks)."""
        payload = messages.event(self.identity.site, self.identity.node, name, severity, data)
        self._append_nowait(payload)

    def emit_decision(self, payload: bytes) -> None:
        """Queue a decision-lane record (transition, command outcome) without awaiting; never raises."""
        self._append_nowait(payload, Lane.DECISION, messages.DECISIONS_TOPIC)

    def _append_nowait(self, payload: bytes, lane: Lane = Lane.EVENT, topic: str = "events") -> None:
        """Never raises: its callers include the scan cycle, which must not die of a closed
        outbox during shutdown or of a bad record. A record that cannot be queued is logged."""
        try:
            self.outbox.append_nowait(lane, topic, payload)
        except (OutboxError, ValueError) as exc:
            self.counters.emit_failures += 1
            log.error("uplink.record_not_queued", lane=lane.value, error=str(exc), bytes=len(payload))
            return
        self.counters.emitted[lane.value] += 1
        self._wake.set()

    async def emit(self, lane: Lane, topic: str, payload: bytes) -> Record:
        """Append durably; for events and decisions, returns only once the record is on disk."""
        await self._started.wait()
        record = await self.outbox.append(lane, topic, payload)
        self.counters.emitted[lane.value] += 1
        self._wake.set()
        return record

    # -- running ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Graceful end of `run()`: goodbye published (retained), link closed with DISCONNECT,
        acknowledgements saved, outbox closed. Cancelling `run()` instead skips the goodbye."""
        self._stop.set()

    async def run(self) -> None:
        await self.outbox.start()
        self._started.set()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.mqtt.run(), name="mqtt")
                workers = [tg.create_task(self._publisher(), name="uplink.publish"),
                           tg.create_task(self._acker(), name="uplink.ack"),
                           tg.create_task(self._telemetry(), name="uplink.telemetry")]
                await self._stop.wait()
                for task in workers:
                    task.cancel()
                await self._goodbye()
                self.mqtt.stop()
        finally:
            with contextlib.suppress(Exception):
                await self._ack_now()
                await self.refresh_stats()
            await self.outbox.close()

    async def _goodbye(self) -> None:
        if not self.mqtt.connected:
            return
        goodbye = messages.goodbye(self.identity.site, self.identity.node)
        with contextlib.suppress(PublishFailed, TimeoutError):
            async with asyncio.timeout(2.0):
                await self.mqtt.publish(self.topics.state, goodbye, retain=True)

    async def _on_connected(self) -> None:
        """Birth first, before any backlog: consumers learn the node is back and what it runs."""
        self._connected_wall = time.time()
        self._in_flight.clear()
        ident = self.identity
        head = self.audit_head() if self.audit_head is not None else None
        birth = messages.birth(ident.site, ident.node, ident.version, ident.config_sha256, self.started_wall,
                               ident.models, head)
        async with asyncio.timeout(10.0):
            await self.mqtt.publish(self.topics.state, birth, retain=True)
        self._wake.set()

    async def _publisher(self) -> None:
        while True:
            if not await self.mqtt.wait_connected(timeout_s=FETCH_IDLE_S):
                continue
            window = self.mqtt.free_window
            after = self._after()
            records = await self.outbox.pending(window, after) if window > 0 else []
            records = [r for r in records if r.id not in self._in_flight and r.id not in self._acked_ids]
            for record in records:
                self._send(record)
            if not records:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FETCH_IDLE_S):
                        await self._wake.wait()

    def _after(self) -> dict[Lane, int] | None:
        """Per lane, the newest id sent and not yet deleted: the next fetch starts after it."""
        if not self._in_flight and not self._acked_ids:
            return None
        after: dict[Lane, int] = {}
        for record in (*self._in_flight.values(), *self._acked_ids.values()):
            after[record.lane] = max(after.get(record.lane, 0), record.id)
        return after

    def _send(self, record: Record) -> None:
        replayed = record.created_wall < self._connected_wall
        payload = messages.frame(record.payload, record.id, replayed)
        try:
            future = self.mqtt.publish(self.topics.of(record.topic), payload)
        except PublishFailed:
            return
        self._in_flight[record.id] = record
        future.add_done_callback(functools.partial(self._on_done, record))

    def _on_done(self, record: Record, future: asyncio.Future[None]) -> None:
        self._in_flight.pop(record.id, None)
        if future.cancelled() or future.exception() is not None:
            self._wake.set()  # it will be fetched again from the outbox
            return
        self._acked.append(record)
        self._acked_ids[record.id] = record
        self._ack_wake.set()
        self._wake.set()

    async def _acker(self) -> None:
        while True:
            await self._ack_wake.wait()
            self._ack_wake.clear()
            await self._ack_now()
            await asyncio.sleep(0.05)  # let PUBACKs collect into one transaction (one fsync)

    async def _ack_now(self) -> None:
        while self._acked:
            batch, self._acked = self._acked[:ACK_BATCH], self._acked[ACK_BATCH:]
            await self.outbox.ack([r.id for r in batch])
            for r in batch:
                self.counters.delivered[r.lane.value] += 1
                self._acked_ids.pop(r.id, None)
        self._wake.set()

    async def _telemetry(self) -> None:
        interval = self.cfg.telemetry.interval_s
        while True:
            batch = self.policy.select(self.image.snapshot(), time.monotonic())
            if batch is not None:
                payload = messages.telemetry(self.identity.site, self.identity.node, batch.kind, batch.points)
                await self.emit(Lane.TELEMETRY, "telemetry", payload)
            await self.outbox.flush()
            await self.refresh_stats()
            await asyncio.sleep(interval)

    # -- inbound ---------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes) -> None:
        if is_signed_command(topic, self.topics.cmd_prefix):
            if self.signed_handler is None:
                self._reject(topic, "signed commands are not handled by this node", None)
            else:
                self.signed_handler(payload, f"mqtt {topic}")  # it publishes its own outcome, with the code
            return
        parsed = parse_command(topic, payload, self.topics.cmd_prefix, self.identity.node)
        if isinstance(parsed, Refusal):
            self._reject(topic, parsed.reason, parsed.command_id)
            return
        reason = self.handler(parsed)
        if reason is not None:
            self._reject(topic, reason, parsed.command_id)
            return
        log.info("command.accepted", topic=topic, command=parsed.command, command_id=parsed.command_id)
        self.emit_event("command.accepted", "info", {"command": parsed.command, "command_id": parsed.command_id})

    def _reject(self, topic: str, reason: str, command_id: str | None) -> None:
        self.counters.rejected_commands += 1
        log.warning("command.rejected", topic=topic, command_id=command_id, reason=reason)
        payload = messages.rejection(self.identity.site, self.identity.node, topic, reason, command_id)
        self._append_nowait(payload)

    async def refresh_stats(self) -> OutboxStats:
        await self._started.wait()
        was_over = self.stats.over_budget if self.stats else False
        self.stats = await self.outbox.stats()
        self.counters.max_backlog = max(self.counters.max_backlog, self.backlog())
        if self.stats.over_budget != was_over:
            # The health alarm: events and decisions alone exceed the budget (they are kept).
            name = "outbox.over_budget" if self.stats.over_budget else "outbox.within_budget"
            self.emit_event(name, "alarm" if self.stats.over_budget else "info",
                            {"bytes": self.stats.bytes, "budget_bytes": self.stats.budget_bytes})
        return self.stats

    def in_flight(self) -> int:
        return len(self._in_flight)

    def backlog(self) -> int:
        return sum(self.stats.records.values()) if self.stats else 0
