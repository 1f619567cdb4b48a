"""Doctor checks for OPC UA devices: the endpoint, the server's certificate, and the configured nodes.

Per device, up to three lines, in this order:
- `opcua NAME`: TCP to the URL's host and port, then GetEndpoints on an unsecured discovery channel
  (every OPC UA server answers it), then a session with the configured security and login. What the
  server offers is compared with the configuration before the session is tried, so a refused
  policy or mode, or a login the endpoint does not accept, is named as such rather than as the
  bare status code a failed session gives.
- `opcua NAME certificate` (security configured only): the certificate the server presents in its
  endpoint description is the configured `server_certificate`, and its days until expiry. A server
  whose certificate is not the trusted one cannot decrypt our channel and stays silent: without
  this line that looks like a network fault.
- `opcua NAME nodes`: every configured node resolves (NodeIds are read, browse paths translated,
  in one request each), naming the ones the server does not have.

A failure that makes the later steps meaningless ends the device's check (one problem, one line).
Each request runs under the device's timeout, at most the doctor's. Nothing is written; the
session is closed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlparse

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.uaerrors import UaError, UaStatusCodeError
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from edgeagent.doctor_checks import Finding, fail, os_reason, passed, warn
from edgeagent.field.opcua_client import SecuritySetupError, close_quietly, make_client
from edgeagent.field.opcua_config import OpcUaDeviceConfig, OpcUaNode, SecurityMode
from edgeagent.field.opcua_values import status_name

WARN_DAYS = 30
"""A server certificate that expires within this many days is a WARN: renewing it takes a site visit."""
DEFAULT_PORT = 4840
LIMIT_FACTOR = 10
"""The doctor's limit for one device, in doctor timeouts: TCP, security set-up, endpoints (two), session
(two), browse paths, read and close, each under one timeout at most."""
_SHOW_VALUES = 6
_POLICY_URI = {"None": security_policies.SecurityPolicyNone.URI,
               "Basic256Sha256": security_policies.SecurityPolicyBasic256Sha256.URI}
_MODE = {SecurityMode.NONE: ua.MessageSecurityMode.None_, SecurityMode.SIGN: ua.MessageSecurityMode.Sign,
         SecurityMode.SIGN_AND_ENCRYPT: ua.MessageSecurityMode.SignAndEncrypt}
_MISSING = {StatusCodes.BadNodeIdUnknown, StatusCodes.BadNodeIdInvalid, StatusCodes.BadNoMatch,
            StatusCodes.BadBrowseNameInvalid}
_LOGIN_REFUSED = {StatusCodes.BadIdentityTokenInvalid, StatusCodes.BadIdentityTokenRejected,
                  StatusCodes.BadUserAccessDenied}
_CERT_REFUSED = {StatusCodes.BadCertificateUntrusted, StatusCodes.BadCertificateInvalid,
                 StatusCodes.BadSecurityChecksFailed, StatusCodes.BadCertificateUriInvalid,
                 StatusCodes.BadCertificateTimeInvalid, StatusCodes.BadCertificateRevoked,
                 StatusCodes.BadCertificateUseNotAllowed, StatusCodes.BadCertificateIssuerRevocationUnknown,
                 StatusCodes.BadCertificateRevocationUnknown}
_POLICY_REFUSED = {StatusCodes.BadSecurityPolicyRejected, StatusCodes.BadSecurityModeRejected}


class _Stop(Exception):
    """Ends a device's check early with the finding that says why (one problem, one line)."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.detail)
        self.finding = finding


async def check_opcua_device(dev: OpcUaDeviceConfig, timeout_s: float, now: Callable[[], float]) -> list[Finding]:
    """The device's lines (see the module docstring); `now` is the wall clock, for certificate expiry."""
    request_s = min(dev.timeout_s, timeout_s)
    cfg = dataclasses.replace(dev, timeout_s=request_s)
    try:
        await _tcp(cfg)
        client = await _client(cfg)
    except _Stop as stop:
        return [stop.finding]
    try:
        return await _check_connected(cfg, client, now)
    finally:
        await close_quietly(client, request_s)


