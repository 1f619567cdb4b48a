"""The systemd notify protocol, spoken directly (no dependency): one datagram per message.

`NOTIFY_SOCKET` names a unix datagram socket, either a path or an abstract name starting with
"@". Without it (not run by systemd) every call is a no-op. Sending never blocks: the socket is
non-blocking and a full or vanished receiver only costs a dropped message, which systemd treats
like a missed ping; the safety path must never wait on it.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self._address: str | bytes | None = None
        self._sock: socket.socket | None = None
        if address:
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        self.dropped = 0

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: str | int) -> bool:
        """Send `KEY=value` lines, e.g. send(READY=1, STATUS="running"). True if delivered."""
        if self._sock is None or self._address is None:
            return False
        payload = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            self._sock.sendto(payload, self._address)
        except OSError:
            self.dropped += 1
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY=1, STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG=1)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text.replace("\n", " "))

    def stopping(self) -> bool:
        return self.send(STOPPING=1)

    def watchdog_interval_s(self) -> float | None:
        """Half of WATCHDOG_USEC (systemd's advice), if the watchdog is on for this process."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        try:
            return int(usec) / 1e6 / 2
        except ValueError:
            return None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
