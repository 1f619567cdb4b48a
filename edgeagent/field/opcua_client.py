"""Building and closing an asyncua `Client` for one OPC UA device: security, credentials, timeouts.

asyncua's own reconnect is off: like the other adapters, the supervisor owns reconnection, and
each session builds a fresh client, session and subscription. That makes "resubscribe after a
server restart" the normal path of every session rather than a special case.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from asyncua.client.client import Client
from asyncua.client.ua_client import UaClientState
from asyncua.crypto import security_policies
from asyncua.ua import MessageSecurityMode
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from edgeagent.field.opcua_config import OpcUaDeviceConfig, SecurityMode

SESSION_TIMEOUT_MS = 60_000
"""How long the server keeps our session after we vanish: short, so a dead box frees its slot."""


class SecuritySetupError(Exception):
    """A certificate, key or password file that cannot be used (the session fails with this reason)."""


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SecuritySetupError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _load_cert(path: str, what: str) -> x509.Certificate:
    data = _read(path, what)
    try:
        return (x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----")
                else x509.load_der_x509_certificate(data))
    except ValueError as exc:
        raise SecuritySetupError(f"{what} {path} is not a PEM or DER certificate: {exc}") from None


def _load_key_der(path: str) -> bytes:
    """The private key as unencrypted DER (asyncua reads bytes as DER). An encrypted key is refused
    with a clear reason: the box starts unattended, there is nobody to type its passphrase."""
    data = _read(path, "client private key")
    try:
        key = (serialization.load_pem_private_key(data, password=None) if data.lstrip().startswith(b"-----")
               else serialization.load_der_private_key(data, password=None))
    except (ValueError, TypeError) as exc:
        raise SecuritySetupError(f"client private key {path} cannot be loaded (PEM or DER, unencrypted): "
                                 f"{exc}") from None
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _application_uri(cert: x509.Certificate, path: str) -> str:
    """The client certificate's URI (subjectAltName): servers check it against our ApplicationUri."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        raise SecuritySetupError(f"client certificate {path} has no subjectAltName with the application URI "
                                 "(OPC UA servers reject such certificates)") from None
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    if not uris:
        raise SecuritySetupError(f"client certificate {path} has no URI in its subjectAltName (the application URI)")
    return uris[0]


async def make_client(cfg: OpcUaDeviceConfig) -> Client:
    """A configured, not yet connected client. Raises SecuritySetupError for unusable files."""
    client = Client(cfg.url, timeout=cfg.timeout_s, watchdog_intervall=max(cfg.timeout_s, 1.0),
                    auto_reconnect=False)
    client.session_timeout = SESSION_TIMEOUT_MS
    client.name = client.description = f"edgeagent {cfg.name}"
    client.application_uri = f"urn:edgeagent:{cfg.name}"
    sec = cfg.security
    if sec.policy == "Basic256Sha256":
        assert sec.certificate and sec.private_key and sec.server_certificate  # checked by the config
        cert = _load_cert(sec.certificate, "client certificate")
        key = _load_key_der(sec.private_key)
        server_cert = _load_cert(sec.server_certificate, "server certificate")
        client.application_uri = _application_uri(cert, sec.certificate)
        der = serialization.Encoding.DER
        mode = (MessageSecurityMode.Sign if sec.mode is SecurityMode.SIGN else MessageSecurityMode.SignAndEncrypt)
        try:
            async with asyncio.timeout(cfg.timeout_s):
                await client.set_security(security_policies.SecurityPolicyBasic256Sha256, cert.public_bytes(der), key,
                                          server_certificate=server_cert.public_bytes(der), mode=mode)
        except (ValueError, TypeError) as exc:
            raise SecuritySetupError(f"cannot use the certificates or key: {exc}") from None
    if sec.username is not None:
        client.set_user(sec.username)
        if sec.password_file is not None:
            password = _read(sec.password_file, "password file").decode("utf-8", "replace").rstrip("\r\n")
            client.set_password(password)
    return client


def connected(client: Client) -> bool:
    return client.uaclient.state is UaClientState.CONNECTED


async def close_quietly(client: Client, timeout_s: float) -> None:
    """Close session, channel and socket without waiting on a dead server or raising.

    With the link already gone, asyncua's `disconnect()` would try CloseSession on it and log a
    traceback. `close_session()` alone stops the client's background tasks and its publish loop
    (which would otherwise go on retrying a dead link every second) and sends nothing on a closed
    socket; then the socket is closed.
    """
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            if connected(client):
                await client.disconnect()
            else:
                await client.close_session()
    publish = getattr(client.uaclient.session, "_publish_task", None)
    if isinstance(publish, asyncio.Task) and not publish.done():
        publish.cancel()
    with contextlib.suppress(Exception):
        client.disconnect_socket()