async def _check_connected(cfg: OpcUaDeviceConfig, client: Client, now: Callable[[], float]) -> list[Finding]:
    what = f"opcua {cfg.name}"
    try:
        endpoint = await _endpoint(cfg)
    except _Stop as stop:
        return [stop.finding]
    cert: list[Finding] = []
    if cfg.security.policy != "None":
        cert_line, same = _check_server_cert(cfg, endpoint, now)
        cert = [cert_line]
        if not same:  # the server could not decrypt our channel: a session would only time out
            return [fail(what, f"{cfg.url}: no session tried: the server's certificate is not the configured one",
                         "see the certificate line below"), *cert]
    try:
        await _session(cfg, client)
    except _Stop as stop:
        return [stop.finding, *cert]
    opened = passed(what, f"{cfg.url}: session open ({_security_words(cfg)})")
    try:
        nodes = await _check_nodes(cfg, client)
    except _Stop as stop:
        nodes = stop.finding
    return [opened, *cert, nodes]


def _security_words(cfg: OpcUaDeviceConfig) -> str:
    sec = cfg.security
    words = "security None" if sec.policy == "None" else f"{sec.policy} {sec.mode.value}"
    return f"{words}, user {sec.username}" if sec.username else f"{words}, anonymous"


def _host_port(cfg: OpcUaDeviceConfig) -> tuple[str, int]:
    return cfg.host, urlparse(cfg.url).port or DEFAULT_PORT


async def _tcp(cfg: OpcUaDeviceConfig) -> None:
    what = f"opcua {cfg.name}"
    host, port = _host_port(cfg)
    where = f"{host}:{port}"
    fix_url = f"correct devices.{cfg.name}.url (address and port)"
    try:
        async with asyncio.timeout(cfg.timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        raise _Stop(fail(what, f"{where}: no answer to TCP within {cfg.timeout_s:g} s",
                         f"check the network and any firewall between this box and {host}, or {fix_url}")) from None
    except socket.gaierror as exc:
        raise _Stop(fail(what, f"cannot resolve host {host!r}: {exc.strerror or exc}", fix_url)) from None
    except ConnectionRefusedError:
        raise _Stop(fail(what, f"{where}: connection refused: no OPC UA server listens there",
                         f"start the OPC UA server (check its service is running), or {fix_url}")) from None
    except OSError as exc:
        raise _Stop(fail(what, f"{where}: {os_reason(exc)}",
                         f"check the network route to {host}, or {fix_url}")) from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _client(cfg: OpcUaDeviceConfig) -> Client:
    try:
        return await make_client(cfg)
    except SecuritySetupError as exc:
        raise _Stop(fail(f"opcua {cfg.name}", str(exc), f"fix the file named in devices.{cfg.name}.security "
                         "(path, permissions, format)")) from None
    except TimeoutError:
        raise _Stop(fail(f"opcua {cfg.name}", f"setting up security took over {cfg.timeout_s:g} s",
                         "run the doctor again; if this repeats, this box is overloaded")) from None


async def _endpoint(cfg: OpcUaDeviceConfig) -> ua.EndpointDescription:
    """The server's endpoint for the configured policy and mode, checked to accept the configured login."""
    what = f"opcua {cfg.name}"
    probe = Client(cfg.url, timeout=cfg.timeout_s)
    try:
        async with asyncio.timeout(2 * cfg.timeout_s):
            endpoints = await probe.connect_and_get_server_endpoints()
    except (TimeoutError, UaError, OSError, ConnectionError) as exc:
        reason = f"no answer within {2 * cfg.timeout_s:g} s" if isinstance(exc, TimeoutError) else _reason(exc)
        raise _Stop(fail(what, f"{cfg.url}: accepts TCP but no OPC UA GetEndpoints: {reason}",
                         f"check that devices.{cfg.name}.url names the OPC UA port of the server (not another "
                         "service), and that the server has finished starting")) from None
    finally:
        with contextlib.suppress(Exception):
            probe.disconnect_socket()
    policy, mode = _POLICY_URI[cfg.security.policy], _MODE[cfg.security.mode]
    matching = [ep for ep in endpoints if ep.SecurityPolicyUri == policy and ep.SecurityMode == mode]
    if not matching:
        offered = sorted({_offer_words(ep) for ep in endpoints})
        raise _Stop(fail(what, f"{cfg.url}: the server refuses security {cfg.security.policy} "
                         f"{cfg.security.mode.value}; it offers {', '.join(offered) or 'no endpoints'}",
                         f"set devices.{cfg.name}.security policy and mode to one the server offers, or enable "
                         "this one in the server's configuration"))
    endpoint = matching[0]
    tokens = {t.TokenType for t in endpoint.UserIdentityTokens or []}
    if cfg.security.username is not None and ua.UserTokenType.UserName not in tokens:
        raise _Stop(fail(what, f"{cfg.url}: the server accepts no username on this endpoint "
                         f"(only {_token_words(tokens)})", f"remove devices.{cfg.name}.security.username, or enable "
                         "username logins in the server"))
    if cfg.security.username is None and ua.UserTokenType.Anonymous not in tokens:
        raise _Stop(fail(what, f"{cfg.url}: the server requires a login (accepts {_token_words(tokens)})",
                         f"set devices.{cfg.name}.security.username and password_file to an account on the server"))
    return endpoint


def _offer_words(ep: ua.EndpointDescription) -> str:
    policy = ep.SecurityPolicyUri.rpartition("#")[2]
    return policy if ep.SecurityMode == ua.MessageSecurityMode.None_ else f"{policy} {ep.SecurityMode.name}"


def _token_words(tokens: set[ua.UserTokenType]) -> str:
    return ", ".join(sorted(t.name for t in tokens)) or "no identity tokens"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UaStatusCodeError):
        return status_name(ua.StatusCode(ua.UInt32(exc.code)))
    if isinstance(exc, OSError):
        return os_reason(exc)
    return str(exc) or type(exc).__name__


