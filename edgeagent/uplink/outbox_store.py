"""Opening the outbox's SQLite file: pragmas, schema, and turning a bad file into a clear error.

Why these pragmas:
- `journal_mode=WAL` with `synchronous=FULL`: a commit is on the platter (fsync of the WAL) before
  `append` returns, and a power cut during a commit leaves the previous state intact.
- `locking_mode=EXCLUSIVE`: the `Outbox` keeps running totals and the last id in memory, so a second
  process writing the same file would corrupt both; it gets a clear error at open instead.
  (It also spares the WAL's shared-memory file.)
- `journal_size_limit`: after a burst the WAL file is cut back instead of keeping its peak size on
  a small SD card.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edgeagent.uplink.outbox_types import OutboxError

SCHEMA_VERSION = 1

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,             -- assigned by Outbox: time-ordered, strictly increasing
    lane TEXT NOT NULL CHECK (lane IN ('event', 'decision', 'telemetry')),
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_wall REAL NOT NULL,
    thinned INTEGER NOT NULL DEFAULT 0  -- 1: survivor of a thinning pass, never thinned again
);
CREATE INDEX outbox_lane_id ON outbox (lane, id);
CREATE INDEX outbox_thinnable ON outbox (id) WHERE lane = 'telemetry' AND thinned = 0;
-- max_id: the highest id ever committed, kept when records are deleted, so that ids stay
-- increasing after everything was acknowledged and the wall clock stepped back.
CREATE TABLE outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO outbox_meta (key, value) VALUES ('max_id', 0);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""


def _advice(path: Path) -> str:
    return (
        f"stop edgeagent, move the file aside (mv {path} {path}.bad; also {path.name}-wal if present) "
        "and start again: a new, empty outbox is created; keep the old file for analysis"
    )


def open_database(path: Path) -> sqlite3.Connection:
    """Open or create the outbox at `path`, check it, and return the connection.

    Every failure becomes an `OutboxError` that names the file and says what to do: a corrupt file
    after a power cut is a field fault a technician must be able to act on from the log line.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutboxError(f"cannot create the directory for the outbox {path}: {e}") from e
    try:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a commit happens exactly where
        # durability is promised. timeout=0: a second daemon on the same file fails at once.
        conn = sqlite3.connect(path, isolation_level=None, timeout=0.0)
    except sqlite3.Error as e:
        raise OutboxError(f"cannot open the outbox {path}: {e}") from e
    try:
        _configure(conn, path)
        _ensure_schema(conn, path)
        _check_integrity(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute(f"PRAGMA journal_size_limit = {4 * 2**20}")
    except sqlite3.OperationalError as e:
        if "locked" in str(e):
            raise OutboxError(f"the outbox {path} is in use by another process (is another edgeagent running?)") from e
        raise OutboxError(f"cannot open the outbox {path}: {e}; {_advice(path)}") from e
    except sqlite3.DatabaseError as e:
        raise OutboxError(f"the outbox {path} is not a readable database ({e}); {_advice(path)}") from e
    if str(mode).lower() != "wal":
        raise OutboxError(
            f"the outbox {path} cannot use write-ahead logging (journal mode {mode!r}); "
            "put the state directory on a local filesystem"
        )


def _ensure_schema(conn: sqlite3.Connection, path: Path) -> None:
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and not tables:
            conn.executescript(_SCHEMA)
            return
    except sqlite3.OperationalError as e:
        if "locked" in str(e):
            raise OutboxError(f"the outbox {path} is in use by another process (is another edgeagent running?)") from e
        raise OutboxError(f"cannot read the outbox {path} ({e}); {_advice(path)}") from e
    except sqlite3.DatabaseError as e:
        raise OutboxError(f"the outbox {path} is not a readable database ({e}); {_advice(path)}") from e
    if version != SCHEMA_VERSION or not {"outbox", "outbox_meta"} <= tables:
        raise OutboxError(
            f"{path} is not an edgeagent outbox of schema {SCHEMA_VERSION} "
            f"(user_version {version}, tables {sorted(tables)}); check storage.dir, or {_advice(path)}"
        )


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    """`quick_check` at open: finding a damaged file now, with a clear message, beats failing on
    some later append with the uplink's records half-read."""
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        raise OutboxError(f"the outbox {path} is corrupt ({e}); {_advice(path)}") from e
    problems = [line for row in rows for line in str(row[0]).splitlines() if not line.startswith("***")]
    if problems != ["ok"]:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise OutboxError(f"the outbox {path} is corrupt ({'; '.join(problems[:3])}{more}); {_advice(path)}")


def is_disk_full(error: sqlite3.Error) -> bool:
    """SQLITE_FULL: the disk is full, or the database hit its max_page_count."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return bool((code & 0xFF) == sqlite3.SQLITE_FULL)
    return "database or disk is full" in str(error)
