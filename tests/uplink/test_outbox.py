"""Outbox basics: order, `after`, ack, ids across clock steps and restarts, bad input, bad disk."""

from __future__ import annotations

import sqlite3
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import edgeagent.uplink.outbox as outbox_module
from edgeagent.uplink import Lane, Outbox, OutboxError, OutboxFull, Record


def body(n: int, pad: int = 0) -> bytes:
    return b'{"n": %d, "pad": "%s"}' % (n, b"x" * pad)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    ob = Outbox(tmp_path / "outbox.sqlite")
    yield ob
    ob.close()


class FakeClock:
    """Stands in for the `time` module inside the outbox, so a test can step the wall clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock(1_700_000_000.0)
    monkeypatch.setattr(outbox_module, "time", types.SimpleNamespace(time=fake.time))
    return fake


def test_pending_gives_events_and_decisions_first_in_id_order_then_telemetry(outbox: Outbox) -> None:
    appended = [
        outbox.append(Lane.TELEMETRY, "telemetry", body(0)),
        outbox.append(Lane.EVENT, "events", body(1)),
        outbox.append(Lane.TELEMETRY, "telemetry", body(2)),
        outbox.append(Lane.DECISION, "decisions", body(3)),
        outbox.append(Lane.EVENT, "events", body(4)),
        outbox.append(Lane.TELEMETRY, "telemetry", body(5)),
    ]
    got = outbox.pending(100)
    assert [r.payload for r in got] == [body(1), body(3), body(4), body(0), body(2), body(5)]
    assert [r.lane for r in got] == [Lane.EVENT, Lane.DECISION, Lane.EVENT] + [Lane.TELEMETRY] * 3
    assert sorted(got, key=lambda r: r.id) == appended  # the very records append returned
    assert got[0] == Record(appended[1].id, Lane.EVENT, "events", body(1), appended[1].created_wall)


def test_limit_takes_the_oldest_and_telemetry_only_after_every_urgent_record(outbox: Outbox) -> None:
    for i in range(5):
        outbox.append(Lane.TELEMETRY, "telemetry", body(i))
    events = [outbox.append(Lane.EVENT, "events", body(10 + i)) for i in range(3)]
    assert outbox.pending(2) == events[:2]
    assert [r.payload for r in outbox.pending(4)] == [body(10), body(11), body(12), body(0)]
    assert outbox.pending(0) == []
    with pytest.raises(ValueError, match="limit"):
        outbox.pending(-1)


def test_after_skips_what_is_in_flight_per_lane(outbox: Outbox) -> None:
    ev = [outbox.append(Lane.EVENT, "events", body(i)) for i in range(3)]
    de = [outbox.append(Lane.DECISION, "decisions", body(10 + i)) for i in range(2)]
    te = [outbox.append(Lane.TELEMETRY, "telemetry", body(20 + i)) for i in range(3)]
    got = outbox.pending(100, after={Lane.EVENT: ev[1].id, Lane.TELEMETRY: te[0].id})
    assert got == [ev[2], *de, te[1], te[2]]
    got = outbox.pending(100, after={Lane.EVENT: ev[2].id, Lane.DECISION: de[1].id, Lane.TELEMETRY: te[2].id})
    assert got == []
    with pytest.raises(ValueError, match="Lane"):
        outbox.pending(10, after={"event": 1})  # type: ignore[dict-item]


def test_ack_removes_is_idempotent_and_ignores_unknown_ids(outbox: Outbox) -> None:
    recs = [outbox.append(Lane.EVENT, "events", body(i)) for i in range(4)]
    tel = outbox.append(Lane.TELEMETRY, "telemetry", body(9))
    outbox.ack([recs[1].id, recs[3].id, 12345])
    assert outbox.pending(10) == [recs[0], recs[2], tel]
    outbox.ack([recs[1].id, recs[3].id])  # again: nothing happens
    outbox.ack([])
    assert outbox.pending(10) == [recs[0], recs[2], tel]
    stats = outbox.stats()
    assert stats.records == {"event": 2, "decision": 0, "telemetry": 1}
    assert stats.bytes == len(body(0)) + len(body(2)) + len(body(9))


def test_ack_of_telemetry_still_in_the_buffer(outbox: Outbox) -> None:
    kept = outbox.append(Lane.TELEMETRY, "telemetry", body(1))
    acked = outbox.append(Lane.TELEMETRY, "telemetry", body(2))
    outbox.ack([acked.id])
    assert outbox.pending(10) == [kept]
    assert outbox.stats().records["telemetry"] == 1


def test_telemetry_is_batched_and_committed_by_flush_batch_or_pending(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    ob = Outbox(path, telemetry_batch=3)
    ob.append(Lane.TELEMETRY, "telemetry", body(0))
    ob.append(Lane.TELEMETRY, "telemetry", body(1))
    committed = ob._db().execute("SELECT count(*) FROM outbox").fetchone()[0]  # peek under the API
    assert committed == 0  # buffered: no fsync per telemetry record
    ob.append(Lane.TELEMETRY, "telemetry", body(2))
    assert ob._db().execute("SELECT count(*) FROM outbox").fetchone()[0] == 3  # the batch is full
    ob.append(Lane.TELEMETRY, "telemetry", body(3))
    ob.flush()
    assert ob._db().execute("SELECT count(*) FROM outbox").fetchone()[0] == 4
    ob.append(Lane.TELEMETRY, "telemetry", body(4))
    assert len(ob.pending(10)) == 5  # what pending hands out is committed first
    assert ob._db().execute("SELECT count(*) FROM outbox").fetchone()[0] == 5
    ob.close()


def test_events_are_committed_before_append_returns(outbox: Outbox) -> None:
    rec = outbox.append(Lane.EVENT, "events", body(1))
    conn = outbox._db()
    assert not conn.in_transaction
    assert conn.execute("SELECT payload FROM outbox WHERE id = ?", (rec.id,)).fetchone()[0] == body(1)
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_ids_are_time_ordered(outbox: Outbox, clock: FakeClock) -> None:
    first = outbox.append(Lane.EVENT, "events", body(1))
    assert first.id == int(clock.now * 1000) << 20
    assert first.created_wall == clock.now
    same_ms = outbox.append(Lane.TELEMETRY, "telemetry", body(2))
    assert same_ms.id == first.id + 1
    clock.now += 5.0
    later = outbox.append(Lane.DECISION, "decisions", body(3))
    assert later.id == int(clock.now * 1000) << 20


def test_ids_keep_increasing_when_the_wall_clock_steps_back(outbox: Outbox, clock: FakeClock) -> None:
    ids = [outbox.append(Lane.EVENT, "events", body(0)).id]
    for step in (-3600.0, 0.0, -1e9, 7200.0, -0.001, -1.7e9):  # NTP steps, a 1970 boot without RTC
        clock.now += step
        ids.append(outbox.append(Lane.EVENT, "events", body(1)).id)
        ids.append(outbox.append(Lane.TELEMETRY, "telemetry", body(2)).id)
    assert ids == sorted(set(ids))


def test_ids_continue_above_everything_ever_stored_across_reopen(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as ob:
        recs = [ob.append(Lane.EVENT, "events", body(i)) for i in range(3)]
        tel = ob.append(Lane.TELEMETRY, "telemetry", body(9))
    clock.now -= 86400.0  # rebooted with the clock a day behind
    with Outbox(path) as ob:
        assert ob.pending(10) == [*recs, tel]
        nxt = ob.append(Lane.EVENT, "events", body(4))
        assert nxt.id == tel.id + 1
        ob.ack([r.id for r in ob.pending(10)])  # everything delivered: the table is empty
        assert ob.stats().records == {"event": 0, "decision": 0, "telemetry": 0}
    clock.now -= 86400.0
    with Outbox(path) as ob:
        assert ob.append(Lane.DECISION, "decisions", body(5)).id == nxt.id + 1


def test_stats_count_bytes_and_oldest(outbox: Outbox, clock: FakeClock) -> None:
    assert outbox.stats().oldest_wall is None
    outbox.append(Lane.TELEMETRY, "telemetry", body(1, pad=10))
    first_wall = clock.now
    clock.now += 1
    outbox.append(Lane.EVENT, "events", body(2))
    stats = outbox.stats()
    assert stats.oldest_wall == first_wall  # telemetry still in the buffer counts
    assert stats.records == {"event": 1, "decision": 0, "telemetry": 1}
    assert stats.bytes == len(body(1, pad=10)) + len(body(2))
    assert (stats.budget_bytes, stats.thinned, stats.dropped, stats.over_budget) == (64 * 2**20, 0, 0, False)


@pytest.mark.parametrize(
    ("lane", "topic", "payload", "match"),
    [
        (Lane.EVENT, "events", "{}", "must be bytes"),
        (Lane.EVENT, "events", bytearray(b"{}"), "must be bytes"),
        (Lane.EVENT, "events", None, "must be bytes"),
        (Lane.EVENT, "events", b"[1, 2]", "JSON object"),
        (Lane.TELEMETRY, "telemetry", b"", "JSON object"),
        (Lane.DECISION, "decisions", b' {"a": 1}', "JSON object"),
        ("event", "events", b"{}", "Lane"),
        (Lane.EVENT, "", b"{}", "non-empty"),
        (Lane.EVENT, "events/#", b"{}", "wildcards"),
        (Lane.EVENT, "/events", b"{}", "leading"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    outbox: Outbox, lane: object, topic: object, payload: object, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        outbox.append(lane, topic, payload)  # type: ignore[arg-type]
    assert outbox.stats().records == {"event": 0, "decision": 0, "telemetry": 0}
    assert outbox.pending(10) == []


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    for kwargs, match in (
        ({"budget_bytes": 0}, "budget_bytes"),
        ({"telemetry_batch": 0}, "telemetry_batch"),
        ({"thin_keep_one_in": 1}, "thin_keep_one_in"),
    ):
        with pytest.raises(ValueError, match=match):
            Outbox(tmp_path / "x.sqlite", **kwargs)


def test_a_corrupt_file_gives_a_clear_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    path.write_bytes(b"\x8f\x00garbage after a power cut" * 300)
    with pytest.raises(OutboxError) as info:
        Outbox(path)
    message = str(info.value)
    assert str(path) in message
    assert "move the file aside" in message
    assert path.read_bytes().startswith(b"\x8f\x00garbage")  # left as it was, for analysis


def test_a_damaged_page_is_found_at_open(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as ob:
        for i in range(300):
            ob.append(Lane.EVENT, "events", body(i, pad=200))
    data = bytearray(path.read_bytes())
    data[4096 * 3 : 4096 * 3 + 600] = bytes(range(200)) * 3  # scribble over a b-tree page
    path.write_bytes(bytes(data))
    with pytest.raises(OutboxError, match=r"corrupt|malformed|not a readable") as info:
        Outbox(path)
    assert str(path) in str(info.value)


def test_some_other_database_is_not_taken_for_an_outbox(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE readings (t REAL)")
    conn.commit()
    conn.close()
    with pytest.raises(OutboxError, match="not an edgeagent outbox"):
        Outbox(path)


def test_a_second_process_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as ob:
        ob.append(Lane.EVENT, "events", body(1))
        with pytest.raises(OutboxError, match="in use by another process"):
            Outbox(path)
        assert len(ob.pending(10)) == 1  # the first one is unharmed


def test_a_closed_outbox_says_so(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite")
    ob.close()
    ob.close()  # idempotent
    for call in (
        lambda: ob.append(Lane.EVENT, "events", b"{}"),
        ob.flush,
        lambda: ob.pending(1),
        lambda: ob.ack([1]),
        ob.stats,
    ):
        with pytest.raises(OutboxError, match="closed"):
            call()


def _limit_database_size(ob: Outbox, extra_pages: int) -> None:
    """Simulate a full disk: SQLite answers SQLITE_FULL once the file would pass max_page_count."""
    conn = ob._db()
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


def test_disk_full_refuses_the_event_and_the_outbox_stays_usable(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite")
    _limit_database_size(ob, extra_pages=4)
    stored: list[Record] = []
    with pytest.raises(OutboxFull, match="NOT stored"):
        for i in range(200):
            stored.append(ob.append(Lane.EVENT, "events", body(i, pad=1500)))
    assert 0 < len(stored) < 200
    assert ob.pending(1000) == stored  # every reported event is there, the refused one is not
    with pytest.raises(OutboxFull):
        ob.append(Lane.DECISION, "decisions", body(0, pad=1500))
    assert ob.stats().records["event"] == len(stored)
    ob.ack([r.id for r in stored[: len(stored) // 2 + 1]])  # the broker acknowledged some
    again = ob.append(Lane.EVENT, "events", body(999, pad=1500))
    assert ob.pending(1000) == [*stored[len(stored) // 2 + 1 :], again]
    ob.close()
    conn = sqlite3.connect(tmp_path / "outbox.sqlite")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_disk_full_sheds_the_oldest_telemetry_before_refusing_an_event(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite", telemetry_batch=50)
    telemetry = [ob.append(Lane.TELEMETRY, "telemetry", body(i, pad=300)) for i in range(400)]
    ob.flush()
    _limit_database_size(ob, extra_pages=0)
    events = [ob.append(Lane.EVENT, "events", body(i, pad=300)) for i in range(50)]
    stats = ob.stats()
    assert stats.dropped > 0
    assert stats.records["event"] == 50
    assert stats.records["telemetry"] == 400 - stats.dropped
    got = ob.pending(1000)
    assert got[:50] == events
    assert got[50:] == telemetry[stats.dropped :]  # the oldest went first
    with pytest.raises(OutboxFull):  # once no telemetry is left, events are refused, never dropped
        for i in range(10_000):
            events.append(ob.append(Lane.EVENT, "events", body(i, pad=300)))
    assert ob.stats().records["telemetry"] == 0
    assert ob.pending(100_000) == events
    ob.close()


def test_disk_full_on_a_telemetry_batch_drops_the_batch_without_raising(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "outbox.sqlite", telemetry_batch=1000)
    _limit_database_size(ob, extra_pages=2)
    event = ob.append(Lane.EVENT, "events", body(1))
    for i in range(300):
        ob.append(Lane.TELEMETRY, "telemetry", body(i, pad=300))
    ob.flush()  # does not raise: telemetry is the lane that may give way
    stats = ob.stats()
    assert (stats.records["telemetry"], stats.dropped) == (0, 300)
    assert ob.pending(10) == [event]
    ob.close()
