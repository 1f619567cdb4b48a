"""The persistent nonce store: durable, atomic, pruned, and failing closed on a damaged file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from edgeagent.decisions.nonces import FILENAME, NonceStore, NonceStoreError

NOW = 1_750_000_000.0


def test_a_nonce_is_new_once_per_key(tmp_path: Path) -> None:
    with NonceStore(tmp_path / FILENAME) as store:
        assert store.seen_or_record("alice", "n" * 16, NOW + 300, NOW) is False
        assert store.seen_or_record("alice", "n" * 16, NOW + 300, NOW + 1) is True
        assert store.seen_or_record("bob", "n" * 16, NOW + 300, NOW + 2) is False
        assert store.seen_or_record("alice", "m" * 16, NOW + 300, NOW + 3) is False
        assert len(store) == 3
        assert store.fault is None


def test_a_nonce_stays_seen_after_reopening(tmp_path: Path) -> None:
    with NonceStore.in_state_dir(tmp_path / "state") as store:
        assert store.seen_or_record("alice", "n" * 16, NOW + 300, NOW) is False
    assert (tmp_path / "state" / FILENAME).exists()
    with NonceStore.in_state_dir(tmp_path / "state") as reopened:
        assert reopened.seen_or_record("alice", "n" * 16, NOW + 300, NOW + 10) is True


def test_a_recorded_nonce_survives_a_process_that_dies_without_closing(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    child = textwrap.dedent(f"""
        import os
        from edgeagent.decisions.nonces import NonceStore
        store = NonceStore({str(path)!r})
        assert store.seen_or_record("alice", "crash-nonce-0001", {NOW + 300}, {NOW}) is False
        os._exit(0)  # no close, no checkpoint: only what the commit made durable remains
    """)
    subprocess.run([sys.executable, "-c", child], check=True, cwd=Path(__file__).parents[2], timeout=30)
    with NonceStore(path) as store:
        assert store.seen_or_record("alice", "crash-nonce-0001", NOW + 300, NOW + 1) is True


def test_old_records_are_pruned_after_their_time_and_the_grace(tmp_path: Path) -> None:
    with NonceStore(tmp_path / FILENAME, prune_grace_s=60, prune_every_s=0) as store:
        store.seen_or_record("alice", "old-nonce-000001", NOW + 100, NOW)
        store.seen_or_record("alice", "new-nonce-000001", NOW + 1000, NOW)
        assert store.prune(NOW + 160) == 0  # keep_until + grace = NOW + 160: not yet past
        assert store.prune(NOW + 160.5) == 1
        assert store.seen_or_record("alice", "new-nonce-000001", NOW + 1000, NOW + 200) is True
        assert store.seen_or_record("alice", "old-nonce-000001", NOW + 1000, NOW + 200) is False


def test_recording_prunes_at_most_every_prune_interval(tmp_path: Path) -> None:
    with NonceStore(tmp_path / FILENAME, prune_grace_s=0, prune_every_s=600) as store:
        store.seen_or_record("k", "a" * 16, NOW + 10, NOW)  # first record prunes (nothing yet)
        store.seen_or_record("k", "b" * 16, NOW + 500, NOW + 20)  # a is past, but the last prune was 20 s ago
        assert len(store) == 2
        store.seen_or_record("k", "c" * 16, NOW + 1000, NOW + 600)  # 600 s since the last prune: a and b go
        assert len(store) == 1


def test_concurrent_callers_see_a_nonce_as_new_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    stores = [NonceStore(path), NonceStore(path), NonceStore(path)]  # three connections, as three processes would
    nonces = [f"race-nonce-{i:06d}" for i in range(40)]
    results: list[tuple[str, bool]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def worker(store: NonceStore) -> None:
        barrier.wait()
        for nonce in nonces:
            seen = store.seen_or_record("alice", nonce, NOW + 300, NOW)
            with lock:
                results.append((nonce, seen))

    threads = [threading.Thread(target=worker, args=(s,)) for s in stores for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for s in stores:
        s.close()
    assert len(results) == 6 * len(nonces)
    for nonce in nonces:
        assert [seen for n, seen in results if n == nonce].count(False) == 1, nonce


def expect_fault(store: NonceStore, *words: str) -> None:
    assert store.fault is not None
    for word in words:
        assert word in store.fault
    with pytest.raises(NonceStoreError) as caught:
        store.seen_or_record("alice", "after-fault-0001", NOW + 300, NOW)
    assert str(caught.value) == store.fault
    with pytest.raises(NonceStoreError):
        store.prune(NOW)


def test_a_file_that_is_no_database_is_a_fault(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    path.write_bytes(b"this is not a database, it is a note somebody left\n" * 100)
    store = NonceStore(path)
    expect_fault(store, str(path), "not a readable database", f"mv {path} {path}.bad", "refused")
    assert path.read_bytes().startswith(b"this is not a database")  # the evidence is left alone


def test_another_sqlite_database_is_a_fault(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE telemetry (x)")
    conn.close()
    expect_fault(NonceStore(path), "is not an edgeagent nonce store of schema 1", "['telemetry']")


def test_damaged_pages_are_a_fault(tmp_path: Path) -> None:
    path = tmp_path / FILENAME
    with NonceStore(path) as store:
        for i in range(2000):
            store.seen_or_record(f"key-{i % 7}", f"nonce-{i:010d}", NOW + 300, NOW)
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    for offset in range(2 * 4096, len(data) - 4096, 4096):  # every page after the first: headers and cells
        data[offset:offset + 64] = b"\xa5" * 64
    path.write_bytes(bytes(data))
    expect_fault(NonceStore(path), "damaged")


def test_a_state_directory_that_cannot_be_made_is_a_fault(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    expect_fault(NonceStore(tmp_path / "file" / FILENAME), "cannot open the nonce store")


def _error(code: int) -> sqlite3.DatabaseError:
    exc = sqlite3.DatabaseError("simulated")
    exc.sqlite_errorcode = code
    return exc


class _FailingConnection:
    def __init__(self, error: sqlite3.Error) -> None:
        self.error = error

    def execute(self, *args: object) -> object:
        raise self.error

    def close(self) -> None:
        pass


def test_corruption_found_while_running_stays_a_fault(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / FILENAME)
    store._conn = _FailingConnection(_error(sqlite3.SQLITE_CORRUPT))  # type: ignore[assignment]
    with pytest.raises(NonceStoreError, match="is damaged"):
        store.seen_or_record("alice", "nonce-0000000001", NOW + 300, NOW)
    expect_fault(store, "is damaged", "mv ")


def test_a_full_disk_refuses_this_record_but_is_no_lasting_fault(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / FILENAME)
    real = store._conn
    store._conn = _FailingConnection(_error(sqlite3.SQLITE_FULL))  # type: ignore[assignment]
    with pytest.raises(NonceStoreError, match="cannot record the nonce"):
        store.seen_or_record("alice", "nonce-0000000001", NOW + 300, NOW)
    assert store.fault is None
    store._conn = real
    assert store.seen_or_record("alice", "nonce-0000000001", NOW + 300, NOW) is False
    store.close()


def test_a_closed_store_refuses(tmp_path: Path) -> None:
    store = NonceStore(tmp_path / FILENAME)
    store.close()
    expect_fault(store, "is closed")


def test_bad_arguments_are_errors_not_answers(tmp_path: Path) -> None:
    with NonceStore(tmp_path / FILENAME) as store:
        with pytest.raises(ValueError, match="finite"):
            store.seen_or_record("alice", "nonce-0000000001", float("nan"), NOW)
        assert len(store) == 0
    with pytest.raises(ValueError, match="prune_grace_s"):
        NonceStore(tmp_path / "x", prune_grace_s=-1)
