"""Verifying the audit log's hash chain (the format is described in `edgeagent.decisions.audit`).

`verify` walks every record of every file in order and stops at the first broken one: a line that is not a
canonical record (edited, or garbage), a `seq` that does not grow by one (removed or reordered lines), a
`prev` that is not the hash of the line before (edited or removed), a file missing from the numbering.

Two things are not breaks: a torn last record of the newest file (bytes without a newline, or a last line
that is not JSON: what a crash mid-write leaves, and what reopening the log moves aside) is reported as a
warning, the chain verified up to it; and a chain that starts after seq 1 because `keep_files` retention
deleted the oldest files, which an `audit.retention` record in the chain accounts for. A chain that starts
later than any such record says is broken (oldest files removed by hand).

What the box alone cannot show: records cut from the end (or the newest files removed) leave a valid shorter
chain. Passing the head published upstream as `expected_head` closes that gap: the chain must reach that
seq, with that hash.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from edgeagent.decisions.audit import (
    GENESIS_PREV,
    RECORD_KEYS,
    audit_files,
    canonical_line,
    file_name,
    is_json_object,
    line_hash,
)

__all__ = ["AuditPathError", "VerifyResult", "find_audit_dir", "verify"]

HASH_RE: Final = re.compile(r"[0-9a-f]{64}")


class AuditPathError(ValueError):
    """The path given is not an audit folder, nor a state directory holding one."""


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome: `ok`, what was verified, and the first broken record (file name, 1-based line, seq)."""

    ok: bool
    directory: Path
    records: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str | None
    problem: str | None = None
    problem_file: str | None = None
    problem_line: int | None = None
    problem_seq: int | None = None
    warnings: tuple[str, ...] = ()


def find_audit_dir(path: Path) -> Path:
    """The audit folder named by `path`: the folder itself, or `path/audit` for a state directory."""
    if not path.exists():
        raise AuditPathError(f"{path} does not exist")
    if not path.is_dir():
        raise AuditPathError(f"{path} is not a folder: give the audit folder or the state directory holding audit/")
    candidate = path / "audit" if (path / "audit").is_dir() else path
    if not audit_files(candidate):
        raise AuditPathError(f"{candidate} holds no audit log (no audit-NNNNNN.jsonl files)"
                             + ("" if candidate != path else f", and {path} has no audit/ folder"))
    return candidate


def verify(path: Path, *, expected_head: tuple[int, str] | None = None) -> VerifyResult:
    """Check the chain in the audit folder `path` (or `path/audit`); raises AuditPathError if there is none.

    `expected_head` is (seq, hash) as published upstream: the chain must then reach that record unaltered.
    """
    walk = _Walk(find_audit_dir(path), expected_head)
    walk.run()
    return walk.result()


@dataclass
class _Problem:
    file: str
    line: int
    seq: int | None
    text: str


