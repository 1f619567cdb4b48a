"""The outbox's byte budget: running totals and the stated telemetry policy.

Policy (DESIGN.md principle 3: telemetry may be thinned by a stated policy, events and decisions
never are): when pending payload bytes exceed the budget,
1. thin: in the oldest half of the never-thinned telemetry, keep one record in `keep_one_in`
   (the first of each run) and delete the others; the survivors are marked and never thinned
   again, so old data ends at a known, even resolution, and recent data is the last to go;
2. drop: if every telemetry record was thinned once and it is still over, delete the oldest
   telemetry until the total is back within budget.
Thinning half at a time (at most THIN_PASS_MAX rows) leaves room for many appends before the next
pass, without making one commit take seconds on a large outbox. All of it runs inside
the caller's write transaction, on totals kept in memory, so the common case (under budget) costs
one comparison and no query.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from edgeagent.uplink.outbox_types import URGENT_LANES, Lane

THIN_PASS_MAX = 8192  # rows per thinning pass: bounds the time one commit can take


@dataclass(slots=True)
class Totals:
    """What is pending, kept in step with every write. The `Outbox` copies it before a transaction
    and puts the copy back if the transaction rolls back, so it always describes what is committed
    plus the telemetry still buffered in memory."""

    count: dict[Lane, int]
    size: dict[Lane, int]
    tel_committed: int  # telemetry rows in the database (the others are in the buffer)
    thinnable: int  # committed telemetry rows never thinned
    thinned: int  # since open
    dropped: int  # since open

    @classmethod
    def empty(cls) -> Totals:
        return cls({lane: 0 for lane in Lane}, {lane: 0 for lane in Lane}, 0, 0, 0, 0)

    def copy(self) -> Totals:
        return Totals(dict(self.count), dict(self.size), self.tel_committed, self.thinnable, self.thinned, self.dropped)

    def total_bytes(self) -> int:
        return sum(self.size.values())

    def urgent_bytes(self) -> int:
        return sum(self.size[lane] for lane in URGENT_LANES)

    def forget(self, lane: Lane, size: int, *, committed: bool, thinned: bool) -> None:
        """One record left the outbox (acknowledged, or dropped from the buffer)."""
        self.count[lane] -= 1
        self.size[lane] -= size
        if lane is Lane.TELEMETRY and committed:
            self.tel_committed -= 1
            self.thinnable -= 0 if thinned else 1


def keep_high_water(conn: sqlite3.Connection, deleted_id: int) -> None:
    """Remember the highest id ever committed before deleting it: ids must keep increasing even
    when the table is empty and the wall clock stepped back."""
    conn.execute("UPDATE outbox_meta SET value = max(value, ?) WHERE key = 'max_id'", (deleted_id,))


def enforce_budget(conn: sqlite3.Connection, t: Totals, budget_bytes: int, keep_one_in: int) -> None:
    """Bring pending bytes within `budget_bytes` by the policy above; only committed telemetry is
    touched (buffered telemetry is newer, and is judged when its batch commits)."""
    while t.total_bytes() > budget_bytes and t.thinnable > 0:
        thin_pass(conn, t, keep_one_in)
    excess = t.total_bytes() - budget_bytes
    if excess > 0 and t.tel_committed > 0:
        delete_oldest_telemetry(conn, t, excess=excess)


def thin_pass(conn: sqlite3.Connection, t: Totals, keep_one_in: int) -> None:
    """Thin the oldest half of the never-thinned telemetry, keeping one record in `keep_one_in`."""
    # The oldest half (a single record is "half" of one, so the loop always ends), but at most
    # THIN_PASS_MAX rows: at 64 MiB a half pass takes a second, during which events wait.
    n = min((t.thinnable + 1) // 2, THIN_PASS_MAX)
    rows = conn.execute(
        "SELECT id, length(payload) FROM outbox WHERE lane = 'telemetry' AND thinned = 0 ORDER BY id LIMIT ?",
        (n,),
    ).fetchall()
    if not rows:  # totals out of step with the table (cannot happen); stop rather than spin
        t.thinnable = 0
        return
    keep = rows[::keep_one_in]
    gone = [row for i, row in enumerate(rows) if i % keep_one_in]
    conn.executemany("UPDATE outbox SET thinned = 1 WHERE id = ?", [(row[0],) for row in keep])
    conn.executemany("DELETE FROM outbox WHERE id = ?", [(row[0],) for row in gone])
    t.thinnable -= len(rows)
    t.tel_committed -= len(gone)
    t.count[Lane.TELEMETRY] -= len(gone)
    t.size[Lane.TELEMETRY] -= sum(row[1] for row in gone)
    t.thinned += len(gone)
    if gone:
        keep_high_water(conn, max(row[0] for row in gone))


def delete_oldest_telemetry(conn: sqlite3.Connection, t: Totals, *, excess: int = 0, records: int = 0) -> int:
    """Drop the oldest committed telemetry, enough to cover `excess` bytes and at least `records`
    rows (fewer if there are not that many), counted in `t.dropped`. Returns the number dropped."""
    covered = n = thinnable = 0
    last = 0
    while covered < excess or n < records:
        rows = conn.execute(
            "SELECT id, thinned, length(payload) FROM outbox WHERE lane = 'telemetry' AND id > ? ORDER BY id LIMIT 512",
            (last,),
        ).fetchall()
        if not rows:
            break
        for row_id, thinned, size in rows:
            covered += size
            n += 1
            thinnable += 0 if thinned else 1
            last = row_id
            if covered >= excess and n >= records:
                break
    if n == 0:
        return 0
    conn.execute("DELETE FROM outbox WHERE lane = 'telemetry' AND id <= ?", (last,))
    keep_high_water(conn, last)
    t.tel_committed -= n
    t.thinnable -= thinnable
    t.count[Lane.TELEMETRY] -= n
    t.size[Lane.TELEMETRY] -= covered
    t.dropped += n
    return n
