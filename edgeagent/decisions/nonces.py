"""The nonce store: every (key id, nonce) a command was accepted with, on disk, so a command runs once.

A replayed command must be refused also after a restart or a power cut, so the record is durable before
`seen_or_record` returns (SQLite, WAL, synchronous=FULL: the WAL is fsynced at each commit). Recording is
one INSERT that does nothing on a conflict: one statement, one transaction, so two callers (threads or
processes) can never both see a nonce as new.

A record is kept until the command's `expires_at` plus the clock-skew tolerance — after that the verifier
refuses the command as expired anyway — plus `prune_grace_s`, so that a wall clock stepped back a little
(an NTP correction) does not reopen the window. Pruning trusts the wall clock: a clock that jumps forward
by more than the grace and back again would forget nonces early; the time checks then still hold, a replay
inside the restored window would not be caught.

A damaged file is a fault, never a reason to accept: the store keeps the fault (and logs it once), and
every later `seen_or_record` raises `NonceStoreError`, so the verifier refuses every command with the
reason until a technician moves the file aside and restarts.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path
from types import TracebackType

import structlog

log = structlog.get_logger("edgeagent.decisions.nonces")

FILENAME = "nonces.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE nonces (
    key_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    keep_until REAL NOT NULL,           -- Unix time after which the record may be pruned
    PRIMARY KEY (key_id, nonce)
) WITHOUT ROWID;
CREATE INDEX nonces_keep_until ON nonces (keep_until);
PRAGMA user_version = {SCHEMA_VERSION};
COMMIT;
"""
# SQLite result codes after which the file cannot be trusted again in this run.
_FATAL_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_IOERR})


class NonceStoreError(Exception):
    """The replay check cannot be made; the message says why and what to do."""


class NonceStore:
    """Persistent set of (key_id, nonce). Opening never raises for a bad file: the problem becomes
    `fault`, and every `seen_or_record` then raises `NonceStoreError` (fail closed)."""

    def __init__(self, path: str | Path, *, prune_grace_s: float = 3600.0, prune_every_s: float = 600.0) -> None:
        if not (math.isfinite(prune_grace_s) and prune_grace_s >= 0):
            raise ValueError(f"prune_grace_s must be a finite number >= 0, got {prune_grace_s}")
        if not (math.isfinite(prune_every_s) and prune_every_s >= 0):
            raise ValueError(f"prune_every_s must be a finite number >= 0, got {prune_every_s}")
        self.path = Path(path)
        self.prune_grace_s = prune_grace_s
        self.prune_every_s = prune_every_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._fault: str | None = None
        self._last_prune = -math.inf
        try:
            self._conn = _open(self.path)
        except NonceStoreError as exc:
            self._set_fault(str(exc))

    @classmethod
    def in_state_dir(cls, state_dir: str | Path) -> NonceStore:
        return cls(Path(state_dir) / FILENAME)

    @property
    def fault(self) -> str | None:
        """Why the store cannot be used (then every command is refused), or None."""
        return self._fault

    def seen_or_record(self, key_id: str, nonce: str, keep_until: float, now: float) -> bool:
        """True if (key_id, nonce) was recorded before; otherwise record it durably (kept until Unix
        time `keep_until` + the grace) and return False. Atomic. Raises NonceStoreError when it cannot
        tell, in which case nothing may run."""
        if not (math.isfinite(keep_until) and math.isfinite(now)):
            raise ValueError(f"keep_until and now must be finite Unix times, got {keep_until}, {now}")
        with self._lock:
            conn = self._usable()
            try:
                cur = conn.execute(
                    "INSERT INTO nonces (key_id, nonce, keep_until) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (key_id, nonce, keep_until + self.prune_grace_s),
                )
                seen = cur.rowcount == 0
                if not seen and now - self._last_prune >= self.prune_every_s:
                    self._prune(conn, now)
            except sqlite3.Error as exc:
                raise self._failure("cannot record the nonce", exc) from None
            return seen

    def prune(self, now: float) -> int:
        """Forget the records whose time ran out at Unix time `now`; how many were removed."""
        with self._lock:
            conn = self._usable()
            try:
                return self._prune(conn, now)
            except sqlite3.Error as exc:
                raise self._failure("cannot prune old nonces", exc) from None

    def __len__(self) -> int:
        with self._lock:
            conn = self._usable()
            try:
                return int(conn.execute("SELECT count(*) FROM nonces").fetchone()[0])
            except sqlite3.Error as exc:
                raise self._failure("cannot count nonces", exc) from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
                if self._fault is None:
                    self._fault = f"the nonce store {self.path} is closed"

    def __enter__(self) -> NonceStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _prune(self, conn: sqlite3.Connection, now: float) -> int:
        removed = conn.execute("DELETE FROM nonces WHERE keep_until < ?", (now,)).rowcount
        self._last_prune = now
        return int(removed)

    def _usable(self) -> sqlite3.Connection:
        if self._fault is not None or self._conn is None:
            raise NonceStoreError(self._fault or f"the nonce store {self.path} is not open")
        return self._conn

    def _failure(self, what: str, exc: sqlite3.Error) -> NonceStoreError:
        code = getattr(exc, "sqlite_errorcode", None)
        message = f"{what} in {self.path}: {exc}"
        if code is not None and (code & 0xFF) in _FATAL_CODES:
            message = f"the nonce store {self.path} is damaged ({exc}); {_advice(self.path)}"
            self._set_fault(message)
        return NonceStoreError(message)

    def _set_fault(self, message: str) -> None:
        self._fault = message
        log.error("decisions.nonce_store_fault", path=str(self.path), error=message)
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _advice(path: Path) -> str:
    return (f"every signed command is refused until it is fixed: stop edgeagent, move the file aside "
            f"(mv {path} {path}.bad; also {path.name}-wal and -shm if present) and start again")


def _open(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: each statement commits by itself, exactly where durability is promised.
        conn = sqlite3.connect(path, isolation_level=None, timeout=1.0, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise NonceStoreError(f"cannot open the nonce store {path}: {exc}; {_advice(path)}") from None
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = FULL")
        if str(mode).lower() != "wal":
            raise NonceStoreError(f"the nonce store {path} cannot use write-ahead logging (journal mode {mode!r}); "
                                  "put the state directory on a local filesystem")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 and not tables:
            conn.executescript(_SCHEMA)
        elif version != SCHEMA_VERSION or "nonces" not in tables:
            raise NonceStoreError(f"{path} is not an edgeagent nonce store of schema {SCHEMA_VERSION} "
                                  f"(user_version {version}, tables {sorted(tables)}); {_advice(path)}")
        rows = conn.execute("PRAGMA quick_check").fetchall()
        problems = [line for row in rows for line in str(row[0]).splitlines()]
        if problems != ["ok"]:
            raise NonceStoreError(f"the nonce store {path} is damaged ({'; '.join(problems[:3])}); {_advice(path)}")
    except sqlite3.Error as exc:
        conn.close()
        raise NonceStoreError(f"the nonce store {path} is not a readable database ({exc}); {_advice(path)}") from None
    except NonceStoreError:
        conn.close()
        raise
    return conn
