"""Doctor checks for the MQTT broker: TCP, then TLS (chain against the configured CA, host name, days
to expiry), then an MQTT CONNECT with the configured credentials, each with its own line.

The same building blocks as the daemon's link (`mqtt_net`, `mqtt_conn`), so the doctor fails where
the daemon would. When verification fails, a second handshake without verification fetches the
broker's certificate only to say what is wrong with it (expired when, issued for which names, by
whom); nothing is sent over that one. The CONNECT uses the client id `<client_id>-doctor`: the
daemon's own id would make the broker drop the daemon's session.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from edgeagent.config import UplinkConfig
from edgeagent.doctor_checks import Finding, Status, fail, os_reason, passed, warn
from edgeagent.uplink.mqtt_conn import UNSUPPORTED_PROTOCOL_VERSION, Connection
from edgeagent.uplink.mqtt_net import RecordingSocket, describe_error, open_tcp, tls_context, tls_handshake

WARN_DAYS = 30
"""A certificate that expires within this many days is a WARN: renewing one takes a site visit."""
_EXPIRED, _NOT_YET_VALID = 10, 9  # X509_V_ERR_* codes of OpenSSL
_NAME_MISMATCH = frozenset({62, 63, 64})  # host name, e-mail, IP address mismatch
_UNTRUSTED = frozenset({2, 18, 19, 20, 21})  # no issuer found, self-signed, cannot verify the leaf
_GOODBYE_S = 0.5


async def check_broker(up: UplinkConfig, timeout_s: float, now: Callable[[], float]) -> list[Finding]:
    what = "broker"
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            sock = await open_tcp(up.host, up.port)
    except TimeoutError:
        return [fail(what, f"{up.url}: no TCP connection within {timeout_s:g} s",
                     f"check the broker's address, this box's network (route, cellular link) and firewalls on "
                     f"port {up.port}")]
    except OSError as exc:
        return [fail(what, f"{up.url}: cannot connect: {describe_error(exc)}",
                     f"check that the broker runs and listens on {up.host}:{up.port} (uplink.broker)")]
    sock.close()
    found = [passed(what, f"{up.url}: TCP connection accepted in {(time.monotonic() - started) * 1000:.0f} ms")]
    if up.tls:
        server = await _check_server_cert(up, timeout_s, now)
        found.append(server)
        if up.cert_file:
            found.append(_check_client_cert(up.cert_file, now))
        if server.status is Status.FAIL:
            return found  # no credentials over a link that failed verification
    found.append(await _check_connect(up, timeout_s))
    return found


# --- TLS ------------------------------------------------------------------------------------------


async def _check_server_cert(up: UplinkConfig, timeout_s: float, now: Callable[[], float]) -> Finding:
    what = "broker certificate"
    try:
        ctx = tls_context(up.ca_file, up.cert_file, up.key_file)
    except ConnectionError as exc:
        return fail(what, str(exc), "fix uplink.ca_file, cert_file and key_file: PEM files the service's user "
                    "can read")
    try:
        async with asyncio.timeout(timeout_s):
            tls = await tls_handshake(await open_tcp(up.host, up.port), ctx, up.host)
    except ssl.SSLCertVerificationError as exc:
        cert = await _unverified_cert(up, timeout_s)
        return _verify_failure(what, up, exc, cert, now)
    except TimeoutError:
        return fail(what, f"no TLS handshake within {timeout_s:g} s",
                    f"check that port {up.port} speaks TLS (MQTT over TLS is usually 8883)")
    except OSError as exc:
        return fail(what, f"TLS handshake failed: {describe_error(exc)}",
                    f"check that port {up.port} speaks TLS (mqtts://, usually 8883), and set uplink.cert_file and "
                    "key_file if the broker asks for a client certificate")
    try:
        der = tls.getpeercert(binary_form=True)
    finally:
        tls.close()
    if der is None:
        return fail(what, "the broker sent no certificate", "configure the broker with a server certificate")
    cert = x509.load_der_x509_certificate(der)
    trusted = f"trusted by {up.ca_file}" if up.ca_file else "trusted by the system's CAs"
    return _expiry(what, cert, now, f"{trusted}, valid for {_names(cert)}", "the broker's certificate")


def _check_client_cert(cert_file: str, now: Callable[[], float]) -> Finding:
    what = "uplink client certificate"
    try:
        cert = x509.load_pem_x509_certificate(Path(cert_file).read_bytes())
    except OSError as exc:
        return fail(what, f"cannot read {cert_file}: {os_reason(exc)}", "fix uplink.cert_file or the file's mode")
    except ValueError as exc:
        return fail(what, f"{cert_file} is not a PEM certificate ({exc})", "fix uplink.cert_file")
    return _expiry(what, cert, now, f"{cert_file} ({_subject(cert)})", "this box's client certificate")


def _expiry(what: str, cert: x509.Certificate, now: Callable[[], float], detail: str, whose: str) -> Finding:
    not_after = cert.not_valid_after_utc
    days = (not_after.timestamp() - now()) / 86400
    when = not_after.strftime("%Y-%m-%d %H:%M UTC")
    if days < 0:
        return fail(what, f"{detail}; expired on {when}, {-days:.0f} days ago",
                    f"renew {whose}; the uplink cannot connect with it")
    if days < WARN_DAYS:
        return warn(what, f"{detail}; expires on {when}, in {days:.1f} days",
                    f"renew {whose} before {not_after:%Y-%m-%d}: the uplink stops when it expires")
    return passed(what, f"{detail}; expires on {when}, in {days:.0f} days")


async def _unverified_cert(up: UplinkConfig, timeout_s: float) -> x509.Certificate | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        async with asyncio.timeout(timeout_s):
            tls = await tls_handshake(await open_tcp(up.host, up.port), ctx, up.host)
    except (TimeoutError, OSError):
        return None
    try:
        der = tls.getpeercert(binary_form=True)
    finally:
        tls.close()
    return x509.load_der_x509_certificate(der) if der else None


def _verify_failure(what: str, up: UplinkConfig, exc: ssl.SSLCertVerificationError, cert: x509.Certificate | None,
                    now: Callable[[], float]) -> Finding:
    code = exc.verify_code
    about = f" ({_names(cert)}, issued by {_issuer(cert)})" if cert is not None else ""
    if code == _EXPIRED and cert is not None:
        days = (now() - cert.not_valid_after_utc.timestamp()) / 86400
        return fail(what, f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M UTC}, {days:.0f} days ago{about}",
                    "renew the broker's certificate (and check the clock line below: a wrong clock makes a good "
                    "certificate look expired)")
    if code == _NOT_YET_VALID and cert is not None:
        return fail(what, f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M UTC}{about}",
                    "check this box's clock (see the clock line below), or wait until the certificate is valid")
    if code in _NAME_MISMATCH:
        names = _names(cert) if cert is not None else "other names"
        return fail(what, f"the certificate is for {names}, not {up.host}",
                    f"connect by a name the certificate lists (uplink.broker), or reissue it with {up.host} in "
                    "its subject alternative names")
    if code in _UNTRUSTED:
        ca = up.ca_file or "the system's CA store"
        return fail(what, f"not signed by a CA in {ca}{about}: {exc.verify_message}",
                    "set uplink.ca_file to the CA that issued the broker's certificate")
    return fail(what, f"certificate verify failed: {exc.verify_message}{about}",
                "check the broker's certificate chain and uplink.ca_file")


def _names(cert: x509.Certificate | None) -> str:
    if cert is None:
        return "unknown names"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
        names += [str(a) for a in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    return ", ".join(names) if names else _subject(cert)


def _subject(cert: x509.Certificate) -> str:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"CN={cn[0].value!s}" if cn else cert.subject.rfc4514_string()


def _issuer(cert: x509.Certificate) -> str:
    cn = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"CN={cn[0].value!s}" if cn else cert.issuer.rfc4514_string()


# --- MQTT CONNECT ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Attempt:
    accepted: bool
    reason: str = ""
    unsupported_protocol: bool = False


async def _check_connect(up: UplinkConfig, timeout_s: float) -> Finding:
    who = f"as {up.username}" if up.username else "anonymously"
    what = "broker login"
    password = _read_password(up.password_file) if up.password_file is not None else None
    if isinstance(password, Finding):
        return password
    protocol = "3.1.1" if up.protocol == "3.1.1" else "5"
    attempt = await _connect(up, protocol, password, timeout_s)
    if not attempt.accepted and attempt.unsupported_protocol and up.protocol == "auto":
        protocol = "3.1.1"
        attempt = await _connect(up, protocol, password, timeout_s)
    if attempt.accepted:
        return passed(what, f"CONNECT accepted {who} (MQTT {protocol}, client id {_client_id(up)})")
    return fail(what, f"CONNECT {who} failed: {attempt.reason}", _connect_fix(attempt.reason, up))


def _read_password(path: str) -> str | Finding:
    """As the daemon reads it: the file's text without the trailing newline."""
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        why = os_reason(exc) if isinstance(exc, OSError) else "not UTF-8 text"
        return fail("broker login", f"cannot read uplink.password_file {path}: {why}",
                    "fix the path or the file's owner and mode (readable by the service's user only)")


