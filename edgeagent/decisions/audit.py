"""The tamper-evident audit log: append-only JSON lines, each holding the sha256 of the line before.

On-disk format (what an upstream verifier re-implements):

* The log is a folder of files `audit-000001.jsonl`, `audit-000002.jsonl`, … (six or more digits, numbered
  without gaps), read in number order as one sequence of records. Each record is one line terminated by
  `\\n` (0x0A), encoded in UTF-8.
* A record is the canonical JSON of `{"seq": n, "t": time, "kind": kind, "data": {...}, "prev": hex}`:
  `json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)`. So keys
  are sorted (the line starts with `{"data":`), there is no whitespace, non-ASCII text is written as itself.
  `seq` counts from 1 and grows by exactly 1 per record; `t` is the wall time in UTC, ISO 8601 with
  microseconds and a `Z` (informative only: wall clocks jump); `kind` names what happened
  (`config.loaded`, `setpoint.written`, …).
* The record's hash is `sha256(line)`, lower-case hex, where `line` is the record's exact bytes **without**
  the terminating newline. `prev` of a record is the hash of the record before it; the first record of all
  (seq 1) has `prev` = 64 zeros. The chain runs across files: the first record of a file holds the hash of
  the last line of the file before.
* A file is never rewritten. A new file starts when the next record would take the current one past
  `max_bytes` (a larger record gets a file of its own). With `keep_files=N`, a rotation that leaves more
  than N files first appends an `audit.retention` record (`{"removed_files": [...], "chain_starts_at_seq":
  K}`) to the new file and then deletes the oldest whole files, so a chain that starts at seq K > 1 is
  explained by a record inside the chain itself.
* The head (seq, hash) of the last record is what the daemon publishes upstream. On the box, a truncated
  tail (the last records, or the newest files, removed) still looks like a valid shorter chain: only a
  comparison with a published head (`verify(..., expected_head=...)`) shows it.

Crash safety: `append` writes the line and its newline with one `write` and fsyncs the file (and the folder
when it created a file) before it returns, so a record that `append` returned is on disk. A crash can leave
at most one torn record at the end of the newest file (no newline, or not JSON); no caller was told it was
written. Opening the log moves those bytes aside into `audit-torn-<time>.bin`, truncates the file to the end
of the last complete record and appends an `audit.recovered` record saying so.

Writes are synchronous file I/O with an fsync, which can take hundreds of milliseconds on a worn SD card: on
the event loop, use `append_async` (one worker thread, calls kept in order) or accept the cost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

__all__ = [
    "DEFAULT_MAX_BYTES",
    "GENESIS_PREV",
    "AuditDataError",
    "AuditError",
    "AuditLog",
    "AuditRecord",
    "audit_files",
    "canonical_line",
    "file_name",
    "is_json_object",
    "line_hash",
    "plain_data",
]

GENESIS_PREV: Final = "0" * 64
DEFAULT_MAX_BYTES: Final = 8 * 1024 * 1024
FILE_RE: Final = re.compile(r"audit-(\d{6,})\.jsonl")
KIND_RE: Final = re.compile(r"[a-z][a-z0-9_]*(?:[.-][a-z0-9_]+)*")
RECORD_KEYS: Final = frozenset({"seq", "t", "kind", "data", "prev"})
_TAIL_CHUNK = 64 * 1024


class AuditError(Exception):
    """The audit log cannot be opened or written (damaged tail, failed write)."""


class AuditDataError(ValueError):
    """A record's kind or data cannot be written as canonical JSON; nothing was written."""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One written record: its `seq`, its hash (sha256 hex of `line`) and the line without its newline."""

    seq: int
    hash: str
    line: str


def canonical_line(record: Mapping[str, Any]) -> str:
    """The canonical JSON text of a record (or any JSON value): sorted keys, no spaces, UTF-8 as itself."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def line_hash(line: bytes) -> str:
    """sha256 hex of a line's exact bytes, without its newline: the next record's `prev`."""
    return hashlib.sha256(line).hexdigest()


def file_name(number: int) -> str:
    return f"audit-{number:06d}.jsonl"


def audit_files(directory: Path) -> list[tuple[int, Path]]:
    """The audit files in `directory`, as (number, path) sorted by number; other files are ignored."""
    found = []
    for entry in directory.iterdir():
        match = FILE_RE.fullmatch(entry.name)
        if match and entry.is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def plain_data(value: object, where: str = "data") -> Any:
    """A plain-JSON copy of `value` (mappings as dicts, tuples as lists), refusing what JSON cannot carry
    exactly and naming where it sits (`data.values[2]`)."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AuditDataError(f"{where} is {value!r}: audit data must be finite numbers")
        return value
    if isinstance(value, Mapping):
        copy = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditDataError(f"{where} has the key {key!r} ({type(key).__name__}): keys must be strings")
            copy[key] = plain_data(item, f"{where}.{key}")
        return copy
    if isinstance(value, list | tuple):
        return [plain_data(item, f"{where}[{i}]") for i, item in enumerate(value)]
    raise AuditDataError(f"{where} is a {type(value).__name__} ({value!r:.60}): audit data must be plain JSON "
                         "(dict, list, str, int, finite float, bool, None)")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view):]