async def _session(cfg: OpcUaDeviceConfig, client: Client) -> None:
    what = f"opcua {cfg.name}"
    sec = cfg.security
    try:
        async with asyncio.timeout(2 * cfg.timeout_s):
            await client.connect()
    except TimeoutError:
        detail = f"{cfg.url}: no session within {2 * cfg.timeout_s:g} s"
        if sec.policy != "None":
            raise _Stop(fail(what, f"{detail}: the server did not answer the secure channel",
                             "the server may not trust this box's certificate (it stays silent then): add "
                             f"{sec.certificate} to the server's trusted certificates")) from None
        raise _Stop(fail(what, detail, "the server is overloaded or hung: check it, or allow more with --timeout"
                         )) from None
    except UaStatusCodeError as exc:
        raise _Stop(_session_refused(cfg, exc.code)) from None
    except (UaError, OSError, ConnectionError) as exc:
        raise _Stop(fail(what, f"{cfg.url}: session refused: {_reason(exc)}",
                         "check the server's log for why it refused this client")) from None


def _session_refused(cfg: OpcUaDeviceConfig, code: int) -> Finding:
    what = f"opcua {cfg.name}"
    sec = cfg.security
    name = status_name(ua.StatusCode(ua.UInt32(code)))
    base = code & 0xFFFF0000
    if base in _LOGIN_REFUSED:
        if sec.username is None:
            return fail(what, f"{cfg.url}: anonymous login refused ({name})",
                        f"set devices.{cfg.name}.security.username and password_file to an account on the server")
        return fail(what, f"{cfg.url}: login as {sec.username!r} refused ({name}): wrong username or password",
                    f"check the username and the password in {sec.password_file or '(no password_file)'} against "
                    "the server's user accounts")
    if base in _CERT_REFUSED:
        return fail(what, f"{cfg.url}: the server does not trust this box's certificate ({name})",
                    f"add {sec.certificate} to the server's trusted certificates (often: move it from the server's "
                    "rejected folder to its trusted folder)")
    if base in _POLICY_REFUSED:
        return fail(what, f"{cfg.url}: security {sec.policy} {sec.mode.value} refused ({name})",
                    f"set devices.{cfg.name}.security policy and mode to one the server offers")
    if base == StatusCodes.BadTooManySessions:
        return fail(what, f"{cfg.url}: the server has no free session ({name})",
                    "close other clients' sessions or raise the server's session limit")
    return fail(what, f"{cfg.url}: session refused ({name})", "check the server's log for why it refused this client")


