"""The daemon's local control socket: a technician on site asks for status or resets a trip.

Why a unix socket and not a port: a latching interlock may only be reset *locally* (DESIGN.md
principle 5), and the kernel tells us who is on the other end (`SO_PEERCRED`), so every request
carries a person (`Peer`) into the log. Only the daemon's own uid and root get in: the socket's
directory is created 0700, the socket file is 0600, and each connection's credentials are checked.

Protocol: one JSON object per line, both ways. A request is ``{"cmd": "NAME", "args": {...}}``
(``args`` optional); the reply is ``{"ok": true, ...}`` or
``{"ok": false, "error": "<sentence for a person>", "code": "<machine code>"}``. A connection may
carry several requests. Codes from the server itself: ``too_long``, ``bad_json``, ``bad_request``,
``unknown_command``, ``bad_args``, ``timeout``, ``busy``, ``forbidden``, ``internal``; handlers
add their own through `Refused`.

Handlers run on the event loop's thread, so they run between two scan cycles and may touch the
cycle's phases directly (no locks, no races with `step()`). A handler that must do blocking work
(a durable write) returns an awaitable and does that work in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import pwd
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import structlog

log = structlog.get_logger("edgeagent.control")

MAX_LINE_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 8
SUN_PATH_MAX_BYTES = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux
_PROBE_TIMEOUT_S = 1.0
_CLOSE_TIMEOUT_S = 2.0


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is on the other end of a connection, as the kernel saw it when it connected."""

    pid: int
    uid: int
    gid: int
    user: str  # "" when the uid has no entry in the password database

    def describe(self) -> str:
        """E.g. "alice (uid 1000)": what goes into the log and the reset event."""
        return f"{self.user} (uid {self.uid})" if self.user else f"uid {self.uid}"


class Refused(Exception):
    """Raised by a handler to refuse a request; becomes ``{"ok": false, "code": ..., "error": ...}``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class ControlStartError(Exception):
    """The control socket cannot be set up (another daemon owns it, path unusable, ...)."""


Handler = Callable[[Mapping[str, Any], Peer], Mapping[str, Any] | Awaitable[Mapping[str, Any]]]
Authorize = Callable[[Peer], bool]


def same_uid_or_root(uid: int) -> Authorize:
    """The default check: the daemon's own uid, or root."""

    def check(peer: Peer) -> bool:
        return peer.uid in (uid, 0)

    return check


_TYPE_WORDS: dict[type, str] = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
                                list: "a list", dict: "an object"}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _is(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


@dataclass(frozen=True, slots=True)
class _Entry:
    handler: Handler
    required: Mapping[str, type] = field(default_factory=dict)
    optional: Mapping[str, type] = field(default_factory=dict)

    def check_args(self, cmd: str, args: Mapping[str, Any]) -> None:
        allowed = {**self.required, **self.optional}
        for key in args:
            if key not in allowed:
                expected = ", ".join(allowed) or "none"
                raise Refused("bad_args", f"unknown argument {key!r} for {cmd} (expected: {expected})")
        for key, kind in self.required.items():
            if key not in args:
                raise Refused("bad_args", f"{cmd} needs argument {key!r} ({_TYPE_WORDS.get(kind, kind.__name__)})")
        for key, kind in allowed.items():
            if key in args and not _is(args[key], kind):
                raise Refused("bad_args", f"argument {key!r} of {cmd} must be {_TYPE_WORDS.get(kind, kind.__name__)}, "
                                          f"got {_json_kind(args[key])}")


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text[:40]} is too large")
    return value


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": message, "code": code}


