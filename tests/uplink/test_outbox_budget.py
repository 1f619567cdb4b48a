"""The byte budget: telemetry is thinned, then dropped; events and decisions never are."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import edgeagent.uplink.outbox_budget as budget_module
from edgeagent.uplink import Lane, Outbox, Record


def sized(n: int, size: int = 100) -> bytes:
    """A JSON object of exactly `size` bytes, so budgets in the tests are easy to count."""
    head = b'{"n": %d, "pad": "' % n
    return head + b"x" * (size - len(head) - 2) + b'"}'


def test_thinning_keeps_one_in_n_of_the_oldest_half(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", budget_bytes=1000, telemetry_batch=1, thin_keep_one_in=4)
    recs = [ob.append(Lane.TELEMETRY, "telemetry", sized(i)) for i in range(10)]
    assert ob.stats().thinned == 0  # exactly at the budget is within it
    recs.append(ob.append(Lane.TELEMETRY, "telemetry", sized(10)))
    # 11 never-thinned records, 1100 bytes: the oldest half (6) is thinned to one in four
    # (records 0 and 4 stay), the newest five are untouched.
    assert ob.pending(100) == [recs[0], recs[4], *recs[6:]]
    stats = ob.stats()
    assert (stats.thinned, stats.dropped, stats.bytes, stats.records["telemetry"]) == (4, 0, 700, 7)
    recs += [ob.append(Lane.TELEMETRY, "telemetry", sized(i)) for i in range(11, 15)]
    # Over again at the 15th: the never-thinned ones are 6..14; their oldest half (6..10) is thinned
    # (6 and 10 stay); 0 and 4 survived a thinning before and are not thinned twice.
    assert ob.pending(100) == [recs[0], recs[4], recs[6], recs[10], *recs[11:]]
    assert ob.stats().thinned == 7
    ob.close()


def test_a_thinning_pass_is_capped_so_one_commit_stays_short(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget_module, "THIN_PASS_MAX", 4)
    ob = Outbox(tmp_path / "o.sqlite", budget_bytes=2000, telemetry_batch=21, thin_keep_one_in=4)
    recs = [ob.append(Lane.TELEMETRY, "telemetry", sized(i)) for i in range(21)]
    # 2100 bytes: a pass over the oldest 4 (not the oldest 11) frees 300 bytes, which is enough
    assert ob.pending(100) == [recs[0], *recs[4:]]
    assert ob.stats().thinned == 3
    ob.close()


def test_dropping_starts_when_nothing_is_left_to_thin_and_takes_the_oldest(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", budget_bytes=1000, telemetry_batch=1, thin_keep_one_in=4)
    events = [ob.append(Lane.EVENT, "events", sized(i)) for i in range(8)]
    t0 = ob.append(Lane.TELEMETRY, "telemetry", sized(100))
    t1 = ob.append(Lane.TELEMETRY, "telemetry", sized(101))
    assert ob.pending(100) == [*events, t0, t1]  # 1000 bytes: within budget
    t2 = ob.append(Lane.TELEMETRY, "telemetry", sized(102))
    # never-thinned t0 t1 t2: thin the oldest two (t0 stays, t1 goes) -> 1000 bytes
    assert ob.pending(100) == [*events, t0, t2]
    assert (ob.stats().thinned, ob.stats().dropped) == (1, 0)
    t3 = ob.append(Lane.TELEMETRY, "telemetry", sized(103))
    # thin t2 (kept, alone in its run), then t3 (kept): nothing thinnable left, still 1100 bytes,
    # so the oldest telemetry (t0) is dropped
    assert ob.pending(100) == [*events, t2, t3]
    stats = ob.stats()
    assert (stats.thinned, stats.dropped, stats.bytes, stats.over_budget) == (1, 1, 1000, False)
    ob.close()


def test_a_long_stream_stays_within_budget_and_every_record_is_accounted_for(tmp_path: Path) -> None:
    budget = 20_000
    ob = Outbox(tmp_path / "o.sqlite", budget_bytes=budget, telemetry_batch=20, thin_keep_one_in=4)
    events: list[Record] = []
    telemetry: list[Record] = []
    for i in range(1500):
        telemetry.append(ob.append(Lane.TELEMETRY, "telemetry", sized(i)))
        if i % 100 == 0:
            events.append(ob.append(Lane.EVENT, "events", sized(i)))
        stats = ob.stats()
        assert stats.bytes <= budget + 20 * 100  # over by at most the batch still in memory
    ob.flush()
    stats = ob.stats()
    assert stats.bytes <= budget
    assert stats.thinned > 0
    assert stats.dropped > 0
    pending = ob.pending(10_000)
    assert pending[: len(events)] == events  # no event lost
    kept = pending[len(events) :]
    assert stats.thinned + stats.dropped + len(kept) == len(telemetry)
    assert set(kept) <= set(telemetry)
    assert [r.id for r in kept] == sorted(r.id for r in kept)
    assert kept[-1] == telemetry[-1]  # the newest is the last to go
    ob.close()


def test_events_alone_over_budget_raise_the_alarm_and_are_all_kept(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.sqlite", budget_bytes=1000, telemetry_batch=5)
    telemetry = [ob.append(Lane.TELEMETRY, "telemetry", sized(i)) for i in range(5)]
    with capture_logs() as logs:
        events = [ob.append(Lane.EVENT, "events", sized(i)) for i in range(8)]
        decisions = [ob.append(Lane.DECISION, "decisions", sized(i)) for i in range(4)]
    stats = ob.stats()
    assert stats.over_budget
    assert stats.records == {"event": 8, "decision": 4, "telemetry": 0}  # telemetry gave way
    assert stats.bytes == 1200
    assert stats.thinned + stats.dropped == len(telemetry)
    assert ob.pending(100) == [*events, *decisions]
    assert [e["event"] for e in logs if e["event"].startswith("outbox.")].count("outbox.over_budget") == 1
    with capture_logs() as logs:
        ob.ack([r.id for r in events])
    stats = ob.stats()
    assert not stats.over_budget
    assert "outbox.within_budget" in [e["event"] for e in logs]
    ob.close()


def test_totals_match_the_table_after_reopen_and_counters_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ob = Outbox(path, budget_bytes=5_000, telemetry_batch=7)
    for i in range(200):
        ob.append(Lane.TELEMETRY, "telemetry", sized(i, size=90 + i % 20))
        if i % 30 == 0:
            ob.append(Lane.DECISION, "decisions", sized(i, size=50))
    ob.ack([r.id for r in ob.pending(15)])
    ob.flush()
    before = ob.stats()
    assert before.thinned > 0
    ob.close()
    conn = sqlite3.connect(path)
    rows = dict(
        conn.execute("SELECT lane, count(*) FROM outbox GROUP BY lane").fetchall()  # recount from scratch
    )
    size = conn.execute("SELECT sum(length(payload)) FROM outbox").fetchone()[0]
    conn.close()
    assert {lane: rows.get(lane, 0) for lane in before.records} == before.records
    assert size == before.bytes
    with Outbox(path, budget_bytes=5_000) as again:
        after = again.stats()
        assert (after.records, after.bytes) == (before.records, before.bytes)
        assert (after.thinned, after.dropped) == (0, 0)  # "since open"