@dataclass
class _Walk:
    directory: Path
    expected_head: tuple[int, str] | None
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    from_genesis_file: bool = False
    start_claim: int = 0  # the highest chain_starts_at_seq of the audit.retention records seen
    first_pos: tuple[str, int] = ("", 1)
    next_pos: tuple[str, int] = ("", 1)  # where the record after the last verified one belongs
    problem: _Problem | None = None
    warnings: list[str] = field(default_factory=list)

    def run(self) -> None:
        files = audit_files(self.directory)
        self.from_genesis_file = files[0][0] == 1
        for i, (number, path) in enumerate(files):
            is_last = i == len(files) - 1
            name = path.name
            self.next_pos = (name, 1)
            if i > 0 and number != files[i - 1][0] + 1:
                missing = ", ".join(file_name(n) for n in range(files[i - 1][0] + 1, min(number, files[i - 1][0] + 4)))
                more = ", …" if number - files[i - 1][0] > 4 else ""
                self._fail(name, 1, self._peek_seq(path), f"{missing}{more} missing before this file: removed?")
                return
            if not self._walk_file(path, is_last):
                return
        self._finish()

    def _walk_file(self, path: Path, is_last: bool) -> bool:
        lines = path.read_bytes().split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        name = path.name
        for number, raw in enumerate(lines, 1):
            if is_last and not tail and number == len(lines) and not is_json_object(raw):
                self._torn(name, number, raw, "a last line that is not JSON")
                return True
            if not self._check(name, number, raw):
                return False
            self.next_pos = (name, number + 1)
        if tail and is_last:
            self._torn(name, len(lines) + 1, tail, "bytes without a newline")
        elif tail:
            self._fail(name, len(lines) + 1, None, "the file's last line has no newline, but a newer file follows: "
                       "truncated or edited?")
            return False
        return True

    def _check(self, name: str, number: int, raw: bytes) -> bool:
        record, why = _parse(raw)
        if record is None:
            self._fail(name, number, None, why)
            return False
        seq: int = record["seq"]
        prev: str = record["prev"]
        if self.last_seq is None:
            why = self._check_start(seq, prev)
        elif seq <= self.last_seq:
            why = f"seq {seq} does not follow seq {self.last_seq}: lines reordered?"
        elif seq > self.last_seq + 1:
            gap = seq - self.last_seq - 1
            why = f"seq {seq} follows seq {self.last_seq}: {gap} record{'s' if gap > 1 else ''} missing: removed?"
        elif prev != self.last_hash:
            why = "prev does not match the hash of the line before: edited or removed?"
        digest = line_hash(raw)
        if not why and self.expected_head and seq == self.expected_head[0] and digest != self.expected_head[1]:
            why = f"its hash {digest[:16]}… differs from the published head's {self.expected_head[1][:16]}…: edited?"
        if why:
            self._fail(name, number, seq, why)
            return False
        if record["kind"] == "audit.retention":
            claim = record["data"].get("chain_starts_at_seq")
            if type(claim) is int:
                self.start_claim = max(self.start_claim, claim)
        if self.first_seq is None:
            self.first_seq, self.first_pos = seq, (name, number)
        self.records += 1
        self.last_seq, self.last_hash = seq, digest
        return True

    def _check_start(self, seq: int, prev: str) -> str:
        if seq == 1 and prev == GENESIS_PREV:
            return ""
        if self.from_genesis_file:
            if seq != 1:
                return f"the chain's first record has seq {seq}, not 1: records removed or reordered?"
            return "the first record's prev is not 64 zeros: edited?"
        if prev == GENESIS_PREV:
            return f"a record with seq {seq} cannot hold the first record's prev (64 zeros): edited?"
        return ""  # starts after retention: checked against the audit.retention records at the end

    def _torn(self, name: str, number: int, raw: bytes, what: str) -> None:
        upto = f"seq {self.last_seq}" if self.last_seq is not None else "its start (no complete record)"
        self.warnings.append(f"{name}:{number}: torn last record ({len(raw)} bytes, {what}: a crash mid-write?); "
                             f"the chain verifies up to {upto}")
        self.next_pos = (name, number)

    def _finish(self) -> None:
        first = self.first_seq
        if first is not None and first > 1:
            if first > self.start_claim:
                claim = (f"the latest audit.retention record says it starts at seq {self.start_claim}"
                         if self.start_claim else "no audit.retention record accounts for the older records")
                self._fail(*self.first_pos, first,
                           f"the chain starts at seq {first}, but {claim}: files removed by hand, or tampered?")
                return
            self.warnings.insert(0, f"chain starts at seq {first} (older files removed by retention)")
        if self.expected_head is None:
            return
        head_seq = self.expected_head[0]
        last = self.last_seq or 0
        if last < head_seq:
            name, number = self.next_pos
            self._fail(name, number, last + 1, f"the chain ends at seq {last}, but the published head is seq "
                       f"{head_seq}: records after it removed{' (or torn)' if self.warnings else ''}?")
        elif first is not None and head_seq < first:
            self.warnings.append(f"the published head (seq {head_seq}) is older than the chain's start: not checked")

    def _peek_seq(self, path: Path) -> int | None:
        with path.open("rb") as f:
            record, _ = _parse(f.readline().rstrip(b"\n"))
        return record["seq"] if record is not None else None

    def _fail(self, name: str, number: int, seq: int | None, text: str) -> None:
        self.problem = _Problem(name, number, seq, text)

    def result(self) -> VerifyResult:
        p = self.problem
        common: dict[str, Any] = {"directory": self.directory, "records": self.records, "first_seq": self.first_seq,
                                  "last_seq": self.last_seq, "head_hash": self.last_hash,
                                  "warnings": tuple(self.warnings)}
        if p is None:
            return VerifyResult(ok=True, **common)
        if p.seq is not None:
            where = f" (seq {p.seq})"
        elif self.last_seq is not None:
            where = f" (after seq {self.last_seq})"
        else:
            where = ""
        return VerifyResult(ok=False, problem=f"{p.file}:{p.line}{where}: {p.text}", problem_file=p.file,
                            problem_line=p.line, problem_seq=p.seq, **common)


def _parse(raw: bytes) -> tuple[dict[str, Any] | None, str]:
    """(record, "") for a canonical, well-typed record line, else (None, why not)."""
    if not raw:
        return None, "an empty line: edited?"
    try:
        record = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not UTF-8: edited?"
    except ValueError:
        return None, "not valid JSON: edited?"
    if not isinstance(record, dict) or set(record) != RECORD_KEYS:
        keys = sorted(record) if isinstance(record, dict) else type(record).__name__
        return None, f"not an audit record (has {keys}, needs {sorted(RECORD_KEYS)}): edited?"
    seq, prev = record["seq"], record["prev"]
    if type(seq) is not int or seq < 1:
        return None, f"seq {seq!r} is not a positive integer: edited?"
    if not isinstance(prev, str) or not HASH_RE.fullmatch(prev):
        return None, f"prev {prev!r:.70} is not a sha256 in lower-case hex: edited?"
    if not (isinstance(record["t"], str) and isinstance(record["kind"], str) and isinstance(record["data"], dict)):
        return None, "t and kind must be strings and data an object: edited?"
    try:
        canonical = canonical_line(record).encode("utf-8")
    except (ValueError, UnicodeEncodeError):
        canonical = b""
    if canonical != raw:
        return None, "not in canonical form (key order, spacing or escapes differ): edited?"
    return record, ""
