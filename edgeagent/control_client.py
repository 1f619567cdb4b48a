"""The synchronous client of the control socket, for the `edgeagent` command (and tests).

Every way of not reaching the daemon becomes a `ControlError` whose message a technician can act
on; a daemon that answers, even with a refusal, returns its reply as a dict.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_REPLY_BYTES = 4 * 1024 * 1024
SUN_PATH_MAX_BYTES = 107


class ControlError(Exception):
    """The daemon could not be reached, or answered something that is not a reply."""


class Connection:
    """One connection; several requests may go over it, one at a time."""

    def __init__(self, path: str | Path, timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self.timeout_s = timeout_s
        self._buffer = b""
        if len(os.fsencode(self.path)) > SUN_PATH_MAX_BYTES:
            raise ControlError(f"socket path {self.path} is too long for a unix socket "
                               f"(at most {SUN_PATH_MAX_BYTES} bytes)")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout_s)
        try:
            self._sock.connect(self.path)
        except OSError as exc:
            self._sock.close()
            raise self._unreachable(exc) from None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def request(self, cmd: str, args: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and return the daemon's reply (``ok`` true or false)."""
        line = json.dumps({"cmd": cmd, "args": dict(args or {})}).encode() + b"\n"
        deadline = time.monotonic() + self.timeout_s
        try:
            self._sock.settimeout(self.timeout_s)
            # the daemon may have refused us (busy, forbidden) and hung up already: its reply is still to read
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self._sock.sendall(line)
            while b"\n" not in self._buffer:
                if len(self._buffer) > MAX_REPLY_BYTES:
                    raise ControlError(f"the edgeagent daemon on {self.path} sent a garbled reply "
                                       f"(no end of line within {MAX_REPLY_BYTES} bytes)")
                self._sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = self._sock.recv(65536)
                if not chunk:
                    raise ControlError(f"the edgeagent daemon on {self.path} closed the connection without "
                                       "answering")
                self._buffer += chunk
        except OSError as exc:
            raise self._unreachable(exc) from None
        raw, self._buffer = self._buffer.split(b"\n", 1)
        return self._decode(raw)

    def _decode(self, raw: bytes) -> dict[str, Any]:
        try:
            reply = json.loads(raw)
        except (UnicodeDecodeError, ValueError, RecursionError):
            reply = None
        if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool) or (
                reply["ok"] is False and not isinstance(reply.get("error"), str)):
            raise ControlError(f"the edgeagent daemon on {self.path} sent a garbled reply: {raw[:80]!r}")
        return reply

    def _unreachable(self, exc: OSError) -> ControlError:
        path = self.path
        if isinstance(exc, TimeoutError):
            return ControlError(f"the edgeagent daemon on {path} did not answer within {self.timeout_s:g} s")
        if isinstance(exc, FileNotFoundError):
            return ControlError(f"no edgeagent daemon is listening on {path}: is it running? "
                                "(systemctl status edgeagent)")
        if isinstance(exc, ConnectionRefusedError):
            return ControlError(f"no edgeagent daemon is listening on {path} (only a stale socket is left): "
                                "is it running? (systemctl status edgeagent)")
        if isinstance(exc, PermissionError):
            return ControlError(f"permission denied on {path}: run as the edgeagent user or root")
        if isinstance(exc, ConnectionError):
            return ControlError(f"the edgeagent daemon on {path} closed the connection without answering")
        return ControlError(f"cannot reach the edgeagent daemon on {path}: {exc.strerror or exc}")


def call(path: str | Path, cmd: str, args: Mapping[str, Any] | None = None,
         timeout_s: float = 5.0) -> dict[str, Any]:
    """One request on a fresh connection. Raises ControlError when the daemon cannot be reached."""
    with Connection(path, timeout_s) as conn:
        return conn.request(cmd, args)


__all__ = ["Connection", "ControlError", "call"]
