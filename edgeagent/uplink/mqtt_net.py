"""The network half of the MQTT link: open TCP and TLS on the event loop, then hand the socket to paho.

Why not `paho.Client.connect()`: it opens the TCP connection and runs the TLS handshake with blocking
calls (up to its connect timeout each), which would freeze the scan cycle's event loop while a
broker is unreachable. A worker thread could run it, but a thread that outlives its timeout keeps
mutating the client and calling our socket callbacks from the wrong thread. So we resolve, connect
and shake hands ourselves with non-blocking sockets under `asyncio.timeout`, and give paho the
ready socket through `HandedSocketClient`. That subclass relies on two private paho 2.x methods,
checked at import by `check_paho()`: it overrides `Client._create_socket` (where paho opens its
socket) to return ours, and its `abort()` calls `Client._sock_close`, the way paho itself drops a
dead connection. From there paho only does non-blocking `recv`/`send`, driven by the loop's
readers and writers.

`RecordingSocket` keeps the OS/TLS error that ended a connection, because paho only reports
"connection lost" and the operator needs "certificate verify failed" or "connection reset".
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import TYPE_CHECKING

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

# TLS alerts a broker sends when it does not accept the certificate we presented.
_CLIENT_CERT_ALERTS = frozenset({
    "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_CERTIFICATE_EXPIRED", "TLSV1_ALERT_ACCESS_DENIED",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_REVOKED", "TLSV1_ALERT_DECRYPT_ERROR",
})


def check_paho() -> None:
    """Fail at import with a clear message if paho no longer has the two hooks we rely on."""
    for name in ("_create_socket", "_sock_close"):
        if not callable(getattr(paho.Client, name, None)):
            raise ImportError(
                f"paho-mqtt {getattr(paho, '__version__', '?')} has no Client.{name}: "
                "edgeagent.uplink.mqtt_net needs a paho-mqtt 2.x that creates and closes its socket there"
            )


check_paho()


class RecordingSocket:
    """A non-blocking socket (plain or TLS) as paho's `SocketLike`, remembering the error that broke it.

    "Would block" conditions pass through untouched (paho expects them); any other OSError is
    kept in `error` before it propagates, so the link can say why it went down."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.error: OSError | None = None

    def recv(self, buffer_size: int) -> bytes:
        try:
            return self.sock.recv(buffer_size)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except OSError as exc:
            self.error = self.error or exc
            raise

    def send(self, buffer: bytes | bytearray) -> int:
        try:
            return self.sock.send(buffer)
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except OSError as exc:
            self.error = self.error or exc
            raise

    def pending(self) -> int:
        """Bytes already decrypted and buffered by TLS: the fd will not signal them as readable."""
        return self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)


class HandedSocketClient(paho.Client):
    """A paho client that uses the connected socket it was handed instead of opening one itself.

    One instance serves one connection attempt: a second `reconnect()` (paho tries one itself on
    some CONNACK refusals unless `reconnect_on_failure` is off) finds no socket and fails."""

    def __init__(self, sock: RecordingSocket, protocol: MQTTProtocolVersion, client_id: str) -> None:
        super().__init__(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            reconnect_on_failure=False,
        )
        self._handed: RecordingSocket | None = sock

    def _create_socket(self) -> SocketLike:
        sock, self._handed = self._handed, None
        if sock is None:
            raise ConnectionError("this connection's socket was already used")
        return sock

    def abort(self) -> None:
        """Close the socket without DISCONNECT (so the broker publishes the will), the way paho
        itself drops a dead connection: the socket callbacks run first, then the socket closes.
        Afterwards paho sees no socket and refuses to send."""
        self._sock_close()


def tls_context(ca_file: str | None, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    """Certificate and hostname verification on; the client certificate if configured.

    Built per connection attempt so that renewed certificates are picked up and a missing file is
    a link state ("cannot load ca_file …") rather than a crash at start-up."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
    except OSError as exc:
        raise ConnectionError(f"cannot load ca_file {ca_file}: {_why(exc)}") from exc
    if cert_file is not None:
        try:
            ctx.load_cert_chain(cert_file, key_file)
        except OSError as exc:
            raise ConnectionError(f"cannot load cert_file {cert_file} / key_file {key_file}: {_why(exc)}") from exc
    return ctx


async def open_tcp(host: str, port: int) -> socket.socket:
    """Resolve and connect without blocking; tries each address in turn (e.g. ::1, then 127.0.0.1).

    The caller bounds the time with `asyncio.timeout`."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"cannot resolve {host}: {exc.strerror}") from exc
    last: OSError = ConnectionError(f"{host} has no address")
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # small MQTT packets: no Nagle delay
            await loop.sock_connect(sock, addr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise last


async def tls_handshake(sock: socket.socket, ctx: ssl.SSLContext, host: str) -> ssl.SSLSocket:
    """Run the TLS handshake step by step, waiting for the socket between steps on the loop.

    Each `do_handshake()` step is a few milliseconds of CPU at most; the waiting is asynchronous."""
    tls = ctx.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    try:
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                await _ready(tls.fileno(), write=False)
            except ssl.SSLWantWriteError:
                await _ready(tls.fileno(), write=True)
    except BaseException:
        tls.close()
        raise


async def _ready(fd: int, *, write: bool) -> None:
    """Wait until `fd` is readable (or writable)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await fut
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


def describe_error(exc: BaseException) -> str:
    """A short, precise reason for an operator: what failed, in words they can act on."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        reason = str(exc.reason or "")
        words = reason.lower().replace("_", " ")
        if reason in _CLIENT_CERT_ALERTS:
            return f"broker rejected our client certificate ({words})"
        if reason in ("UNEXPECTED_EOF_WHILE_READING", "") or isinstance(exc, ssl.SSLEOFError):
            return "broker closed the connection during TLS"
        return f"TLS error: {words or exc}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the broker"
    if isinstance(exc, BrokenPipeError):
        return "connection closed by the broker (broken pipe)"
    if isinstance(exc, OSError):
        return _why(exc)
    return str(exc) or type(exc).__name__


def _why(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc).lower().replace("_", " ")
    if exc.strerror:  # "Network is unreachable" → "network is unreachable", to read well after a colon
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__
