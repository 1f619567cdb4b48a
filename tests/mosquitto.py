"""A real Mosquitto for tests, on a free loopback port, plus a test PKI and an independent paho probe.

    pki = make_pki(tmp_path / "pki")                     # CA, server cert (127.0.0.1, localhost), client cert
    with Mosquitto(tmp_path / "broker", tls=pki, require_certificate=True,
                   passwords={"edge": "secret"}) as broker:
        broker.port, broker.log()                        # where it listens; its log so far
        broker.stop(); broker.start()                    # same port, same config
        broker.pause(); broker.resume()                  # SIGSTOP/SIGCONT: a broker that stops answering
        with PahoProbe(broker, subscribe=["#"]) as probe:  # paho's own threaded client as the oracle
            await probe.wait_for(lambda m: m.topic == "a/b")
        async with running(MqttLink(cfg)) as task: ...  # run() in a task, stopped (or cancelled) after

The probe deliberately uses paho's threaded loop and blocking connect, not edgeagent's code: an
oracle sharing the code under test would hide its bugs.

`start()` waits (blocking, normally a few tens of ms) until the port accepts connections;
`Mosquitto` is a context manager that stops the broker however the test ends.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgeagent.uplink.mqtt import MqttLink

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- PKI ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """PEM files of one CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca_file: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str


def make_pki(directory: Path, name: str = "test", server_names: Sequence[str] = ("localhost", "127.0.0.1")) -> Pki:
    """Generate a CA and certificates signed by it (EC P-256: fast to make, accepted by Mosquitto).
    Call twice with different names for a second, unrelated CA. `server_names` are the server
    certificate's subject alternative names (DNS names or IP addresses)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} CA")])
    now = dt.datetime.now(dt.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(n) for n in server_names]),
                critical=False,
            )
        return builder.sign(ca_key, hashes.SHA256()), key

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> tuple[str, str]:
        cert_path = directory / f"{name}-{stem}.crt"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = directory / f"{name}-{stem}.key"
        if key is not None:
            key_path.write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption(),
            ))
            key_path.chmod(0o600)
        return str(cert_path), str(key_path)

    ca_file, _ = write("ca", ca_cert)
    server_cert, server_key = write("server", *leaf("localhost", server=True))
    client_cert, client_key = write("client", *leaf(f"{name}-edge", server=False))
    return Pki(ca_file, server_cert, server_key, client_cert, client_key)


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


# --- the broker -----------------------------------------------------------------------------


class Mosquitto:
    """One Mosquitto process with a generated config; `stop()`/`start()` keep the port."""

    host = "127.0.0.1"

    def __init__(
        self,
        directory: Path,
        *,
        tls: Pki | None = None,
        require_certificate: bool = False,
        passwords: dict[str, str] | None = None,
        port: int | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.log_file = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            f"log_dest file {self.log_file}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            f"allow_anonymous {'false' if passwords else 'true'}",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else Mosquitto drops to "mosquitto", who cannot read the test's files
        if passwords:
            password_file = self.dir / "passwords"
            for i, (user, password) in enumerate(passwords.items()):
                create = ["-c"] if i == 0 else []
                subprocess.run([MOSQUITTO_PASSWD, "-b", *create, str(password_file), user, password],
                               check=True, capture_output=True)
            lines.append(f"password_file {password_file}")
        if tls is not None:
            lines += [f"cafile {tls.ca_file}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}"]
            lines.append(f"require_certificate {'true' if require_certificate else 'false'}")
        lines += list(extra_config)
        self.config_file = self.dir / "mosquitto.conf"
        self.config_file.write_text("\n".join(lines) + "\n")

    def start(self, timeout_s: float = 5.0) -> None:
        """Start the broker and wait until it accepts TCP connections."""
        if self.proc is not None:
            raise RuntimeError("mosquitto is already running")
        if not Path(MOSQUITTO).is_file():
            raise RuntimeError(f"no mosquitto at {MOSQUITTO}: the MQTT tests need it (sudo apt-get install mosquitto)")
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config_file)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.proc = None
                raise RuntimeError(f"mosquitto exited at start: {err}\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout_s} s") from None
                time.sleep(0.01)

    def stop(self, *, kill: bool = False) -> None:
        """SIGTERM (clients see their connection closed) or SIGKILL; waits for the process to end."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            if not kill:
                proc.send_signal(signal.SIGCONT)  # a paused broker acts on SIGTERM once it runs again
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing is answered (no CONNACK, PUBACK, PINGRESP)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.stop()


# --- an independent client ------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class PahoProbe:
    """paho's own threaded client: subscribes, records what arrives, publishes on request."""

    def __init__(
        self,
        broker: Mosquitto,
        subscribe: Sequence[str] = (),
        *,
        username: str | None = None,
        password: str | None = None,
        client_cert: tuple[str, str] | None = None,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv311,
    ) -> None:
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = list(subscribe)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        if username is not None:
            self.client.username_pw_set(username, password)
        if broker.tls is not None:
            ctx = ssl.create_default_context(cafile=broker.tls.ca_file)
            if client_cert is not None:
                ctx.load_cert_chain(*client_cert)
            self.client.tls_set_context(ctx)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if self._topics:
            self.client.subscribe([(t, 1) for t in self._topics])
            if not self._subscribed.wait(5):
                raise RuntimeError("probe: no SUBACK within 5 s")

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain)))

    def received(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self.messages if topic is None or m.topic == topic]

    async def wait_for(self, match: Callable[[Received], bool], timeout_s: float = 5.0) -> Received:
        """The first message matching `match`, polling without blocking the test's event loop."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                for m in self.messages:
                    if match(m):
                        return m
            await asyncio.sleep(0.01)
        raise AssertionError(f"probe: no matching message within {timeout_s} s; got {self.received()}")

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> PahoProbe:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None,
    ) -> None:
        self.close()


@asynccontextmanager
async def running(link: MqttLink) -> AsyncIterator[asyncio.Task[None]]:
    """`link.run()` in a task for the block; afterwards stopped cleanly (unless the test ended it)."""
    task = asyncio.create_task(link.run(), name="test mqtt link")
    try:
        yield task
    finally:
        if not task.done():
            link.stop()
            try:
                await asyncio.wait_for(task, 10)
            except TimeoutError:
                raise AssertionError("MqttLink.run() did not end within 10 s of stop()") from None