def _check_server_cert(cfg: OpcUaDeviceConfig, endpoint: ua.EndpointDescription, now: Callable[[], float]
                       ) -> tuple[Finding, bool]:
    """The certificate line, and whether the server presents the configured certificate."""
    what = f"opcua {cfg.name} certificate"
    path = cfg.security.server_certificate
    assert path is not None  # the config requires it with a security policy
    try:
        configured = _load_cert(path)
    except (OSError, ValueError) as exc:  # make_client has loaded it already: only if it changed meanwhile
        return fail(what, f"cannot read {path}: {exc}", f"fix devices.{cfg.name}.security.server_certificate"), False
    presented_der = _first_der(endpoint.ServerCertificate or b"")
    try:
        presented = x509.load_der_x509_certificate(presented_der)
    except ValueError:
        return fail(what, f"{cfg.url} presents no readable certificate on its {cfg.security.policy} endpoint",
                    "check the server's certificate configuration"), False
    expiry = _expiry_words(presented, now)
    if presented_der != configured.public_bytes(Encoding.DER):
        return fail(what, f"the server presents {_describe(presented)}, not the configured {path} "
                    f"({_describe(configured)}); its certificate {expiry}",
                    f"if the server's certificate was renewed, copy the new one to {path} (compare its fingerprint "
                    f"with the server's); otherwise devices.{cfg.name}.url names another server"), False
    days = (presented.not_valid_after_utc.timestamp() - now()) / 86400
    detail = f"the server presents the configured {path} ({_describe(presented)}); {expiry}"
    if days < 0:
        return fail(what, detail, "renew the server's certificate, then copy the new one to "
                    f"{path}: clients may refuse the server until then"), True
    if days < WARN_DAYS:
        return warn(what, detail, f"renew the server's certificate before {presented.not_valid_after_utc:%Y-%m-%d} "
                    f"and copy the new one to {path}: the daemon cannot connect once it changes"), True
    return passed(what, detail), True


def _load_cert(path: str) -> x509.Certificate:
    data = Path(path).read_bytes()
    return (x509.load_pem_x509_certificate(data) if data.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(data))


def _first_der(data: bytes) -> bytes:
    """The first certificate of a DER chain (servers may send their chain concatenated)."""
    if len(data) < 2 or data[0] != 0x30:
        return data
    if data[1] < 0x80:
        return data[:2 + data[1]]
    n = data[1] & 0x7F
    length = int.from_bytes(data[2:2 + n], "big")
    return data[:2 + n + length]


