"""The durable outbox: every record bound upstream is on disk, in order, until the broker acked it.

DESIGN.md principle 3, "Nothing is lost": a broker outage, a crash or a power cut loses no
acknowledged record. How this file keeps that promise:

- EVENT and DECISION records are committed (WAL, synchronous=FULL, so fsynced) before `append`
  returns. TELEMETRY is buffered in memory and committed every `telemetry_batch` records, on
  `flush()` (the daemon calls it every second) and before `pending()` hands anything out: a crash
  may cost the last second of telemetry, never an event or decision whose append returned.
- Records leave only through `ack`, or, for telemetry alone, through the stated byte-budget
  policy: over budget, the oldest never-thinned telemetry is thinned (one record in
  `thin_keep_one_in` kept, the oldest half at a time); if that is not enough, the oldest telemetry
  is dropped. A full disk sheds the oldest telemetry the same way before an event is refused.
- Ids are `(unix_ms << 20) | counter`, never below the highest id ever committed: a box without a
  real-time clock that boots in 1970, or whose clock NTP steps back, still issues increasing ids.
  Records handed out by `pending` are committed, so an id the broker saw is never issued again.
- Budget enforcement runs inside the commits that happen anyway and uses running totals, so a
  steady stream at the budget costs no extra fsync and no table scan.
"""

from __future__ import annotations

import heapq
import itertools
import operator
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import structlog

from edgeagent.uplink.outbox_async import AsyncOutbox
from edgeagent.uplink.outbox_budget import Totals, delete_oldest_telemetry, enforce_budget, keep_high_water
from edgeagent.uplink.outbox_store import is_disk_full, open_database
from edgeagent.uplink.outbox_types import (
    URGENT_LANES,
    Lane,
    OutboxError,
    OutboxFull,
    OutboxStats,
    Record,
    validate_append,
)

__all__ = ["AsyncOutbox", "Lane", "Outbox", "OutboxError", "OutboxFull", "OutboxStats", "Record"]

log = structlog.get_logger("edgeagent.uplink.outbox")

COUNTER_BITS = 20
MAX_ID = 2**63 - 1  # SQLite's INTEGER PRIMARY KEY; reached in the year ~2248
_SANE_WALL_MAX = 7_258_118_400.0  # 2200-01-01: later wall clock readings are not used for ids
_CHUNK = 500  # ids per IN (...) list, well under SQLite's variable limit
_SHED_END = 0.9  # "shedding" ends once pending bytes are back under 90 % of the budget


