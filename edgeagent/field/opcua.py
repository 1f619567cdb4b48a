"""OPC UA field adapter: data-change subscriptions into the process image, writes from the cycle.

One `OpcUaDevice` owns one server. `session()` connects (with the configured security), creates
one subscription and a monitored item per configured node, then waits: values arrive as data
changes, pushed by the server, and become samples (status code → quality, see `opcua_values`).
The session ends (raises `DeviceOffline`) when the link drops or the subscription falls silent;
the supervisor marks every point STALE and starts a new session after a backoff, which
connects again and subscribes again from scratch. That is what makes a server restart harmless:
a restarted server has forgotten our session and subscription, so they are made anew.

A node that the server does not have (BadNodeIdUnknown, a browse path with no match) makes only
its own point BAD, with a reason that names the node; the others are subscribed and work. The
session retries missing nodes every `retry_s` and subscribes each as soon as it appears.

A value that holds still produces no data change. The subscription's keep-alives say it is still
current, so each publish response re-stamps the GOOD points with its arrival time: an unchanging
value stays fresh while the server confirms it, and goes STALE when the server falls silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from typing import Any, cast

import structlog
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.common.subscription import DataChangeNotif, Subscription
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from edgeagent.cycle import Command
from edgeagent.field.modbus import DeviceOffline, WriteRecord
from edgeagent.field.opcua_client import SecuritySetupError, close_quietly, connected, make_client
from edgeagent.field.opcua_config import OpcUaDeviceConfig, OpcUaNode
from edgeagent.field.opcua_values import WriteValueError, sample_value, status_name, to_variant
from edgeagent.image import ProcessImage, Quality, Sample
from edgeagent.supervise import Backoff, LinkState, supervise

log = structlog.get_logger("edgeagent.field.opcua")

DEFAULT_BACKOFF = Backoff()
_GONE = {StatusCodes.BadNodeIdUnknown, StatusCodes.BadNodeIdInvalid}
"""Data-change statuses that mean the node itself went away: its point is resubscribed when it returns."""


def _forward(ns: int, name: str) -> ua.RelativePathElement:
    """One step of a browse path: a hierarchical reference (or subtype) forward to `ns:name`."""
    element = ua.RelativePathElement(ReferenceTypeId=ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences)),
                                     TargetName=ua.QualifiedName(name, ua.UInt16(ns)))
    element.IsInverse = cast(ua.Boolean, False)
    element.IncludeSubtypes = cast(ua.Boolean, True)
    return element


class _Handler:
    """asyncua calls this for each notification (in its own task, in arrival order)."""

    def __init__(self, device: OpcUaDevice) -> None:
        self.device = device

    def datachange_notification(self, node: Node, val: Any, data: DataChangeNotif) -> None:
        self.device._on_data(node, val, data)

    def status_change_notification(self, status: ua.StatusChangeNotification) -> None:
        self.device._on_subscription_status(status)


class OpcUaDevice:
    def __init__(self, cfg: OpcUaDeviceConfig, image: ProcessImage, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self.cfg = cfg
        self.image = image
        self.link = LinkState("opcua", device=cfg.name, endpoint=cfg.url)
        self.writes: deque[WriteRecord] = deque(maxlen=1000)
        self.missing: dict[str, str] = {}
        """Points whose node the server does not have (point name → reason), retried every `retry_s`."""
        self.sessions = 0
        self._backoff = backoff
        self._by_name = {n.name: n for n in cfg.nodes}
        self._pending: dict[str, Command] = {}
        self._wake = asyncio.Event()
        self._stopped = False
        self._client: Client | None = None
        self._sub: Subscription | None = None
        self._live: dict[ua.NodeId, list[OpcUaNode]] = {}
        self._handles: dict[str, int] = {}
        self._vtypes: dict[str, ua.VariantType] = {}
        self._gone: set[str] = set()
        self._lost = ""
        self._restamped_at = 0.0
        self._sub_created = 0.0

    @property
    def names(self) -> list[str]:
        return self.cfg.point_names()

    @property
    def online(self) -> bool:
        return self.link.up

    def submit(self, command: Command) -> None:
        """Queue a setpoint from the cycle; never blocks. The latest command per point wins."""
        self._pending[command.point] = command
        self._wake.set()

    def mark_down(self, reason: str) -> None:
        """Called by the supervisor when a session ended: every point goes STALE."""
        self.image.mark_stale(self.names, reason)

    async def run(self) -> None:
        """Sessions until `stop()`, with backoff between them (the daemon's task for this server)."""
        await supervise(self.link, self.session, self.mark_down, backoff=self._backoff,
                        stopped=lambda: self._stopped)

    def stop(self) -> None:
        """End the session at its next step; the session closes the connection on its way out."""
        self._stopped = True
        self._wake.set()

    async def session(self) -> None:
        """Connect, subscribe, then deliver data and writes until the link fails (raises) or `stop()`."""
        self._reset_session_state()
        try:
            client = await make_client(self.cfg)
        except SecuritySetupError as exc:
            raise DeviceOffline(str(exc)) from None
        self._client = client
        try:
            try:
                await self._call(client.connect(), f"connect to {self.cfg.url}", self.cfg.timeout_s * 2)
            except DeviceOffline as exc:
                if self.cfg.security.policy != "None" and "no answer" in str(exc):
                    # A server cannot read a channel encrypted to another certificate: it stays silent.
                    raise DeviceOffline(f"{exc} (is security.server_certificate this server's certificate?)"
                                        ) from None
                raise
            params = ua.CreateSubscriptionParameters(
                RequestedPublishingInterval=self.cfg.publishing_s * 1000,
                RequestedLifetimeCount=self.cfg.keepalive_count * 3 * 10,
                RequestedMaxKeepAliveCount=self.cfg.keepalive_count,
                MaxNotificationsPerPublish=10_000, PublishingEnabled=True, Priority=0)
            self._sub = await self._call(client.create_subscription(params, _Handler(self)), "create subscription")
            self._sub_created = time.monotonic()
            self.sessions += 1
            await self._subscribe(list(self.cfg.nodes))
            self.link.set_up(nodes=len(self.cfg.nodes) - len(self.missing), missing=len(self.missing))
            await self._serve()
        finally:
            self._sub = None
            self._client = None
            await close_quietly(client, self.cfg.timeout_s)

    def _reset_session_state(self) -> None:
        self._live.clear()
        self._handles.clear()
        self._vtypes.clear()
        self._gone.clear()
        self._lost = ""

    async def _serve(self) -> None:
        tick_s = min(self.cfg.publishing_s, 0.5)
        next_retry = time.monotonic() + self.cfg.retry_s
        while not self._stopped:
            self._check_alive()
            if self._pending:
                await self._flush_writes()
            if self._gone:
                await self._drop_gone()
            if self.missing and time.monotonic() >= next_retry:
                next_retry = time.monotonic() + self.cfg.retry_s
                await self._subscribe([self._by_name[name] for name in self.missing])
            self._restamp()
            self._wake.clear()
            try:
                async with asyncio.timeout(tick_s):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _check_alive(self) -> None:
        assert self._client is not None and self._sub is not None
        if self._lost:
            raise DeviceOffline(self._lost)
        if not connected(self._client):
            raise DeviceOffline(f"connection to {self.cfg.url} lost")
        last = self._sub.last_publish_at or self._sub_created
        if time.monotonic() - last > self.cfg.silence_s:
            raise DeviceOffline(f"no publish response from {self.cfg.url} for {self.cfg.silence_s:g} s")

    async def _call(self, awaitable: Any, what: str, timeout_s: float | None = None) -> Any:
        """One request under a timeout; a lost or silent link becomes DeviceOffline.

        OPC UA status errors are left to the caller: they belong to a node or a write, not the link.
        """
        try:
            async with asyncio.timeout(timeout_s or self.cfg.timeout_s):
                return await awaitable
        except TimeoutError:
            raise DeviceOffline(f"{what}: no answer within {(timeout_s or self.cfg.timeout_s) * 1000:.0f} ms"
                                ) from None
        except (OSError, ConnectionError) as exc:
            raise DeviceOffline(f"{what}: {exc or type(exc).__name__}") from None
        except UaStatusCodeError as exc:
            if exc.code in (StatusCodes.BadSessionIdInvalid, StatusCodes.BadSessionClosed,
                            StatusCodes.BadSecureChannelClosed, StatusCodes.BadServerHalted,
                            StatusCodes.BadShutdown, StatusCodes.BadTooManySessions,
                            StatusCodes.BadIdentityTokenInvalid, StatusCodes.BadIdentityTokenRejected,
                            StatusCodes.BadUserAccessDenied, StatusCodes.BadSecurityChecksFailed,
                            StatusCodes.BadCertificateInvalid, StatusCodes.BadCertificateUntrusted):
                raise DeviceOffline(f"{what}: {status_name(ua.StatusCode(ua.UInt32(exc.code)))}") from None
            raise
        except UaError as exc:
            raise DeviceOffline(f"{what}: {exc}") from None

    async def _resolve(self, nodes: list[OpcUaNode]) -> dict[str, ua.NodeId]:
        """NodeIds for the given points; a browse path that matches nothing goes to `missing`."""
        out = {n.name: ua.NodeId.from_string(n.ref.node_id) for n in nodes if n.ref.node_id is not None}
        paths = [n for n in nodes if n.ref.node_id is None]
        if not paths:
            return out
        assert self._client is not None
        browse = []
        for n in paths:
            rpath = ua.RelativePath(Elements=[_forward(ns, name) for ns, name in n.ref.path])
            browse.append(ua.BrowsePath(StartingNode=ua.NodeId(ua.Int32(ObjectIds.RootFolder)), RelativePath=rpath))
        results = await self._call(self._client.uaclient.translate_browsepaths_to_nodeids(browse),
                                   "translate browse paths")
        for n, result in zip(paths, results, strict=True):
            if result.StatusCode.is_good() and result.Targets:
                out[n.name] = result.Targets[0].TargetId
            else:
                self._set_missing(n, f"browse path {n.ref.text} not found on the server "
                                     f"({status_name(result.StatusCode)})")
        return out

    async def _subscribe(self, nodes: list[OpcUaNode]) -> None:
        assert self._client is not None and self._sub is not None
        ids = await self._resolve(nodes)
        todo = [n for n in nodes if n.name in ids]
        if not todo:
            return
        for n in todo:  # registered before the request: the first data change may beat the reply
            self._live.setdefault(ids[n.name], []).append(n)
        try:
            handles = await self._call(self._sub.subscribe_data_change(
                [self._client.get_node(ids[n.name]) for n in todo], queuesize=1,
                sampling_interval=ua.Double(self.cfg.publishing_s * 1000)), "create monitored items")
        except UaStatusCodeError as exc:
            handles = [ua.StatusCode(ua.UInt32(exc.code))] * len(todo)
        for n, handle in zip(todo, handles, strict=True):
            if isinstance(handle, ua.StatusCode):
                self._unlive(ids[n.name], n)
                what = "unknown on the server" if handle.value in _GONE else "cannot be subscribed"
                self._set_missing(n, f"node {n.ref.text} {what} ({status_name(handle)})")
            else:
                self._handles[n.name] = handle
                if self.missing.pop(n.name, None) is not None:
                    log.info("opcua.node_found", device=self.cfg.name, point=n.name, node=n.ref.text)

    def _unlive(self, node_id: ua.NodeId, node: OpcUaNode) -> None:
        points = self._live.get(node_id, [])
        if node in points:
            points.remove(node)
        if not points:
            self._live.pop(node_id, None)

    def _set_missing(self, node: OpcUaNode, reason: str) -> None:
        reason = f"{reason}; retrying every {self.cfg.retry_s:g} s"
        if self.missing.get(node.name) != reason:
            log.warning("opcua.node_missing", device=self.cfg.name, point=node.name, reason=reason)
        self.missing[node.name] = reason
        now_m, now_w = time.monotonic(), time.time()
        self.image.write(Sample(f"{self.cfg.name}.{node.name}", None, node.unit, Quality.BAD, now_m, now_w, reason))

    async def _drop_gone(self) -> None:
        """Unsubscribe items whose node disappeared, so the retry can subscribe it again when it is back."""
        assert self._sub is not None
        gone, self._gone = self._gone, set()
        for name in gone:
            node = self._by_name[name]
            handle = self._handles.pop(name, None)
            for node_id, points in list(self._live.items()):
                if node in points:
                    self._unlive(node_id, node)
            if handle is not None:
                with contextlib.suppress(UaStatusCodeError):  # the server may have dropped it already
                    await self._call(self._sub.unsubscribe(handle), "delete monitored item")
            self._set_missing(node, f"node {node.ref.text} unknown on the server (BadNodeIdUnknown)")

    def _on_data(self, node: Node, raw: Any, data: DataChangeNotif) -> None:
        points = self._live.get(node.nodeid)
        if not points:
            return  # a late notification from an item of an older session
        dv = data.monitored_item.Value
        code = dv.StatusCode if dv is not None else None
        value, quality, reason = sample_value(code, raw)
        now_m, now_w = time.monotonic(), time.time()
        for point in points:
            if code is not None and code.value & 0xFFFF0000 in _GONE:
                self._gone.add(point.name)
                self._wake.set()
            self.image.write(Sample(f"{self.cfg.name}.{point.name}", value, point.unit, quality, now_m, now_w,
                                    reason))

    def _on_subscription_status(self, status: ua.StatusChangeNotification) -> None:
        self._lost = f"subscription ended by {self.cfg.url}: {status_name(status.Status)}"
        self._wake.set()

    def _restamp(self) -> None:
        """Re-date unchanged GOOD values to the last publish response (data or keep-alive)."""
        last = self._sub.last_publish_at if self._sub is not None else None
        if last is None or last <= self._restamped_at:
            return
        self._restamped_at = last
        t_wall = time.time() - (time.monotonic() - last)
        for points in self._live.values():
            for point in points:
                sample = self.image.latest(f"{self.cfg.name}.{point.name}")
                if sample.quality is Quality.GOOD and sample.t_mono < last:
                    self.image.write(dataclasses.replace(sample, t_mono=last, t_wall=t_wall))

    async def _flush_writes(self) -> None:
        pending, self._pending = self._pending, {}
        for command in pending.values():
            error = ""
            started = time.monotonic()
            try:
                await self._write(command)
            except (WriteValueError, KeyError, UaStatusCodeError) as exc:
                error = (status_name(ua.StatusCode(ua.UInt32(exc.code))) if isinstance(exc, UaStatusCodeError)
                         else str(exc).strip("'\""))
                log.warning("opcua.write_failed", device=self.cfg.name, point=command.point,
                            value=command.value, origin=command.origin, error=error)
            done = time.monotonic()
            self.writes.append(WriteRecord(time.time(), done, command.point, command.value, command.origin,
                                           command.reason, not error, error, done - started))

    async def _write(self, command: Command) -> None:
        assert self._client is not None
        node_cfg = self._by_name.get(command.point)
        if node_cfg is None or not node_cfg.writable:
            raise KeyError(f"{self.cfg.name}.{command.point} is not a writable point")
        node_id = next((nid for nid, pts in self._live.items() if node_cfg in pts), None)
        if node_id is None:
            raise KeyError(f"{self.cfg.name}.{command.point}: {self.missing.get(command.point, 'node not resolved')}")
        node = self._client.get_node(node_id)
        vtype = self._vtypes.get(command.point)
        if vtype is None:
            vtype = await self._call(node.read_data_type_as_variant_type(), f"read data type of {node_cfg.ref.text}")
            self._vtypes[command.point] = vtype
        variant = to_variant(command.value, vtype)
        await self._call(node.write_value(ua.DataValue(variant)), f"write {node_cfg.ref.text}")
        log.info("opcua.write", device=self.cfg.name, point=command.point, value=command.value,
                 origin=command.origin, reason=command.reason)
