"""The control socket against real unix sockets: protocol, permissions, peer check, bad input,
limits, start-up over stale and live sockets, bounded shutdown, and the client's messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from edgeagent.control import ControlServer, ControlStartError, Peer, Refused, same_uid_or_root
from edgeagent.control_client import Connection, ControlError, call

SERVER_CODES = {"too_long", "bad_json", "bad_request", "unknown_command", "bad_args", "timeout", "busy",
                "forbidden", "internal"}


@pytest.fixture
def short_dir(tmp_path: Path) -> Iterator[Path]:
    """tmp_path, unless it is too long for a unix socket path below it."""
    if len(os.fsencode(tmp_path)) <= 70:
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="ea-ctl-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _echo(args: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
    return {"args": dict(args), "peer": {"pid": peer.pid, "uid": peer.uid, "gid": peer.gid, "user": peer.user}}


def _refuse(args: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
    raise Refused("not_now", "not now: the moon is in the wrong phase")


def _boom(args: Mapping[str, Any], peer: Peer) -> Mapping[str, Any]:
    raise ZeroDivisionError("a bug in a handler")


def make_server(path: Path, **kwargs: Any) -> ControlServer:
    server = ControlServer(path, **kwargs)
    server.register("echo", _echo, optional={"x": float, "pad": str})
    server.register("typed", lambda args, peer: {"got": dict(args)}, required={"name": str, "n": int},
                    optional={"ratio": float})
    server.register("refuse", _refuse)
    server.register("boom", _boom)
    server.register("nan", lambda args, peer: {"value": float("nan")})
    server.register("not-a-mapping", lambda args, peer: ["a", "list"])  # type: ignore[arg-type,return-value]
    return server


@contextlib.asynccontextmanager
async def running(path: Path, **kwargs: Any) -> AsyncIterator[ControlServer]:
    server = make_server(path, **kwargs)
    await server.start()
    task = asyncio.create_task(server.serve())
    try:
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.close()  # a task cancelled before its first step never ran serve()'s cleanup


class Raw:
    """A byte-level client, to send what the real client never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, path: Path) -> Raw:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=1 << 20)
        return cls(reader, writer)

    async def ask(self, line: bytes) -> dict[str, Any]:
        self.writer.write(line)
        await self.writer.drain()
        return await self.reply()

    async def reply(self) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.reader.readline(), 5)
        assert raw.endswith(b"\n"), raw
        reply = json.loads(raw)
        assert isinstance(reply, dict)
        return reply

    async def closed_by_server(self) -> bool:
        return await asyncio.wait_for(self.reader.read(), 5) == b""

    def close(self) -> None:
        self.writer.close()


# -- protocol and identity ---------------------------------------------------------------------------


