"""The OPC UA adapter against real asyncua servers on loopback: subscriptions, status → quality,
server restart and resubscription, missing nodes, writes and a signed/encrypted channel."""

from __future__ import annotations

import asyncio
import datetime
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edgeagent.cycle import Command
from edgeagent.field.opcua import OpcUaDevice
from edgeagent.field.opcua_config import OpcUaDeviceConfig, OpcUaNode, OpcUaSecurity, SecurityMode, parse_node_ref
from edgeagent.image import ProcessImage, Quality
from edgeagent.supervise import Backoff
from tests.helpers import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

FAST = Backoff(initial_s=0.1, maximum_s=0.3, jitter=0.0)
NS = "urn:edgeagent:test:transformer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_START = {"TopOil": (55.0, ua.VariantType.Double), "Ambient": (21.5, ua.VariantType.Double),
          "FanCommand": (0, ua.VariantType.Int16), "Setpoint": (0.0, ua.VariantType.Float)}


class Plant:
    """An asyncua server with a Transformer object; restartable on the same port."""

    def __init__(self, port: int | None = None, policies: list[ua.SecurityPolicyType] | None = None,
                 cert: tuple[Path, Path] | None = None, users: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/edge"
        self.policies = policies
        self.cert = cert
        self.users = users
        self.server: Server | None = None
        self.vars: dict[str, Node] = {}
        self.obj: Node | None = None

    async def start(self, top_oil_c: float = 55.0) -> None:
        manager = _Users(self.users) if self.users is not None else None
        server = Server(user_manager=manager) if manager is not None else Server()
        await server.init()
        server.set_endpoint(self.url)
        if self.policies is not None:
            server.set_security_policy(self.policies)
        if self.cert is not None:
            await server.load_certificate(str(self.cert[0]))
            await server.load_private_key(str(self.cert[1]))
        if self.users is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        idx = await server.register_namespace(NS)
        assert idx == 2
        self.obj = await server.nodes.objects.add_object(ua.NodeId("Transformer", idx), f"{idx}:Transformer")
        self.vars = {}
        for name, (value, vtype) in _START.items():
            value = top_oil_c if name == "TopOil" else value
            var = await self.obj.add_variable(ua.NodeId(f"Transformer.{name}", idx), f"{idx}:{name}",
                                              ua.Variant(value, vtype))
            if name in ("FanCommand", "Setpoint"):
                await var.set_writable()
            self.vars[name] = var
        await server.start()
        self.server = server

    async def add(self, name: str, value: float) -> None:
        assert self.obj is not None
        self.vars[name] = await self.obj.add_variable(ua.NodeId(f"Transformer.{name}", 2), f"2:{name}", value)

    async def remove(self, name: str) -> None:
        assert self.server is not None
        await self.server.delete_nodes([self.vars.pop(name)])

    async def reset(self) -> None:
        """Back to the start values, without the nodes tests added (the server is shared by the module)."""
        for name in [n for n in self.vars if n not in _START]:
            await self.remove(name)
        for name, (value, _) in _START.items():
            await self.set(name, value)

    async def set(self, name: str, value: float, status: int = ua.StatusCodes.Good) -> None:
        var = self.vars[name]
        vtype = await var.read_data_type_as_variant_type()
        await var.write_value(ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(status)))

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None


class _Users:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


def device_cfg(url: str, nodes: list[tuple[str, str]], writable: tuple[str, ...] = (), **kw: Any
               ) -> OpcUaDeviceConfig:
    defaults: dict[str, Any] = {"publishing_s": 0.05, "timeout_s": 0.5, "retry_s": 0.3}
    defaults.update(kw)
    return OpcUaDeviceConfig("tx", url, tuple(OpcUaNode(n, parse_node_ref(ref), "°C", n in writable)
                                              for n, ref in nodes), **defaults)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_plant() -> AsyncIterator[Plant]:
    """One server for the module: starting an asyncua server costs seconds (its standard address space)."""
    p = Plant()
    await p.start()
    yield p
    await p.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def plant(shared_plant: Plant) -> Plant:
    if shared_plant.server is None:
        await shared_plant.start()
    await shared_plant.reset()
    return shared_plant