def _describe(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else cert.subject.rfc4514_string() or "no subject"
    return f"{subject}, SHA-256 {hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()[:16]}…"


def _expiry_words(cert: x509.Certificate, now: Callable[[], float]) -> str:
    not_after = cert.not_valid_after_utc
    days = (not_after.timestamp() - now()) / 86400
    when = f"{not_after:%Y-%m-%d %H:%M UTC}"
    if days < 0:
        return f"expired on {when}, {-days:.0f} days ago"
    return f"expires on {when}, in {days:.1f} days" if days < WARN_DAYS else f"expires on {when}, in {days:.0f} days"


async def _check_nodes(cfg: OpcUaDeviceConfig, client: Client) -> Finding:
    what = f"opcua {cfg.name} nodes"
    missing: list[str] = []
    ids: dict[str, ua.NodeId] = {n.name: ua.NodeId.from_string(n.ref.node_id)
                                 for n in cfg.nodes if n.ref.node_id is not None}
    paths = [n for n in cfg.nodes if n.ref.node_id is None]
    if paths:
        results = await _request(cfg, client.uaclient.translate_browsepaths_to_nodeids(
            [_browse_path(n) for n in paths]), "translate browse paths")
        for n, result in zip(paths, results, strict=True):
            if result.StatusCode.is_good() and result.Targets:
                ids[n.name] = result.Targets[0].TargetId
            else:
                missing.append(f"{n.name} ({n.ref.text}: {status_name(result.StatusCode)})")
    order = [n for n in cfg.nodes if n.name in ids]
    params = ua.ReadParameters()
    params.NodesToRead = [ua.ReadValueId(NodeId=ids[n.name], AttributeId=AttributeIds.Value) for n in order]
    values: Sequence[ua.DataValue] = (await _request(cfg, client.uaclient.read(params), "read the nodes")
                                      if order else [])
    shown: list[str] = []
    bad: list[str] = []
    for n, dv in zip(order, values, strict=True):
        code = dv.StatusCode
        if code is not None and code.value & 0xFFFF0000 in _MISSING:
            missing.append(f"{n.name} ({n.ref.text}: {status_name(code)})")
        elif code is not None and not code.is_good():
            bad.append(f"{n.name} ({status_name(code)})")
        else:
            shown.append(_show(n, dv))
    total = len(cfg.nodes)
    rank = {n.name: i for i, n in enumerate(cfg.nodes)}
    missing.sort(key=lambda text: rank[text.partition(" ")[0]])  # in the config's order
    if missing:
        return fail(what, f"{len(missing)} of {total} nodes not on the server: {'; '.join(missing)}",
                    f"correct devices.{cfg.name}.nodes to nodes this server has (browse its address space, e.g. with "
                    "UaExpert, for the NodeId or browse path)")
    if bad:
        return warn(what, f"all {total} nodes found, {len(bad)} without a good value: {'; '.join(bad)}",
                    "the server has these nodes but not a good value for them: check its data source (sensor, PLC); "
                    "the daemon marks them BAD until then")
    more = f" and {len(shown) - _SHOW_VALUES} more" if len(shown) > _SHOW_VALUES else ""
    return passed(what, f"all {total} nodes found: {', '.join(shown[:_SHOW_VALUES])}{more}")


def _browse_path(node: OpcUaNode) -> ua.BrowsePath:
    elements = []
    for ns, name in node.ref.path:
        element = ua.RelativePathElement(ReferenceTypeId=ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences)),
                                         TargetName=ua.QualifiedName(name, ua.UInt16(ns)))
        element.IsInverse = cast(ua.Boolean, False)
        element.IncludeSubtypes = cast(ua.Boolean, True)
        elements.append(element)
    return ua.BrowsePath(StartingNode=ua.NodeId(ua.Int32(ObjectIds.RootFolder)),
                         RelativePath=ua.RelativePath(Elements=elements))


def _show(node: OpcUaNode, dv: ua.DataValue) -> str:
    raw: Any = dv.Value.Value if dv.Value is not None else None
    text = f"{raw:.6g}" if isinstance(raw, float) else repr(raw)
    return f"{node.name}={text}{' ' + node.unit if node.unit else ''}"


async def _request(cfg: OpcUaDeviceConfig, awaitable: Any, doing: str) -> Any:
    try:
        async with asyncio.timeout(cfg.timeout_s):
            return await awaitable
    except (TimeoutError, UaError, OSError, ConnectionError) as exc:
        reason = f"no answer within {cfg.timeout_s:g} s" if isinstance(exc, TimeoutError) else _reason(exc)
        raise _Stop(fail(f"opcua {cfg.name} nodes", f"the session opened but the request to {doing} failed: "
                         f"{reason}", "check the server's log; the server may be overloaded")) from None


__all__ = ["LIMIT_FACTOR", "WARN_DAYS", "check_opcua_device"]