async def test_requests_on_one_connection_carry_the_peer(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    async with running(path):
        def three() -> list[dict[str, Any]]:
            with Connection(path) as conn:
                return [conn.request("echo", {"x": 1.5}), conn.request("typed", {"name": "a", "n": 2}),
                        conn.request("refuse")]

        echo, typed, refused = await asyncio.to_thread(three)
    assert echo == {"ok": True, "args": {"x": 1.5}, "peer": {"pid": os.getpid(), "uid": os.getuid(),
                                                            "gid": os.getgid(),
                                                            "user": pwd.getpwuid(os.getuid()).pw_name}}
    assert typed == {"ok": True, "got": {"name": "a", "n": 2}}
    assert refused == {"ok": False, "code": "not_now", "error": "not now: the moon is in the wrong phase"}


async def test_socket_is_owner_only_and_the_umask_is_restored(short_dir: Path) -> None:
    path = short_dir / "run" / "control.sock"
    umask_before = os.umask(0o022)
    try:
        async with running(path):
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            assert stat.S_ISSOCK(path.lstat().st_mode) and stat.S_IMODE(path.lstat().st_mode) == 0o600
            assert os.umask(0o022) == 0o022
    finally:
        os.umask(umask_before)
    assert not path.exists()


async def test_an_existing_directory_keeps_its_mode(short_dir: Path) -> None:
    os.chmod(short_dir, 0o755)
    async with running(short_dir / "control.sock"):
        assert stat.S_IMODE(os.stat(short_dir).st_mode) == 0o755


def test_the_default_check_admits_the_owner_and_root_only() -> None:
    assert Peer(1, 1000, 1000, "alice").describe() == "alice (uid 1000)"
    assert Peer(1, 4321, 4321, "").describe() == "uid 4321"
    check = same_uid_or_root(1000)
    assert check(Peer(1, 1000, 1000, "alice")) and check(Peer(1, 0, 0, "root"))
    assert not check(Peer(1, 1001, 1000, "mallory"))


async def test_a_refused_peer_gets_forbidden_and_is_disconnected(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    seen: list[Peer] = []

    def nobody_allowed(peer: Peer) -> bool:
        seen.append(peer)
        return False

    async with running(path, authorize=nobody_allowed):
        conn = await Raw.open(path)
        with capture_logs() as logs:
            reply = await conn.reply()  # refused before asking anything
            assert await conn.closed_by_server()
        conn.close()
        # the client reads the refusal even when the server has hung up before the request went out
        by_client = [await asyncio.to_thread(call, path, "echo") for _ in range(20)]
    assert reply["ok"] is False and reply["code"] == "forbidden"
    assert "run as the edgeagent user or root" in reply["error"]
    assert all(r == reply for r in by_client)
    assert seen and seen[0].uid == os.getuid() and seen[0].pid == os.getpid()
    assert [e["event"] for e in logs] == ["control.forbidden"]


def _as_nobody(code: str, pythonpath: Path) -> dict[str, Any]:
    """Run `code` as user nobody with the system's python (the venv's may sit under /root)."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for user nobody")
    out = subprocess.run([python, "-c", code], user="nobody", capture_output=True, text=True, timeout=30,
                         cwd="/", env={"PYTHONPATH": str(pythonpath)})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert isinstance(result, dict)
    return result


_CLIENT_AS_NOBODY = """
import json
from edgeagent.control_client import ControlError, call
try:
    print(json.dumps({"reply": call(%r, "echo")}))
except ControlError as exc:
    print(json.dumps({"error": str(exc)}))
"""


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A directory user nobody can enter, holding a copy of the (stdlib-only) client module."""
    base = Path(tempfile.mkdtemp(prefix="ea-ctl-", dir="/tmp"))
    try:
        base.chmod(0o755)
        package = base / "lib" / "edgeagent"
        package.mkdir(parents=True)
        source = Path(__file__).resolve().parents[1] / "edgeagent"
        for name in ("__init__.py", "control_client.py"):
            shutil.copy(source / name, package / name)
        for d in (base / "lib", package):
            d.chmod(0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
async def test_another_user_is_kept_out_by_the_file_modes_and_by_the_peer_check(world_readable_dir: Path) -> None:
    path = world_readable_dir / "ctl" / "control.sock"
    lib = world_readable_dir / "lib"
    async with running(path):
        # the modes the server set: nobody cannot even reach the socket
        by_mode = await asyncio.to_thread(_as_nobody, _CLIENT_AS_NOBODY % str(path), lib)
        # loosen them on purpose: the kernel's peer credentials still keep nobody out
        path.parent.chmod(0o755)
        path.chmod(0o666)
        by_peer = await asyncio.to_thread(_as_nobody, _CLIENT_AS_NOBODY % str(path), lib)
    assert by_mode == {"error": f"permission denied on {path}: run as the edgeagent user or root"}
    assert by_peer["reply"]["ok"] is False and by_peer["reply"]["code"] == "forbidden"
    assert "nobody (uid 65534)" in by_peer["reply"]["error"]


# -- bad input ---------------------------------------------------------------------------------------

BAD = [
    (b"not json\n", "bad_json", "not valid JSON"),
    (b"\xff\xfe{}\n", "bad_json", "not UTF-8"),
    (b'{"cmd": "echo", "args": {"x": NaN}}\n', "bad_json", "NaN"),
    (b'{"cmd": "echo", "args": {"x": 1e999}}\n', "bad_json", "too large"),
    (b"[" * 60000 + b"\n", "bad_json", "nested too deeply"),
    (b"\n", "bad_request", "empty line"),
    (b"[1, 2]\n", "bad_request", "got a list"),
    (b'"status"\n', "bad_request", "got a string"),
    (b'{"args": {}}\n', "bad_request", '"cmd" as a string, got null'),
    (b'{"cmd": 3}\n', "bad_request", '"cmd" as a string, got a number'),
    (b'{"cmd": "echo", "id": 1}\n', "bad_request", "unknown request field 'id'"),
    (b'{"cmd": "echo", "args": [1]}\n', "bad_request", '"args" must be a JSON object, got a list'),
    (b'{"cmd": "nope"}\n', "unknown_command", "unknown command 'nope' (known: boom, echo, nan"),
    (b'{"cmd": "typed", "args": {"n": 1}}\n', "bad_args", "typed needs argument 'name' (a string)"),
    (b'{"cmd": "typed", "args": {"name": 1, "n": 1}}\n', "bad_args",
     "argument 'name' of typed must be a string, got a number"),
    (b'{"cmd": "typed", "args": {"name": "a", "n": true}}\n', "bad_args",
     "argument 'n' of typed must be an integer, got a boolean"),
    (b'{"cmd": "typed", "args": {"name": "a", "n": 1.5}}\n', "bad_args", "must be an integer, got a number"),
    (b'{"cmd": "typed", "args": {"name": "a", "n": 1, "ratio": "x"}}\n', "bad_args",
     "argument 'ratio' of typed must be a number, got a string"),
    (b'{"cmd": "typed", "args": {"name": "a", "n": 1, "z": 0}}\n', "bad_args",
     "unknown argument 'z' for typed (expected: name, n, ratio)"),
    (b'{"cmd": "nan"}\n', "internal", "internal error while handling nan"),
    (b'{"cmd": "not-a-mapping"}\n', "internal", "internal error while handling not-a-mapping"),
]


@pytest.mark.parametrize(("line", "code", "words"), BAD, ids=[f"{c}-{i}" for i, (_, c, _) in enumerate(BAD)])
async def test_bad_input_gets_a_precise_reply_and_the_connection_goes_on(
        short_dir: Path, line: bytes, code: str, words: str) -> None:
    path = short_dir / "control.sock"
    async with running(path):
        conn = await Raw.open(path)
        reply = await conn.ask(line)
        after = await conn.ask(b'{"cmd": "echo"}\n')
        conn.close()
    assert reply["ok"] is False and reply["code"] == code and words in reply["error"], reply
    assert after["ok"] is True


async def test_a_handler_bug_is_logged_once_answered_internal_and_the_server_lives(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    async with running(path):
        with capture_logs() as logs:
            reply = await asyncio.to_thread(call, path, "boom")
        after = await asyncio.to_thread(call, path, "echo")
    assert reply == {"ok": False, "code": "internal", "error": "internal error while handling boom: see the "
                                                              "daemon's log"}
    failures = [e for e in logs if e["event"] == "control.handler_failed"]
    assert len(failures) == 1 and "ZeroDivisionError" in failures[0]["error"] and failures[0]["exc_info"]
    assert after["ok"] is True


async def test_a_line_of_64_kib_is_read_and_one_byte_more_closes(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    head, tail = b'{"cmd": "echo", "args": {"pad": "', b'"}}'
    exact = head + b"p" * (64 * 1024 - len(head) - len(tail)) + tail
    assert len(exact) == 64 * 1024
    async with running(path):
        conn = await Raw.open(path)
        fits = await conn.ask(exact + b"\n")
        too_long = await conn.ask(exact[:-2] + b'p"}}\n')
        assert await conn.closed_by_server()
        conn.close()
        unterminated = await Raw.open(path)
        endless = await unterminated.ask(b"x" * (200 * 1024))  # no newline at all
        assert await unterminated.closed_by_server()
        unterminated.close()
    assert fits["ok"] is True and len(fits["args"]["pad"]) == len(exact) - len(head) - len(tail)
    for reply in (too_long, endless):
        assert reply["ok"] is False and reply["code"] == "too_long" and "65536 bytes" in reply["error"]


async def test_an_idle_connection_is_closed_after_the_timeout(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    async with running(path, idle_timeout_s=0.2):
        conn = await Raw.open(path)
        t0 = time.monotonic()
        conn.writer.write(b'{"cmd": "ec')  # a slow client that never finishes its line
        reply = await conn.reply()
        waited_s = time.monotonic() - t0
        assert await conn.closed_by_server()
        conn.close()
    assert reply["code"] == "timeout" and "no request within 0.2 s" in reply["error"]
    assert 0.15 < waited_s < 2.0


async def test_a_ninth_connection_is_told_busy_and_a_freed_slot_is_reused(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    async with running(path):
        conns = [await Raw.open(path) for _ in range(8)]
        for conn in conns:
            assert (await conn.ask(b'{"cmd": "echo"}\n'))["ok"] is True
        ninth = await Raw.open(path)
        busy = await ninth.reply()
        assert await ninth.closed_by_server()
        ninth.close()
        conns[0].close()
        reply: dict[str, Any] = {}
        for _ in range(100):  # the server notices the close asynchronously
            again = await Raw.open(path)
            reply = await again.ask(b'{"cmd": "echo"}\n')
            again.close()
            if reply["ok"]:
                break
            await asyncio.sleep(0.02)
        for conn in conns[1:]:
            conn.close()
    assert busy["ok"] is False and busy["code"] == "busy" and "8 connections" in busy["error"]
    assert reply["ok"] is True


class ServerThread:
    """The server on its own event loop in a thread, for synchronous (hypothesis) tests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        async with running(self.path):
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive()


def _ask_raw(path: Path, line: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(line)
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, f"closed without a reply to {line[:60]!r}"
            data += chunk
        return data


_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                    max_size=4), max_leaves=12)
_LINES = st.one_of(
    st.binary(max_size=3000),
    st.text(max_size=300).map(str.encode),
    _JSONISH.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.sampled_from(["cmd", "args", "x"]), _JSONISH, max_size=3).map(lambda v: json.dumps(v).encode()),
).map(lambda b: b.replace(b"\n", b" "))


def test_arbitrary_lines_always_get_one_json_reply_and_the_server_keeps_answering(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    with ServerThread(path):
        @settings(max_examples=300)
        @given(_LINES)
        def one_line(line: bytes) -> None:
            data = _ask_raw(path, line + b"\n")
            assert data.count(b"\n") == 1
            reply = json.loads(data)
            assert isinstance(reply, dict) and isinstance(reply["ok"], bool)
            if not reply["ok"]:
                assert isinstance(reply["error"], str) and reply["error"]
                assert reply["code"] in SERVER_CODES | {"not_now"}

        one_line()
        assert call(path, "echo", {"x": 2})["args"] == {"x": 2}


# -- start-up and shutdown ---------------------------------------------------------------------------


async def test_a_stale_socket_is_removed_and_replaced(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    with socket.socket(socket.AF_UNIX) as leftover:
        leftover.bind(str(path))  # a crashed daemon's file: nobody listens
    with capture_logs() as logs:
        async with running(path):
            reply = await asyncio.to_thread(call, path, "echo")
    assert reply["ok"] is True
    assert "control.stale_socket_removed" in [e["event"] for e in logs]


async def test_a_live_socket_is_left_alone_and_start_is_refused(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    async with running(path):
        second = make_server(path)
        with pytest.raises(ControlStartError, match=f"another edgeagent is running on {path}$"):
            await second.start()
        await second.close()  # must not remove the first one's socket
        reply = await asyncio.to_thread(call, path, "echo")
    assert reply["ok"] is True


async def test_unusable_paths_are_refused_with_a_reason(short_dir: Path) -> None:
    not_a_socket = short_dir / "control.sock"
    not_a_socket.write_text("")
    with pytest.raises(ControlStartError, match="exists and is not a socket"):
        await make_server(not_a_socket).start()
    assert not_a_socket.exists()
    too_long = short_dir / ("d" * 120) / "control.sock"
    with pytest.raises(ControlStartError, match="unix sockets allow at most 107"):
        await make_server(too_long).start()


async def test_shutdown_is_bounded_closes_connections_and_removes_the_socket(short_dir: Path) -> None:
    path = short_dir / "control.sock"
    server = make_server(path)
    await server.start()
    serving = asyncio.create_task(server.serve())
    idle = [await Raw.open(path) for _ in range(3)]
    for conn in idle:
        assert (await conn.ask(b'{"cmd": "echo"}\n'))["ok"] is True
    before = asyncio.all_tasks()
    t0 = time.monotonic()
    serving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await serving
    took_s = time.monotonic() - t0
    for conn in idle:
        assert await conn.closed_by_server()
        conn.close()
    assert took_s < 1.0
    assert not path.exists()
    leftovers = {t for t in asyncio.all_tasks() if not t.done()} - {asyncio.current_task()}
    assert len(before) > 2 and not leftovers


# -- the client's messages ---------------------------------------------------------------------------


def test_the_client_says_what_is_wrong(short_dir: Path) -> None:
    missing = short_dir / "none.sock"
    with pytest.raises(ControlError) as no_file:
        call(missing, "status")
    assert str(no_file.value) == (f"no edgeagent daemon is listening on {missing}: is it running? "
                                  "(systemctl status edgeagent)")

    stale = short_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    with pytest.raises(ControlError, match=re.escape("(only a stale socket is left): is it running?")):
        call(stale, "status")

    with pytest.raises(ControlError, match="too long for a unix socket"):
        call(short_dir / ("x" * 120), "status")


@pytest.mark.parametrize(("behaviour", "words"), [
    ("silent", "did not answer within 0.3 s"),
    ("garbled", "sent a garbled reply: b'hello there'"),
    ("not-a-reply", "sent a garbled reply"),
    ("hang-up", "closed the connection without answering"),
])
def test_the_client_reports_a_daemon_that_misbehaves(short_dir: Path, behaviour: str, words: str) -> None:
    path = short_dir / "odd.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen()

    def serve_once() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            if behaviour == "garbled":
                conn.sendall(b"hello there\n")
            elif behaviour == "not-a-reply":
                conn.sendall(b'{"result": 1}\n')
            elif behaviour == "silent":
                time.sleep(0.6)

    thread = threading.Thread(target=serve_once)
    thread.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(ControlError, match=re.escape(words)) as err:
            call(path, "status", timeout_s=0.3)
        assert time.monotonic() - t0 < 2.0
        assert str(path) in str(err.value)
    finally:
        thread.join(5)
        listener.close()
