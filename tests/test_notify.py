"""systemd notify protocol against a real unix datagram socket."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from edgeagent.notify import Notifier


@pytest.fixture
def receiver(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1)
    yield path, sock
    sock.close()


def test_ready_status_watchdog_datagrams(receiver: tuple[str, socket.socket]) -> None:
    path, sock = receiver
    n = Notifier(path)
    assert n.ready("running: 3 devices")
    assert sock.recv(4096) == b"READY=1\nSTATUS=running: 3 devices"
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.status("two\nlines")
    assert sock.recv(4096) == b"STATUS=two lines"
    n.close()


def test_abstract_socket_name() -> None:
    name = f"edgeagent-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(1)
    try:
        assert Notifier("@" + name).send(READY=1)
        assert sock.recv(100) == b"READY=1"
    finally:
        sock.close()


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled and not n.ready("x")


def test_vanished_receiver_never_blocks_or_raises(tmp_path: Path) -> None:
    n = Notifier(str(tmp_path / "gone.sock"))
    assert not n.watchdog()
    assert n.dropped == 1


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier("").watchdog_interval_s() == 2.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier("").watchdog_interval_s() is None