async def running(cfg: OpcUaDeviceConfig) -> tuple[OpcUaDevice, ProcessImage, asyncio.Task[None]]:
    image = ProcessImage(cfg.point_specs())
    device = OpcUaDevice(cfg, image, backoff=FAST)
    return device, image, asyncio.create_task(device.run())


async def finish(device: OpcUaDevice, task: asyncio.Task[None]) -> None:
    device.stop()
    await asyncio.wait_for(task, 5)


def value(image: ProcessImage, point: str) -> Any:
    s = image.latest(point)
    return s.value if s.quality is Quality.GOOD else None


async def test_subscribed_values_arrive_follow_changes_and_stay_fresh_while_unchanged(plant: Plant) -> None:
    cfg = device_cfg(plant.url, [("top_oil_c", "ns=2;s=Transformer.TopOil"),
                                 ("ambient_c", "0:Objects/2:Transformer/2:Ambient")], max_age_s=1.2)
    device, image, task = await running(cfg)
    try:
        await eventually(lambda: value(image, "tx.top_oil_c") == 55.0 and value(image, "tx.ambient_c") == 21.5,
                         what="initial values by NodeId and by browse path")
        assert device.online and device.sessions == 1
        for v in (61.25, 70.0):
            await plant.set("TopOil", v)
            await eventually(lambda v=v: value(image, "tx.top_oil_c") == v, timeout_s=2, what=f"top oil {v}")
        # Ambient has not changed for a while: the keep-alives keep it fresh past its max age.
        await asyncio.sleep(2.0)
        view = image.snapshot()["tx.ambient_c"]
        assert view.quality is Quality.GOOD and view.age_s < 1.2
    finally:
        await finish(device, task)


async def test_status_codes_become_qualities(plant: Plant) -> None:
    cfg = device_cfg(plant.url, [("top_oil_c", "ns=2;s=Transformer.TopOil")])
    device, image, task = await running(cfg)
    point = "tx.top_oil_c"
    try:
        await eventually(lambda: value(image, point) == 55.0)
        await plant.set("TopOil", 56.0, ua.StatusCodes.BadSensorFailure)
        await eventually(lambda: image.latest(point).quality is Quality.BAD, timeout_s=2, what="BAD")
        assert image.latest(point).reason == "BadSensorFailure" and image.latest(point).value is None
        await plant.set("TopOil", 57.0, ua.StatusCodes.UncertainSensorNotAccurate)
        await eventually(lambda: image.latest(point).reason == "UncertainSensorNotAccurate", timeout_s=2)
        assert image.latest(point).quality is Quality.BAD and image.latest(point).value == 57.0  # kept for display
        await plant.set("TopOil", 57.5, ua.StatusCodes.UncertainLastUsableValue)
        await eventually(lambda: image.latest(point).quality is Quality.STALE, timeout_s=2)
        assert image.latest(point).reason == "UncertainLastUsableValue"
        await plant.set("TopOil", 58.0)
        await eventually(lambda: value(image, point) == 58.0, timeout_s=2, what="GOOD again")
        assert image.latest(point).reason == ""
    finally:
        await finish(device, task)


async def test_server_restart_goes_stale_then_resubscribes_without_a_restart(plant: Plant) -> None:
    cfg = device_cfg(plant.url, [("top_oil_c", "ns=2;s=Transformer.TopOil"),
                                 ("ambient_c", "0:Objects/2:Transformer/2:Ambient")])
    device, image, task = await running(cfg)
    try:
        await eventually(lambda: value(image, "tx.top_oil_c") == 55.0)
        await plant.stop()
        await eventually(lambda: all(image.latest(p).quality is Quality.STALE for p in device.names), timeout_s=3,
                         what="STALE after the server went away")
        assert not device.online and device.link.reason
        await asyncio.sleep(0.5)  # a few failed reconnects while the server is down
        await plant.start(top_oil_c=80.0)
        await eventually(lambda: value(image, "tx.top_oil_c") == 80.0 and value(image, "tx.ambient_c") == 21.5,
                         timeout_s=5, what="values from the restarted server")
        assert device.online and device.sessions == 2
        await plant.set("TopOil", 81.5)  # the new subscription follows changes, not just the first value
        await eventually(lambda: value(image, "tx.top_oil_c") == 81.5, timeout_s=2, what="change after restart")
    finally:
        await finish(device, task)


