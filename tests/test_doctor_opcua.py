"""The doctor's OPC UA lines against a real asyncua server: endpoint (security offered, login), the
server certificate (the configured one, days to expiry) and the nodes (missing ones named).

One server for the module (starting one costs seconds), on its own event loop in a thread, because
`run_doctor` is the synchronous command a technician runs. It offers policy None and Basic256Sha256
SignAndEncrypt (not Sign), anonymous and username logins, and a certificate valid for 400 days.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.test_doctor_helpers import Run, doctor, site_config

NS = "urn:edgeagent:test:doctor"
CERT_DAYS = 400
DAY_S = 86400.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_cert(directory: Path, name: str, uri: str, usage: x509.ObjectIdentifier, days: float) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=True,
                                         data_encipherment=True, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(key, hashes.SHA256()))
    (directory / f"{name}.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    (directory / f"{name}-key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


class _Users:
    """Anonymous sessions, and user `edge` with password `s3cret`."""

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is None or (username == "edge" and password == "s3cret"):
            return User(role=UserRole.User, name=username)
        return None


@dataclass(frozen=True)
class Served:
    url: str
    pki: Path


async def _serve(url: str, pki: Path, ready: threading.Event, stop: asyncio.Event) -> None:
    server = Server(user_manager=_Users())
    await server.init()
    server.set_endpoint(url)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity,
                                ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    await server.load_certificate(str(pki / "server.der"))
    await server.load_private_key(str(pki / "server-key.pem"))
    idx = await server.register_namespace(NS)
    obj = await server.nodes.objects.add_object(ua.NodeId("Transformer", idx), f"{idx}:Transformer")
    await obj.add_variable(ua.NodeId("Transformer.TopOil", idx), f"{idx}:TopOil", 55.5)
    await obj.add_variable(ua.NodeId("Transformer.Ambient", idx), f"{idx}:Ambient", 21.25)
    broken = await obj.add_variable(ua.NodeId("Transformer.HotSpot", idx), f"{idx}:HotSpot", 0.0)
    await broken.write_value(ua.DataValue(ua.Variant(0.0, ua.VariantType.Double),
                                          StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure)))
    async with server:
        ready.set()
        await stop.wait()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pki = tmp_path_factory.mktemp("pki")
    make_cert(pki, "server", "urn:edgeagent:test:server", ExtendedKeyUsageOID.SERVER_AUTH, CERT_DAYS)
    make_cert(pki, "impostor", "urn:edgeagent:test:server", ExtendedKeyUsageOID.SERVER_AUTH, CERT_DAYS)
    make_cert(pki, "client", "urn:edgeagent:test:client", ExtendedKeyUsageOID.CLIENT_AUTH, CERT_DAYS)
    (pki / "password").write_text("s3cret\n")
    (pki / "wrong").write_text("guess\n")
    url = f"opc.tcp://127.0.0.1:{free_port()}/doctor"
    ready = threading.Event()
    errors: list[BaseException] = []
    box: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        stop = asyncio.Event()
        box.append((asyncio.get_running_loop(), stop))
        await _serve(url, pki, ready, stop)

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=run, name="asyncua server", daemon=True)
    thread.start()
    assert ready.wait(20), "the OPC UA server did not start within 20 s"
    if errors:
        raise errors[0]
    try:
        yield Served(url, pki)
    finally:
        loop, stop = box[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


GOOD_NODES = (("top_oil_c", "ns=2;s=Transformer.TopOil", "°C"),
              ("ambient_c", "0:Objects/2:Transformer/2:Ambient", "°C"))


def device(url: str, nodes: tuple[tuple[str, str, str], ...] = GOOD_NODES, security: str = "") -> str:
    body = f'[devices.tx]\nkind = "opcua"\nurl = "{url}"\ntimeout_ms = 1000\n'
    if security:
        body += f"\n[devices.tx.security]\n{security}\n"
    for name, node, unit in nodes:
        body += f'\n[[devices.tx.nodes]]\nname = "{name}"\nnode = "{node}"\nunit = "{unit}"\n'
    return body


def secure(pki: Path, *, mode: str = "SignAndEncrypt", server_cert: str = "server.der",
           password: str = "password") -> str:
    return (f'policy = "Basic256Sha256"\nmode = "{mode}"\ncertificate = "{pki / "client.der"}"\n'
            f'private_key = "{pki / "client-key.pem"}"\nserver_certificate = "{pki / server_cert}"\n'
            f'username = "edge"\npassword_file = "{pki / password}"')


def run(tmp_path: Path, body: str, **kwargs: Any) -> Run:
    return doctor(site_config(tmp_path, body), **kwargs)


def opcua_lines(result: Run) -> list[str]:
    return [ln.what for ln in result.lines if ln.what.startswith("opcua")]


def test_anonymous_without_security_passes_with_values_in_order(served: Served, tmp_path: Path) -> None:
    result = run(tmp_path, device(served.url))
    assert result.code == 0, result.text
    whats = [ln.what for ln in result.lines]
    assert whats[:4] == ["config", "opcua tx", "opcua tx nodes", "broker"]  # after the devices, before the broker
    assert set(result.statuses().values()) == {"PASS"}, result.text
    assert f"{served.url}: session open (security None, anonymous)" in result.line("opcua tx").detail
    nodes = result.line("opcua tx nodes").detail
    assert "all 2 nodes found" in nodes and "top_oil_c=55.5 °C" in nodes and "ambient_c=21.25 °C" in nodes


def test_signed_and_encrypted_with_a_password_passes_all_three_lines(served: Served, tmp_path: Path) -> None:
    result = run(tmp_path, device(served.url, security=secure(served.pki)))
    assert result.code == 0, result.text
    assert opcua_lines(result) == ["opcua tx", "opcua tx certificate", "opcua tx nodes"]
    assert {result.line(w).status for w in opcua_lines(result)} == {"PASS"}, result.text
    assert "Basic256Sha256 SignAndEncrypt, user edge" in result.line("opcua tx").detail
    cert = result.line("opcua tx certificate").detail
    assert "presents the configured" in cert and "server.der" in cert and f"in {CERT_DAYS} days" in cert


def test_server_down_is_one_fail_line_with_the_address(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    result = run(tmp_path, device(f"opc.tcp://127.0.0.1:{port}/doctor"))
    assert time.monotonic() - started < 5
    assert result.code == 1
    assert opcua_lines(result) == ["opcua tx"]  # one problem, one line
    line = result.line("opcua tx")
    assert line.status == "FAIL" and f"127.0.0.1:{port}: connection refused" in line.detail
    assert "start the OPC UA server" in line.fix and "devices.tx.url" in line.fix


def test_missing_nodes_are_named(served: Served, tmp_path: Path) -> None:
    nodes = (*GOOD_NODES, ("load_a", "ns=2;s=Transformer.Load", "A"),
             ("tap", "0:Objects/2:Transformer/2:TapPosition", ""))
    result = run(tmp_path, device(served.url, nodes))
    assert result.code == 1
    assert result.line("opcua tx").status == "PASS"
    line = result.line("opcua tx nodes")
    assert line.status == "FAIL"
    assert line.detail == ("2 of 4 nodes not on the server: load_a (ns=2;s=Transformer.Load: BadNodeIdUnknown); "
                           "tap (0:Objects/2:Transformer/2:TapPosition: BadNoMatch)")
    assert "top_oil_c" not in line.detail and "devices.tx.nodes" in line.fix


def test_a_node_without_a_good_value_warns(served: Served, tmp_path: Path) -> None:
    result = run(tmp_path, device(served.url, (*GOOD_NODES, ("hotspot_c", "ns=2;s=Transformer.HotSpot", "°C"))))
    assert result.code == 0, result.text  # a WARN does not fail the run
    line = result.line("opcua tx nodes")
    assert line.status == "WARN" and "hotspot_c (BadSensorFailure)" in line.detail


def test_wrong_password_fails_the_endpoint_and_skips_the_nodes(served: Served, tmp_path: Path) -> None:
    result = run(tmp_path, device(served.url, security=secure(served.pki, password="wrong")))
    assert result.code == 1
    assert opcua_lines(result) == ["opcua tx", "opcua tx certificate"]
    line = result.line("opcua tx")
    assert line.status == "FAIL" and "login as 'edge' refused" in line.detail
    assert "wrong username or password" in line.detail and "wrong" in line.fix
    assert result.line("opcua tx certificate").status == "PASS"


def test_a_mode_the_server_does_not_offer_is_named(served: Served, tmp_path: Path) -> None:
    result = run(tmp_path, device(served.url, security=secure(served.pki, mode="Sign")))
    assert result.code == 1
    assert opcua_lines(result) == ["opcua tx"]
    line = result.line("opcua tx")
    assert line.status == "FAIL" and "refuses security Basic256Sha256 Sign" in line.detail
    assert line.detail.endswith("it offers Basic256Sha256 SignAndEncrypt, None")


def test_another_server_certificate_than_configured_fails_without_a_hung_session(served: Served,
                                                                                 tmp_path: Path) -> None:
    started = time.monotonic()
    result = run(tmp_path, device(served.url, security=secure(served.pki, server_cert="impostor.der")))
    assert time.monotonic() - started < 5  # not waiting for the silent server
    assert result.code == 1
    assert opcua_lines(result) == ["opcua tx", "opcua tx certificate"]
    cert = result.line("opcua tx certificate")
    assert cert.status == "FAIL" and "presents server" in cert.detail and "impostor.der (impostor" in cert.detail
    assert "copy the new one" in cert.fix
    assert result.line("opcua tx").status == "FAIL" and "no session tried" in result.line("opcua tx").detail


@pytest.mark.parametrize(("days_later", "status", "words"), [
    (CERT_DAYS - 10, "WARN", "in 10.0 days"), (CERT_DAYS + 3, "FAIL", "3 days ago")])
def test_server_certificate_expiry(served: Served, tmp_path: Path, days_later: int, status: str,
                                   words: str) -> None:
    """The doctor's clock is moved on instead of making short-lived certificates for another server."""
    result = run(tmp_path, device(served.url, security=secure(served.pki)),
                 now=lambda: time.time() + days_later * DAY_S)
    cert = result.line("opcua tx certificate")
    assert cert.status == status and words in cert.detail, result.text
    assert "renew the server's certificate" in cert.fix
    assert result.code == (1 if status == "FAIL" else 0)
