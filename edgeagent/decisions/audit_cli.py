"""`edgeagent audit verify PATH [--head SEQ:SHA256]`: check the audit log's hash chain.

Exit status: 0 the chain is intact (warnings, e.g. a torn last record or retention, may be printed),
1 broken (the first broken record is named as `file:line (seq N): what`), 2 usage (no such path, not an
audit folder, a malformed --head).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from edgeagent.decisions.audit_verify import AuditPathError, verify

__all__ = ["EXIT_BROKEN", "EXIT_OK", "EXIT_USAGE", "main_verify", "parse_head"]

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_USAGE = 2

_HEAD_RE = re.compile(r"(\d+):([0-9a-fA-F]{64})")


def parse_head(text: str) -> tuple[int, str]:
    """`SEQ:SHA256` (as `verify` prints it and the birth message publishes it) → (seq, lower-case hash)."""
    match = _HEAD_RE.fullmatch(text.strip())
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"--head {text!r} must be SEQ:SHA256, a positive record number and 64 hex digits")
    return int(match.group(1)), match.group(2).lower()


def main_verify(path: Path, head: str | None = None) -> int:
    """Verify and print one line per warning or problem, then a summary line; returns the exit status."""
    try:
        expected = parse_head(head) if head is not None else None
        result = verify(path, expected_head=expected)
    except (AuditPathError, ValueError) as exc:
        print(f"edgeagent audit verify: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"edgeagent audit verify: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    for warning in result.warnings:
        print(f"warning: {warning}")
    span = (f"{result.records} record{'s' if result.records != 1 else ''}"
            + (f" (seq {result.first_seq}..{result.last_seq})" if result.records else ""))
    if result.ok:
        head_text = f", head {result.last_seq}:{result.head_hash}" if result.records else ""
        checked = " and the published head" if expected is not None else ""
        print(f"{result.directory}: ok: chain intact{checked}, {span}{head_text}")
        return EXIT_OK
    print(f"BROKEN: {result.problem}")
    print(f"{result.directory}: broken: {span} verified before the first broken record")
    return EXIT_BROKEN
