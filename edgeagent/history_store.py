"""The on-disk point history: one row of hourly aggregates (mean, min, max, count) per point and hour.

`<storage.dir>/history.sqlite`, in WAL mode with a busy timeout, *without* the outbox's exclusive
lock: `edgeagent history import` writes to it while the daemon runs. Every row says where it came
from (`live` from the daemon, `import` from a historian export): live data is never overwritten by an
import unless the person asks (`--replace`), and a live hour that meets an imported one replaces it.

A connection belongs to one thread at a time: the daemon uses it from one worker thread only.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

HOUR_S = 3600
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 10.0
MAX_QUERY_HOURS = 24 * 366 * 20
"""`hourly()` returns dense arrays: a span longer than this is a caller's mistake, not a query."""

FILE_NAME = "history.sqlite"

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS hourly (
    point TEXT NOT NULL,
    t_hour INTEGER NOT NULL,            -- start of the hour, Unix seconds (UTC), a multiple of 3600
    mean REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    source TEXT NOT NULL CHECK (source IN ('live', 'import')),
    PRIMARY KEY (point, t_hour)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hourly_t ON hourly (t_hour);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""

# A live hour written twice (the daemon restarted within the hour, or flushed a partial hour at stop)
# is merged; a live hour meeting an imported one replaces it. SQLite evaluates every SET expression
# against the row as it was, so the running mean uses the old count.
_MERGE_LIVE = """
INSERT INTO hourly (point, t_hour, mean, min, max, count, source) VALUES (?, ?, ?, ?, ?, ?, 'live')
ON CONFLICT (point, t_hour) DO UPDATE SET
    mean = CASE WHEN source = 'live' THEN (mean * count + excluded.mean * excluded.count) / (count + excluded.count)
           ELSE excluded.mean END,
    min = CASE WHEN source = 'live' THEN min(min, excluded.min) ELSE excluded.min END,
    max = CASE WHEN source = 'live' THEN max(max, excluded.max) ELSE excluded.max END,
    count = CASE WHEN source = 'live' THEN count + excluded.count ELSE excluded.count END,
    source = 'live'
"""

_PUT_IMPORT = """
INSERT INTO hourly (point, t_hour, mean, min, max, count, source) VALUES (?, ?, ?, ?, ?, ?, 'import')
ON CONFLICT (point, t_hour) DO UPDATE SET
    mean = excluded.mean, min = excluded.min, max = excluded.max, count = excluded.count, source = 'import'
"""


class HistoryError(Exception):
    """The history file cannot be opened, read or written; the message names the file and the cause."""


class LiveDataConflict(HistoryError):
    """An import would overwrite hours the daemon recorded itself."""

    def __init__(self, conflicts: dict[str, list[int]]) -> None:
        self.conflicts = conflicts
        parts = [f"{point}: {len(hours)} hour(s) from {_iso(min(hours))}" for point, hours in sorted(conflicts.items())]
        super().__init__("these hours already hold live data recorded by the daemon (" + "; ".join(parts)
                         + "); nothing was imported: use --replace to overwrite them")


@dataclass(frozen=True, slots=True)
class HourRow:
    """One finished hour of one point."""

    point: str
    t_hour: int
    mean: float
    min: float
    max: float
    count: int


@dataclass(frozen=True, slots=True, eq=False)
class HourlySeries:
    """Dense hourly arrays over [since, until): `t_hour_utc` (Unix s, hour starts), NaN and count 0 in gaps."""

    point: str
    t_hour_utc: npt.NDArray[np.int64]
    mean: npt.NDArray[np.float64]
    min: npt.NDArray[np.float64]
    max: npt.NDArray[np.float64]
    count: npt.NDArray[np.int64]

    @property
    def gaps(self) -> int:
        return int(np.count_nonzero(self.count == 0))


def hour_of(t_s: float) -> int:
    """The start (Unix s) of the UTC hour holding `t_s`."""
    return math.floor(t_s / HOUR_S) * HOUR_S


def _iso(t_hour: int) -> str:
    return datetime.fromtimestamp(t_hour, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def _seconds(t: float | datetime) -> float:
    if isinstance(t, datetime):
        if t.tzinfo is None:
            raise ValueError(f"naive datetime {t.isoformat()}: give a time zone (history is kept in UTC)")
        return t.timestamp()
    return float(t)


class HistoryStore:
    """A connection to the history file. Not thread-safe: use it from one thread at a time."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_S,
                                         check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise HistoryError(f"cannot open the history {self.path}: {exc}") from exc
        try:
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise HistoryError(f"the history {self.path} cannot use write-ahead logging (journal mode "
                                   f"{mode!r}); put the state directory on a local filesystem")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._conn.executescript(_SCHEMA)
            elif version != SCHEMA_VERSION:
                raise HistoryError(f"{self.path} has history schema {version}, this edgeagent reads "
                                   f"{SCHEMA_VERSION}; move the file aside to start a new history")
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise HistoryError(f"the history {self.path} is not a readable database ({exc}); stop edgeagent, "
                               f"move it aside (mv {self.path} {self.path}.bad) and start again") from exc
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _rows(self, rows: Iterable[HourRow]) -> list[tuple[str, int, float, float, float, int]]:
        return [(r.point, r.t_hour, r.mean, r.min, r.max, r.count) for r in rows]

    def merge_live(self, rows: Sequence[HourRow]) -> None:
        """Add the daemon's aggregates in one transaction (merged into live hours already there)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(_MERGE_LIVE, self._rows(rows))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot write to the history {self.path}: {exc}") from exc

    def put_imported(self, rows: Sequence[HourRow], replace_live: bool, dry_run: bool = False) -> int:
        """Write imported hours all or nothing; returns how many live hours were replaced.

        Raises `LiveDataConflict` (writing nothing) when an hour already holds live data and not
        `replace_live`. The check and the write share one transaction, so a daemon writing meanwhile
        cannot slip a live hour in between.
        """
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                conflicts: dict[str, list[int]] = {}
                for r in rows:
                    hit = self._conn.execute("SELECT 1 FROM hourly WHERE point = ? AND t_hour = ? AND source = 'live'",
                                             (r.point, r.t_hour)).fetchone()
                    if hit:
                        conflicts.setdefault(r.point, []).append(r.t_hour)
                if conflicts and not replace_live:
                    raise LiveDataConflict(conflicts)
                if not dry_run:
                    self._conn.executemany(_PUT_IMPORT, self._rows(rows))
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot write to the history {self.path}: {exc}") from exc
        return sum(len(h) for h in conflicts.values())

    def prune(self, before_s: float) -> int:
        """Delete every hour that starts before `before_s`; returns how many rows went."""
        try:
            cur = self._conn.execute("DELETE FROM hourly WHERE t_hour < ?", (hour_of(before_s),))
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot prune the history {self.path}: {exc}") from exc
        return int(cur.rowcount)

    def hourly(self, point: str, since: float | datetime, until: float | datetime) -> HourlySeries:
        """Every hour starting in [hour_of(since), until), oldest first; missing hours are NaN with count 0."""
        start = hour_of(_seconds(since))
        end_s = _seconds(until)
        n = max(0, math.ceil((end_s - start) / HOUR_S))
        if n > MAX_QUERY_HOURS:
            raise ValueError(f"history span of {n} hours is too long (at most {MAX_QUERY_HOURS})")
        t = start + HOUR_S * np.arange(n, dtype=np.int64)
        mean = np.full(n, np.nan)
        lo = np.full(n, np.nan)
        hi = np.full(n, np.nan)
        count = np.zeros(n, dtype=np.int64)
        try:
            rows = self._conn.execute(
                "SELECT t_hour, mean, min, max, count FROM hourly WHERE point = ? AND t_hour >= ? AND t_hour < ? "
                "ORDER BY t_hour", (point, start, start + n * HOUR_S)).fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot read the history {self.path}: {exc}") from exc
        if rows:
            data = np.array(rows, dtype=np.float64)
            idx = ((data[:, 0].astype(np.int64) - start) // HOUR_S)
            mean[idx], lo[idx], hi[idx] = data[:, 1], data[:, 2], data[:, 3]
            count[idx] = data[:, 4].astype(np.int64)
        return HourlySeries(point, t, mean, lo, hi, count)

    def sources(self, point: str) -> dict[int, str]:
        """Hour start -> 'live' | 'import' for one point (diagnosis and tests)."""
        rows = self._conn.execute("SELECT t_hour, source FROM hourly WHERE point = ?", (point,)).fetchall()
        return {int(t): str(s) for t, s in rows}