async def test_missing_node_is_bad_and_retried_while_the_others_work(plant: Plant) -> None:
    cfg = device_cfg(plant.url, [("top_oil_c", "ns=2;s=Transformer.TopOil"),
                                 ("hotspot_c", "ns=2;s=Transformer.HotSpot"),
                                 ("load_a", "0:Objects/2:Transformer/2:LoadCurrent")])
    device, image, task = await running(cfg)
    try:
        await eventually(lambda: value(image, "tx.top_oil_c") == 55.0)
        await eventually(lambda: len(device.missing) == 2, what="two missing nodes")
        hot, load = image.latest("tx.hotspot_c"), image.latest("tx.load_a")
        assert hot.quality is Quality.BAD and "ns=2;s=Transformer.HotSpot" in hot.reason
        assert "BadNodeIdUnknown" in hot.reason and "retrying" in hot.reason
        assert load.quality is Quality.BAD and "0:Objects/2:Transformer/2:LoadCurrent" in load.reason
        await plant.set("TopOil", 60.0)
        await eventually(lambda: value(image, "tx.top_oil_c") == 60.0, timeout_s=2, what="others keep working")
        await plant.add("HotSpot", 88.0)
        await plant.add("LoadCurrent", 412.0)
        await eventually(lambda: value(image, "tx.hotspot_c") == 88.0 and value(image, "tx.load_a") == 412.0,
                         timeout_s=3, what="nodes picked up once they exist")
        assert not device.missing and device.sessions == 1  # found by the retry, not by a reconnect
        await plant.set("HotSpot", 90.0)
        await eventually(lambda: value(image, "tx.hotspot_c") == 90.0, timeout_s=2)
    finally:
        await finish(device, task)


async def test_writes_use_the_node_data_type_and_refuse_what_it_cannot_hold(plant: Plant) -> None:
    cfg = device_cfg(plant.url, [("top_oil_c", "ns=2;s=Transformer.TopOil"),
                                 ("fan_cmd", "ns=2;s=Transformer.FanCommand"),
                                 ("setpoint", "0:Objects/2:Transformer/2:Setpoint")],
                     writable=("fan_cmd", "setpoint"))
    device, image, task = await running(cfg)
    try:
        await eventually(lambda: value(image, "tx.fan_cmd") == 0.0)
        device.submit(Command("tx", "fan_cmd", 2.0, "test", "fans on"))
        device.submit(Command("tx", "setpoint", 12.5, "test"))
        await eventually(lambda: value(image, "tx.fan_cmd") == 2.0 and value(image, "tx.setpoint") == 12.5,
                         timeout_s=2, what="written values come back through the subscription")
        fan = await plant.vars["FanCommand"].read_data_value()
        assert fan.Value is not None and fan.Value.VariantType is ua.VariantType.Int16 and fan.Value.Value == 2
        device.submit(Command("tx", "fan_cmd", 40000.0, "test"))  # beyond Int16
        device.submit(Command("tx", "top_oil_c", 1.0, "test"))  # not writable
        await eventually(lambda: len(device.writes) == 4, timeout_s=2)
        failed = {w.point: w.error for w in device.writes if not w.ok}
        assert "outside the range of Int16" in failed["fan_cmd"]
        assert "not a writable point" in failed["top_oil_c"]
        assert value(image, "tx.fan_cmd") == 2.0
    finally:
        await finish(device, task)


def _cert(path: Path, name: str, uri: str, usage: x509.ObjectIdentifier) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                         data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    (path / f"{name}.der").write_bytes(der)
    (path / f"{name}-key.pem").write_bytes(pem_key)
    return path / f"{name}.der", path / f"{name}-key.pem"