def _client_id(up: UplinkConfig) -> str:
    return f"{up.client_id}-doctor"


def _connect_fix(reason: str, up: UplinkConfig) -> str:
    if "not authorised" in reason:  # brokers answer a wrong password with either refusal code
        if up.username is None:
            return "the broker refuses anonymous clients: set uplink.username and uplink.password_file"
        return (f"check uplink.username and the password in uplink.password_file against the broker's accounts, "
                f"then its ACL for user {up.username} and client ids like {_client_id(up)}")
    if "client certificate" in reason:
        return "set uplink.cert_file and key_file to a certificate signed by a CA the broker trusts"
    if "no CONNACK" in reason:
        return "the broker accepts connections but does not answer MQTT: check its load and log"
    return "check the broker's log for why it refused the connection"


async def _connect(up: UplinkConfig, protocol: str, password: str | None, timeout_s: float) -> _Attempt:
    conn: Connection | None = None
    try:
        async with asyncio.timeout(timeout_s):
            ctx = tls_context(up.ca_file, up.cert_file, up.key_file) if up.tls else None
            sock: Any = await open_tcp(up.host, up.port)
            if ctx is not None:
                sock = await tls_handshake(sock, ctx, up.host)
            conn = Connection(RecordingSocket(sock), protocol, client_id=_client_id(up), username=up.username,
                              password=password, will=None, window=1, on_message=None, endpoint=up.url)
            conn.start(up.host, up.port, up.keepalive_s)
            waiters: list[asyncio.Future[Any]] = [conn.connack, conn.lost]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        if conn is not None:
            conn.abort("timeout")
        return _Attempt(False, f"no CONNACK within {timeout_s:g} s")
    except OSError as exc:
        if conn is not None:
            conn.abort("error")
        return _Attempt(False, describe_error(exc))
    assert conn is not None
    if conn.connack.done() and not conn.lost.done():
        conn.disconnect()
        try:
            async with asyncio.timeout(_GOODBYE_S):
                await asyncio.shield(conn.lost)
        except TimeoutError:
            pass
        conn.abort("done")
        return _Attempt(True)
    conn.abort("refused")
    unsupported = conn.refused is not None and conn.refused.value == UNSUPPORTED_PROTOCOL_VERSION
    return _Attempt(False, conn.lost.result(), unsupported)


__all__ = ["WARN_DAYS", "check_broker"]