class ControlServer:
    """A unix-socket request server with named handlers. `start()`, then `serve()` until cancelled."""

    def __init__(self, path: str | Path, *, authorize: Authorize | None = None,
                 idle_timeout_s: float = IDLE_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS,
                 max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.path = Path(path)
        self._authorize = authorize or same_uid_or_root(os.getuid())
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self.max_line_bytes = max_line_bytes
        self._entries: dict[str, _Entry] = {}
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._serving = 0  # connections past the busy check
        self._closed = False

    # -- handlers ---------------------------------------------------------------------------------

    def register(self, cmd: str, handler: Handler, *, required: Mapping[str, type] | None = None,
                 optional: Mapping[str, type] | None = None) -> None:
        """Add command `cmd`. Its args are checked against `required`/`optional` (name → type) before
        the handler runs, so a handler only ever sees the keys and types it declared."""
        if cmd in self._entries:
            raise ValueError(f"control command {cmd!r} is registered twice")
        self._entries[cmd] = _Entry(handler, dict(required or {}), dict(optional or {}))

    @property
    def commands(self) -> tuple[str, ...]:
        return tuple(self._entries)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the socket. Raises ControlStartError when another daemon answers on it or the
        path cannot be used; a socket file nobody listens on (a crash's leftover) is removed."""
        path = self.path
        if len(os.fsencode(path)) > SUN_PATH_MAX_BYTES:
            raise ControlStartError(f"control socket path {path} is {len(os.fsencode(path))} bytes long; unix "
                                    f"sockets allow at most {SUN_PATH_MAX_BYTES}: use a shorter storage.dir")
        try:
            if not path.parent.exists():
                path.parent.mkdir(mode=0o700, parents=True)
                path.parent.chmod(0o700)  # mkdir's mode passes through the umask
        except OSError as exc:
            raise ControlStartError(f"cannot create the control socket's directory {path.parent}: "
                                    f"{exc.strerror or exc}") from None
        await self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old_umask = os.umask(0o177)  # no window in which the socket is open to others
            try:
                sock.bind(str(path))
            finally:
                os.umask(old_umask)
            path.chmod(0o600)
            self._inode = path.lstat().st_ino
            self._server = await asyncio.start_unix_server(self._on_connect, sock=sock, limit=self.max_line_bytes)
        except OSError as exc:
            sock.close()
            self._unlink()
            raise ControlStartError(f"cannot create the control socket {path}: {exc.strerror or exc}") from None
        log.info("control.listening", path=str(path), commands=list(self._entries))

    async def _remove_stale(self) -> None:
        path = self.path
        try:
            st = path.lstat()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlStartError(f"cannot check {path}: {exc.strerror or exc}") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlStartError(f"{path} exists and is not a socket: move it away")
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                _, writer = await asyncio.open_unix_connection(str(path))
        except ConnectionRefusedError:
            path.unlink(missing_ok=True)
            log.info("control.stale_socket_removed", path=str(path))
            return
        except TimeoutError:
            pass  # connect pending: something listens with a full backlog
        except OSError as exc:
            raise ControlStartError(f"cannot check {path}: {exc.strerror or exc}") from None
        else:
            writer.close()
        raise ControlStartError(f"another edgeagent is running on {path}")

    async def serve(self) -> None:
        """Serve until cancelled (starting first if needed); always closes on the way out."""
        if self._server is None:
            await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop accepting, cancel open connections, remove the socket file. Bounded; idempotent."""
        if self._closed:
            return
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=_CLOSE_TIMEOUT_S)
            if pending:
                log.error("control.close_timeout", connections=len(pending))
        if server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await server.wait_closed()
        self._unlink()
        log.info("control.closed", path=str(self.path))

    def _unlink(self) -> None:
        """Remove our socket file, but never one that another process bound in its place."""
        try:
            if self._inode is not None and self.path.lstat().st_ino == self._inode:
                self.path.unlink()
        except OSError:
            pass
        self._inode = None

    # -- connections ------------------------------------------------------------------------------

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            if self._serving >= self.max_connections:
                await self._send(writer, _error("busy", f"the control socket is busy ({self.max_connections} "
                                                        "connections open); try again in a moment"))
                return
            self._serving += 1
            try:
                await self._converse(reader, writer)
            finally:
                self._serving -= 1
        except (ConnectionError, TimeoutError) as exc:
            log.debug("control.connection_lost", error=repr(exc))
        except Exception as exc:  # the server never dies from a client
            log.error("control.connection_failed", error=repr(exc), exc_info=True)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        if peer is None or not self._authorize(peer):
            who = peer.describe() if peer is not None else "an unidentified peer"
            log.warning("control.forbidden", peer=who, pid=peer.pid if peer else None)
            await self._send(writer, _error("forbidden", f"{who} may not use this socket: run as the edgeagent "
                                                         "user or root"))
            return
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout_s):
                    line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():  # a last request without its newline still gets its answer
                    await self._send(writer, await self._respond(exc.partial, peer))
                return
            except asyncio.LimitOverrunError:
                await self._send(writer, _error("too_long", f"request line longer than {self.max_line_bytes} "
                                                            "bytes; closing"))
                return
            except TimeoutError:
                await self._send(writer, _error("timeout", f"no request within {self.idle_timeout_s:g} s; "
                                                           "closing"))
                return
            await self._send(writer, await self._respond(line, peer))

    async def _send(self, writer: asyncio.StreamWriter, reply: bytes | Mapping[str, Any]) -> None:
        writer.write(reply if isinstance(reply, bytes) else _encode(reply))
        async with asyncio.timeout(self.idle_timeout_s):  # a client that never reads cannot hold us
            await writer.drain()

    # -- requests ---------------------------------------------------------------------------------

    async def _respond(self, line: bytes, peer: Peer) -> bytes:
        """One request line → one encoded reply line. Never raises. A handler may return an awaitable
        (for work that must not hold the event loop, such as a durable write)."""
        try:
            cmd, args = self._parse(line)
            entry = self._entries.get(cmd)
            if entry is None:
                raise Refused("unknown_command", f"unknown command {cmd[:64]!r} (known: "
                                                 f"{', '.join(sorted(self._entries)) or 'none'})")
            entry.check_args(cmd, args)
        except Refused as refusal:
            return _encode(_error(refusal.code, refusal.message))
        try:
            result = entry.handler(MappingProxyType(dict(args)), peer)
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, Mapping):
                raise TypeError(f"handler returned {type(result).__name__}, not a mapping")
            return _encode({"ok": True, **{k: v for k, v in result.items() if k != "ok"}})
        except Refused as refusal:
            return _encode(_error(refusal.code, refusal.message))
        except Exception as exc:  # a bug in a handler (or an unencodable reply) costs one request, not the server
            log.error("control.handler_failed", cmd=cmd, peer=peer.describe(), error=repr(exc), exc_info=True)
            return _encode(_error("internal", f"internal error while handling {cmd}: see the daemon's log"))

    @staticmethod
    def _parse(line: bytes) -> tuple[str, Mapping[str, Any]]:
        if not line.strip():
            raise Refused("bad_request", 'empty line: send one JSON object per line, e.g. {"cmd": "status"}')
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Refused("bad_json", f"request is not UTF-8 text (invalid byte at offset {exc.start})") from None
        try:
            request = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        except json.JSONDecodeError as exc:
            raise Refused("bad_json", f"request is not valid JSON: {exc.msg} at column {exc.colno}") from None
        except ValueError as exc:
            raise Refused("bad_json", f"request is not usable JSON: {exc}") from None
        except RecursionError:
            raise Refused("bad_json", "request is nested too deeply") from None
        if not isinstance(request, dict):
            raise Refused("bad_request", f"request must be a JSON object, got {_json_kind(request)}")
        for key in request:
            if key not in ("cmd", "args"):
                raise Refused("bad_request", f"unknown request field {key[:64]!r} (expected cmd and args)")
        cmd = request.get("cmd")
        if not isinstance(cmd, str):
            raise Refused("bad_request", f'request needs "cmd" as a string, got {_json_kind(cmd)}')
        args = request.get("args", {})
        if not isinstance(args, dict):
            raise Refused("bad_request", f'"args" must be a JSON object, got {_json_kind(args)}')
        return cmd, args


def _encode(reply: Mapping[str, Any]) -> bytes:
    return json.dumps(reply, allow_nan=False, separators=(",", ":")).encode() + b"\n"


def _peer(writer: asyncio.StreamWriter) -> Peer | None:
    """The connecting process's pid/uid/gid from SO_PEERCRED (Linux); None when not available."""
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    try:
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    except OSError:
        return None
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = ""
    return Peer(pid, uid, gid, user)


__all__ = ["IDLE_TIMEOUT_S", "MAX_CONNECTIONS", "MAX_LINE_BYTES", "Authorize", "ControlServer", "ControlStartError",
           "Handler", "Peer", "Refused", "same_uid_or_root"]