class AuditLog:
    """The append-only, hash-chained audit log in `directory` (created 0700; files 0600).

    `fsync=False` is for tests and benchmarks only: without it a power cut may lose records `append` returned.
    """

    def __init__(self, directory: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, fsync: bool = True,
                 keep_files: int | None = None) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        if keep_files is not None and keep_files < 1:
            raise ValueError(f"keep_files must be at least 1 (or None to keep all), not {keep_files}")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.keep_files = keep_files
        self._fsync = fsync
        self._lock = threading.Lock()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._fd: int | None = None
        self._failed: str | None = None
        self._closed = False
        if not self.directory.is_dir():
            self.directory.mkdir(mode=0o700, parents=True)
            os.chmod(self.directory, 0o700)
            if fsync:
                _fsync_dir(self.directory.parent)
        self._seq, self._hash, self._number, self._size, torn = self._resume()
        if torn is not None:
            self.append("audit.recovered", torn)

    # -- public ---------------------------------------------------------------------------------

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record: (0, 64 zeros) for an empty log. Published upstream."""
        with self._lock:
            return self._seq, self._hash

    @property
    def current_file(self) -> Path:
        return self.directory / file_name(self._number)

    def append(self, kind: str, data: Mapping[str, Any]) -> AuditRecord:
        """Write one record and fsync it; returns when it is on disk. Thread-safe.

        Raises AuditDataError (nothing written) for a bad kind or data that is not plain, finite JSON,
        AuditError if the log is closed or a write failed earlier and could not be undone, OSError when the
        write itself fails (the file is then cut back to its last complete record).
        """
        if not isinstance(kind, str) or not KIND_RE.fullmatch(kind):
            raise AuditDataError(f"audit kind {kind!r} must be dotted lower-case words, like 'setpoint.written'")
        if not isinstance(data, Mapping):
            raise AuditDataError(f"audit data for {kind!r} must be a mapping, not {type(data).__name__}")
        plain = plain_data(data)
        with self._lock:
            if self._closed:
                raise AuditError(f"the audit log in {self.directory} is closed")
            if self._failed is not None:
                raise AuditError(self._failed)
            line = self._encode(kind, plain)
            if self._size > 0 and self._size + len(line) + 1 > self.max_bytes and self._rotate():
                line = self._encode(kind, plain)  # an audit.retention record went first: new seq and prev
            return self._write(line)

    async def append_async(self, kind: str, data: Mapping[str, Any]) -> AuditRecord:
        """`append` on the log's own worker thread, in call order, so the event loop never waits for an fsync.

        One worker thread (not `asyncio.to_thread`'s pool) keeps records in the order the calls were made.
        Cancelled before the worker reached it, the record is not written; once it is being written it
        completes and only the caller stops waiting.
        """
        with self._lock:
            if self._closed:
                raise AuditError(f"the audit log in {self.directory} is closed")
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="audit")
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, self.append, kind, data)

    def close(self) -> None:
        """Finish queued `append_async` calls, then close the file; later appends raise AuditError."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        with self._lock:
            self._closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- writing --------------------------------------------------------------------------------

    def _encode(self, kind: str, data: Mapping[str, Any]) -> bytes:
        record = {"seq": self._seq + 1, "t": utc_now_iso(), "kind": kind, "data": data, "prev": self._hash}
        try:
            return canonical_line(record).encode("utf-8")
        except (TypeError, ValueError) as exc:  # e.g. a lone surrogate, an int past Python's digit limit
            raise AuditDataError(f"audit data for {kind!r} cannot be written as JSON: {exc}") from None

    def _open_current(self) -> int:
        if self._fd is None:
            path = self.current_file
            created = not path.exists()
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if created and self._fsync:
                _fsync_dir(self.directory)
        return self._fd

    def _write(self, line: bytes) -> AuditRecord:
        fd = self._open_current()
        try:
            _write_all(fd, line + b"\n")
            if self._fsync:
                os.fsync(fd)
        except OSError:
            self._undo_partial_write(fd)
            raise
        self._size += len(line) + 1
        self._seq += 1
        self._hash = line_hash(line)
        return AuditRecord(self._seq, self._hash, line.decode("utf-8"))

    def _undo_partial_write(self, fd: int) -> None:
        """Cut a failed write back to the last complete record, or refuse further writes if that fails too."""
        try:
            os.ftruncate(fd, self._size)
            if self._fsync:
                os.fsync(fd)
        except OSError as exc:
            self._failed = (f"{self.current_file} may end in a torn record after a failed write that could not be "
                            f"undone ({exc.strerror or exc}); reopen the audit log to recover it")

    def _rotate(self) -> bool:
        """Start the next file; with `keep_files`, record and delete the oldest files. True if it wrote."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._number += 1
        self._size = 0
        if self.keep_files is None:
            return False
        present = audit_files(self.directory)
        numbers = [n for n, _ in present if n <= self._number]
        if self._number not in numbers:
            numbers.append(self._number)
        doomed = [n for n in numbers if n <= self._number - self.keep_files]
        if not doomed:
            return False
        kept = min(n for n in numbers if n not in doomed)
        start_seq = self._seq + 1 if kept == self._number else self._first_seq(kept)
        removed = [file_name(n) for n in doomed]
        # The record comes first: a crash before the deletion leaves more files than it claims, never fewer.
        self._write(self._encode("audit.retention", {"removed_files": removed, "chain_starts_at_seq": start_seq}))
        for name in removed:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
        if self._fsync:
            _fsync_dir(self.directory)
        return True

    def _first_seq(self, number: int) -> int:
        with (self.directory / file_name(number)).open("rb") as f:
            first = f.readline()
        return _parse_tail_record(first.rstrip(b"\n"), self.directory / file_name(number))[0]

    # -- resuming -------------------------------------------------------------------------------

    def _resume(self) -> tuple[int, str, int, int, dict[str, Any] | None]:
        """(seq, hash, file number, its size, the audit.recovered data or None) from the newest files."""
        files = audit_files(self.directory)
        if not files:
            return 0, GENESIS_PREV, 1, 0, None
        number, path = files[-1]
        torn = self._cut_torn_tail(path)
        for _, candidate in reversed(files):
            last = _last_line(candidate)
            if last is not None:
                seq, digest = _parse_tail_record(last, candidate)
                return seq, digest, number, path.stat().st_size, torn
        return 0, GENESIS_PREV, number, path.stat().st_size, torn

    def _cut_torn_tail(self, path: Path) -> dict[str, Any] | None:
        """Move a torn last record (no newline, or not JSON) aside and truncate to the last complete one."""
        size = path.stat().st_size
        cut_at = _end_of_last_good_line(path, size)
        if cut_at == size:
            return None
        with path.open("rb") as f:
            f.seek(cut_at)
            torn = f.read()
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        for attempt in range(1000):
            aside = self.directory / f"audit-torn-{stamp}{f'-{attempt}' if attempt else ''}.bin"
            try:
                fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            break
        else:
            raise AuditError(f"cannot find a free name for the torn bytes of {path.name} in {self.directory}")
        try:
            _write_all(fd, torn)
            os.fsync(fd)
        finally:
            os.close(fd)
        # Saved first, cut second: a crash in between keeps the torn bytes in the log, to be cut again.
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, cut_at)
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(self.directory)
        return {"file": path.name, "cut_bytes": len(torn), "at_offset": cut_at, "kept_in": aside.name}


def _read_tail(path: Path, size: int) -> tuple[int, bytes]:
    """(offset, bytes) of the file's end holding at least its last two newlines, or the whole file."""
    with path.open("rb") as f:
        start = size
        data = b""
        while start > 0 and data.count(b"\n") < 3:
            step = min(start, max(_TAIL_CHUNK, len(data)))
            start -= step
            f.seek(start)
            data = f.read(step) + data
    return start, data


def _end_of_last_good_line(path: Path, size: int) -> int:
    """Offset just past the last complete record; what lies beyond it is one torn record.

    Torn means: bytes after the last newline (a write cut short), or a last line that is not JSON (a crash
    that left garbage, e.g. zeros, in the file's last block). More damage than one such record is no crash.
    """
    start, data = _read_tail(path, size)
    complete_end = data.rfind(b"\n") + 1  # end of the last newline-terminated line; 0 if there is none
    last_start = data.rfind(b"\n", 0, max(complete_end - 1, 0)) + 1
    last_ok = complete_end > 0 and is_json_object(data[last_start:complete_end - 1])
    if complete_end < len(data):  # an unterminated tail
        if complete_end == 0 or last_ok:
            return start + complete_end
        return _refuse_tail(path)
    if last_ok:
        return size
    if last_start == 0 and start == 0:  # the only line is torn
        return 0
    before_start = data.rfind(b"\n", 0, last_start - 1) + 1
    if is_json_object(data[before_start:last_start - 1]):
        return start + last_start
    return _refuse_tail(path)


def _refuse_tail(path: Path) -> int:
    raise AuditError(f"{path} ends in more than one damaged line, which a crash does not leave: refusing to write "
                     "after it; run `edgeagent audit verify` on the folder")


def is_json_object(line: bytes) -> bool:
    """Whether a line parses as a JSON object: what a torn record (cut short, or garbage) does not."""
    try:
        return isinstance(json.loads(line.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return False


def _last_line(path: Path) -> bytes | None:
    size = path.stat().st_size
    if size == 0:
        return None
    _, data = _read_tail(path, size)
    if not data.endswith(b"\n"):
        raise AuditError(f"{path} does not end with a complete record although a newer file exists")
    return data[data.rfind(b"\n", 0, len(data) - 1) + 1:-1]


def _parse_tail_record(line: bytes, path: Path) -> tuple[int, str]:
    try:
        record = json.loads(line.decode("utf-8"))
        seq = record["seq"]
        if type(seq) is not int or seq < 1:
            raise ValueError(f"seq {seq!r}")
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as exc:
        raise AuditError(f"{path}: its last record cannot be read ({exc}); run `edgeagent audit verify`") from None
    return seq, line_hash(line)