async def test_basic256sha256_with_certificates_and_a_password(tmp_path: Path) -> None:
    server_cert = _cert(tmp_path, "server", "urn:edgeagent:test:server", ExtendedKeyUsageOID.SERVER_AUTH)
    _cert(tmp_path, "client", "urn:edgeagent:test:client", ExtendedKeyUsageOID.CLIENT_AUTH)
    _cert(tmp_path, "impostor", "urn:edgeagent:test:server", ExtendedKeyUsageOID.SERVER_AUTH)
    (tmp_path / "password").write_text("s3cret\n")
    (tmp_path / "wrong").write_text("guess\n")
    plant = Plant(policies=[ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                            ua.SecurityPolicyType.Basic256Sha256_Sign], cert=server_cert, users={"edge": "s3cret"})
    await plant.start()

    def secure(mode: SecurityMode, server_cert_file: str = "server.der", password: str = "password") -> OpcUaSecurity:
        return OpcUaSecurity("Basic256Sha256", mode, str(tmp_path / "client.der"), str(tmp_path / "client-key.pem"),
                             str(tmp_path / server_cert_file), "edge", str(tmp_path / password))

    async def connects(security: OpcUaSecurity | None) -> tuple[bool, str]:
        kw = {} if security is None else {"security": security}
        cfg = device_cfg(plant.url, [("top_oil_c", "ns=2;s=Transformer.TopOil")], **kw)
        device, image, task = await running(cfg)
        try:
            await eventually(lambda: value(image, "tx.top_oil_c") == 55.0 or device.link.restarts >= 1, timeout_s=5)
            return value(image, "tx.top_oil_c") == 55.0, device.link.reason
        finally:
            await finish(device, task)

    try:
        assert (await connects(secure(SecurityMode.SIGN_AND_ENCRYPT)))[0]
        assert (await connects(secure(SecurityMode.SIGN)))[0]
        # A server whose certificate is not the one we trust gets no session, and neither does a wrong password.
        ok, reason = await connects(secure(SecurityMode.SIGN_AND_ENCRYPT, server_cert_file="impostor.der"))
        assert not ok and reason
        ok, reason = await connects(secure(SecurityMode.SIGN_AND_ENCRYPT, password="wrong"))
        assert not ok and "Bad" in reason
        # Policy None to a server that offers only Basic256Sha256: refused, with a reason.
        ok, reason = await connects(None)
        assert not ok and reason
    finally:
        await plant.stop()


async def test_an_unreadable_certificate_is_the_offline_reason(tmp_path: Path) -> None:
    sec = OpcUaSecurity("Basic256Sha256", SecurityMode.SIGN, str(tmp_path / "nope.der"), str(tmp_path / "k.pem"),
                        str(tmp_path / "s.der"))
    cfg = device_cfg(f"opc.tcp://127.0.0.1:{free_port()}", [("x", "ns=2;s=X")], security=sec)
    device, _, task = await running(cfg)
    try:
        await eventually(lambda: device.link.restarts >= 1)
        assert "cannot read client certificate" in device.link.reason and "nope.der" in device.link.reason
    finally:
        await finish(device, task)


@pytest.mark.filterwarnings("ignore:coroutine 'MonitoredItemService.datachange_callback' was never awaited")
async def test_a_node_deleted_while_subscribed_goes_bad_and_returns(plant: Plant) -> None:
    cfg = device_cfg(plant.url, [("top_oil_c", "ns=2;s=Transformer.TopOil"), ("extra", "ns=2;s=Transformer.Extra")])
    await plant.add("Extra", 1.0)
    device, image, task = await running(cfg)
    try:
        await eventually(lambda: value(image, "tx.extra") == 1.0)
        # A server reports a deleted node as BadNodeIdUnknown on its monitored item. asyncua's server means to
        # but its notification is lost (a coroutine it never awaits), so the test server sends it by hand.
        await plant.set("Extra", 1.0, ua.StatusCodes.BadNodeIdUnknown)
        await eventually(lambda: image.latest("tx.extra").quality is Quality.BAD, timeout_s=3, what="BAD on delete")
        await plant.remove("Extra")
        await eventually(lambda: "extra" in device.missing, timeout_s=3, what="moved to the retry list")
        assert "ns=2;s=Transformer.Extra" in image.latest("tx.extra").reason
        await plant.add("Extra", 2.0)
        await eventually(lambda: value(image, "tx.extra") == 2.0, timeout_s=3, what="back once re-added")
        assert device.sessions == 1 and value(image, "tx.top_oil_c") == 55.0
    finally:
        await finish(device, task)