class Outbox:
    """Durable, ordered store of records waiting for the broker. Synchronous: use one instance
    from one thread (`AsyncOutbox` gives it a thread of its own).

    `budget_bytes` bounds pending payload bytes by shedding telemetry (events and decisions are
    kept regardless); `telemetry_batch` is how many telemetry records share one commit;
    `thin_keep_one_in` is the thinning ratio. Opening checks the file and raises `OutboxError`
    with what to do when it is damaged or in use by another process.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        budget_bytes: int = 64 * 2**20,
        telemetry_batch: int = 200,
        thin_keep_one_in: int = 4,
    ) -> None:
        if budget_bytes < 1:
            raise ValueError(f"outbox budget_bytes must be at least 1, got {budget_bytes}")
        if telemetry_batch < 1:
            raise ValueError(f"outbox telemetry_batch must be at least 1, got {telemetry_batch}")
        if thin_keep_one_in < 2:
            raise ValueError(f"outbox thin_keep_one_in must be at least 2 (1 would never thin), got {thin_keep_one_in}")
        self.path = Path(path)
        self._budget = budget_bytes
        self._batch = telemetry_batch
        self._keep_one_in = thin_keep_one_in
        self._buffer: list[Record] = []
        self._shedding = False
        self._removed_seen = 0
        self._over_budget = False
        self._disk_full = False
        self._conn: sqlite3.Connection | None = open_database(self.path)
        try:
            self._t, self._last_id = self._load()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise
        self._after_change()

    # -- public API ---------------------------------------------------------------------------

    def append(self, lane: Lane, topic: str, payload: bytes) -> Record:
        """Store a record. EVENT/DECISION: durable when this returns; raises `OutboxFull` (and
        stores nothing) when the disk is full and no telemetry is left to give way.
        TELEMETRY: buffered, durable after the next batch commit or `flush()`."""
        self._db()
        validate_append(lane, topic, payload)
        now = time.time()
        record = Record(self._next_id(now), lane, topic, payload, now)
        if lane is Lane.TELEMETRY:
            self._buffer.append(record)
            self._t.count[lane] += 1
            self._t.size[lane] += len(payload)
            if len(self._buffer) >= self._batch:
                self._commit_buffer()
        else:
            self._store_urgent(record)
        return record

    def flush(self) -> None:
        """Commit buffered telemetry. A full disk drops the oldest telemetry (counted in
        `dropped`) rather than raising: telemetry is the lane that may give way."""
        self._db()
        self._commit_buffer()

    def pending(self, limit: int, after: dict[Lane, int] | None = None) -> list[Record]:
        """Up to `limit` of the oldest unacknowledged records: events and decisions first (merged
        in id order), then telemetry (id order). `after[lane]` skips ids up to and including it,
        for records the caller already has in flight. Buffered telemetry is committed first, so
        nothing handed out can vanish in a crash (its id could otherwise be issued again)."""
        conn = self._db()
        if limit < 0:
            raise ValueError(f"pending limit must be >= 0, got {limit}")
        marks = {lane: 0 for lane in Lane}
        for lane, mark in (after or {}).items():
            if not isinstance(lane, Lane):
                raise ValueError(f"pending 'after' keys must be Lane members, got {lane!r}")
            marks[lane] = operator.index(mark)
        self._commit_buffer()
        if limit == 0:
            return []
        with self._reading("reading pending records"):
            event, decision = (self._select(conn, lane, marks[lane], limit) for lane in URGENT_LANES)
            records = list(itertools.islice(heapq.merge(event, decision, key=lambda r: r.id), limit))
            if len(records) < limit:
                records += self._select(conn, Lane.TELEMETRY, marks[Lane.TELEMETRY], limit - len(records))
        return records

    def ack(self, ids: Iterable[int]) -> None:
        """Remove acknowledged records. Idempotent: unknown or already acked ids are ignored."""
        conn = self._db()
        wanted = sorted({operator.index(i) for i in ids})
        if not wanted:
            return
        if self._buffer:  # acked before it was even committed: forget it, nothing to delete
            gone = set(wanted)
            for r in self._buffer:
                if r.id in gone:
                    self._t.forget(r.lane, len(r.payload), committed=False, thinned=False)
            self._buffer = [r for r in self._buffer if r.id not in gone]
        with self._writing("acknowledging records"):
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                rows = conn.execute(
                    f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))}) "
                    "RETURNING id, lane, thinned, length(payload)",
                    chunk,
                ).fetchall()
                for _row_id, lane, thinned, size in rows:
                    self._t.forget(Lane(lane), size, committed=True, thinned=bool(thinned))
                if rows:
                    keep_high_water(conn, max(row[0] for row in rows))
        self._after_change()

    def stats(self) -> OutboxStats:
        """Counts and bytes from the running totals; only `oldest_wall` reads the database
        (one indexed row per lane)."""
        conn = self._db()
        t = self._t
        firsts: list[tuple[int, float]] = []
        with self._reading("reading stats"):
            for lane in Lane:
                row = conn.execute(
                    "SELECT id, created_wall FROM outbox WHERE lane = ? ORDER BY id LIMIT 1", (lane.value,)
                ).fetchone()
                if row is not None:
                    firsts.append((row[0], row[1]))
        if self._buffer:
            firsts.append((self._buffer[0].id, self._buffer[0].created_wall))
        return OutboxStats(
            records={lane.value: t.count[lane] for lane in Lane},
            bytes=t.total_bytes(),
            budget_bytes=self._budget,
            thinned=t.thinned,
            dropped=t.dropped,
            over_budget=self._t.urgent_bytes() > self._budget,
            oldest_wall=min(firsts)[1] if firsts else None,
        )

    def close(self) -> None:
        """Commit buffered telemetry and close. Idempotent."""
        conn = self._conn
        if conn is None:
            return
        try:
            self._commit_buffer()
        finally:
            try:  # fold the WAL back so the file on disk is complete by itself
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:
                log.warning("outbox.checkpoint_failed", path=str(self.path), error=str(e))
            conn.close()
            self._conn = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError(f"the outbox {self.path} is closed")
        return self._conn

    def _load(self) -> tuple[Totals, int]:
        conn = self._db()
        t = Totals.empty()
        with self._reading("loading totals"):
            rows = conn.execute(
                "SELECT lane, thinned, count(*), coalesce(sum(length(payload)), 0) FROM outbox GROUP BY lane, thinned"
            ).fetchall()
            high = conn.execute(
                "SELECT max(coalesce((SELECT max(id) FROM outbox), 0), "
                "(SELECT value FROM outbox_meta WHERE key = 'max_id'))"
            ).fetchone()[0]
        for lane_value, thinned, count, size in rows:
            lane = Lane(lane_value)
            t.count[lane] += count
            t.size[lane] += size
            if lane is Lane.TELEMETRY:
                t.tel_committed += count
                t.thinnable += count if not thinned else 0
        return t, int(high or 0)

    def _next_id(self, now: float) -> int:
        # A clock beyond 2200 is broken (a bad RTC battery can say anything): following it would
        # spend the id space, and one such id committed would block every append after it. The
        # counter alone still keeps ids increasing until the clock is sane again.
        candidate = int(now * 1000) << COUNTER_BITS if 0 < now < _SANE_WALL_MAX else 0
        new_id = max(candidate, self._last_id + 1)
        if new_id > MAX_ID:
            raise OutboxError(f"the outbox {self.path} ran out of ids (last {self._last_id}); is the clock sane?")
        self._last_id = new_id
        return new_id

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise OutboxError(f"the outbox {self.path}: {what} failed: {e}") from e

    @contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """One write transaction; on any failure the totals are put back and SQLite errors become
        `OutboxFull` (disk full) or `OutboxError` (anything else)."""
        conn = self._db()
        saved = self._t.copy()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("COMMIT")
        except BaseException as e:
            self._t = saved
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as rollback_error:  # SQLite may have rolled back by itself
                    log.debug("outbox.rollback_failed", error=str(rollback_error))
            if isinstance(e, sqlite3.Error):
                if is_disk_full(e):
                    raise OutboxFull(f"the outbox {self.path} is full (disk or size limit) while {what}") from e
                raise OutboxError(f"the outbox {self.path}: {what} failed: {e}") from e
            raise

    def _note_full(self, full: bool) -> None:
        """A full disk is a state: logged when it begins and when a record is stored again."""
        if full and not self._disk_full:
            log.warning("outbox.disk_full", path=str(self.path), telemetry=self._t.tel_committed)
        elif self._disk_full and not full:
            log.info("outbox.disk_ok", path=str(self.path))
        self._disk_full = full

    def _store_urgent(self, record: Record) -> None:
        conn = self._db()
        while True:
            try:
                with self._writing(f"storing a {record.lane.value} record"):
                    conn.execute(
                        "INSERT INTO outbox (id, lane, topic, payload, created_wall) VALUES (?, ?, ?, ?, ?)",
                        (record.id, record.lane.value, record.topic, record.payload, record.created_wall),
                    )
                    self._t.count[record.lane] += 1
                    self._t.size[record.lane] += len(record.payload)
                    enforce_budget(conn, self._t, self._budget, self._keep_one_in)
            except OutboxFull as e:
                self._note_full(True)
                if not self._shed_for_space():
                    raise OutboxFull(
                        f"the outbox {self.path} is full (disk or size limit) and has no telemetry left to give "
                        f"way: the {record.lane.value} record on {record.topic!r} was NOT stored; free disk space "
                        "(delivered records free theirs once the broker acknowledges them)"
                    ) from e
            else:
                self._note_full(False)
                self._after_change()
                return

    def _commit_buffer(self) -> None:
        if not self._buffer:
            return
        conn = self._db()
        batch = self._buffer
        while True:
            try:
                with self._writing("storing telemetry"):
                    conn.executemany(
                        "INSERT INTO outbox (id, lane, topic, payload, created_wall) VALUES (?, 'telemetry', ?, ?, ?)",
                        [(r.id, r.topic, r.payload, r.created_wall) for r in batch],
                    )
                    self._t.tel_committed += len(batch)
                    self._t.thinnable += len(batch)
                    enforce_budget(conn, self._t, self._budget, self._keep_one_in)
            except OutboxFull:
                self._note_full(True)
                if self._shed_for_space():
                    continue
                # Nothing older left to give way: this batch is the telemetry the full disk costs.
                self._t.count[Lane.TELEMETRY] -= len(batch)
                self._t.size[Lane.TELEMETRY] -= sum(len(r.payload) for r in batch)
                self._t.dropped += len(batch)
                log.warning("outbox.telemetry_dropped", path=str(self.path), reason="disk full", records=len(batch))
                self._buffer = []
                return
            self._buffer = []
            self._note_full(False)
            self._after_change()
            return

    def _shed_for_space(self) -> bool:
        """Disk full: drop a slice of the oldest committed telemetry so a newer record fits.
        False when there is none left, or even deleting failed."""
        if self._t.tel_committed == 0:
            return False
        dropped_before = self._t.dropped
        try:
            with self._writing("making room by dropping old telemetry"):
                delete_oldest_telemetry(self._db(), self._t, records=max(self._batch, self._t.tel_committed // 4))
        except OutboxFull:
            return False
        log.warning(
            "outbox.telemetry_dropped",
            path=str(self.path),
            reason="disk full",
            records=self._t.dropped - dropped_before,
        )
        return True

    def _after_change(self) -> None:
        """Log the budget states once when they begin and once when they end."""
        t = self._t
        removed = t.thinned + t.dropped
        total = t.total_bytes()
        if removed > self._removed_seen and not self._shedding:
            self._shedding = True
            log.warning(
                "outbox.shedding_telemetry",
                path=str(self.path),
                budget_bytes=self._budget,
                thinned=t.thinned,
                dropped=t.dropped,
            )
        elif self._shedding and total <= self._budget * _SHED_END:
            self._shedding = False
            log.info("outbox.shedding_ended", path=str(self.path), thinned=t.thinned, dropped=t.dropped)
        self._removed_seen = removed
        over = self._t.urgent_bytes() > self._budget
        if over != self._over_budget:
            self._over_budget = over
            if over:
                log.warning(
                    "outbox.over_budget",
                    path=str(self.path),
                    budget_bytes=self._budget,
                    urgent_bytes=self._t.urgent_bytes(),
                )
            else:
                log.info("outbox.within_budget", path=str(self.path), budget_bytes=self._budget)

    @staticmethod
    def _select(conn: sqlite3.Connection, lane: Lane, after: int, limit: int) -> list[Record]:
        rows = conn.execute(
            "SELECT id, topic, payload, created_wall FROM outbox WHERE lane = ? AND id > ? ORDER BY id LIMIT ?",
            (lane.value, after, limit),
        ).fetchall()
        return [Record(row_id, lane, topic, bytes(payload), wall) for row_id, topic, payload, wall in rows]
