"""Crash consistency: SIGKILL a process that appends in a loop, at random moments, many times.

Every event and decision the child reported as stored, and every telemetry record it reported
flushed, must be there after the restart (unless it was acked); ids stay unique and increasing
across restarts; the file passes SQLite's integrity check. SIGKILL is not a power cut (the kernel
still writes what it was given), but it does stop the process inside any commit, which is what the
WAL recovery and our id bookkeeping must survive.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from edgeagent.uplink import Lane, Outbox

CHILD = Path(__file__).with_name("outbox_crash_child.py")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Ledger:
    """What the children reported, over all rounds."""

    durable: set[int] = field(default_factory=set)
    acked: set[int] = field(default_factory=set)  # ack returned: must be gone
    acking: set[int] = field(default_factory=set)  # ack started: gone or not, both are right
    max_durable: int = 0
    reported: int = 0


def run_and_kill(db: Path, log: Path, seed: int, delay_s: float) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as out:  # a file, not a pipe: the child never blocks on a full pipe
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(db), str(seed)], stdout=out, stderr=subprocess.PIPE, env=env
        )
    try:
        deadline = time.monotonic() + 20
        while not log.read_bytes().startswith(b"OPEN\n"):
            assert proc.poll() is None, f"child died before opening: {proc.stderr.read() if proc.stderr else ''!r}"
            assert time.monotonic() < deadline, "child did not open the outbox within 20 s"
            time.sleep(0.005)
        time.sleep(delay_s)
        assert proc.poll() is None, f"child stopped by itself: {proc.stderr.read() if proc.stderr else ''!r}"
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == -signal.SIGKILL, err.decode(errors="replace")
    text = log.read_text()
    return text.split("\n")[:-1]  # the last piece is empty or a line cut by the kill


def account(lines: list[str], ledger: Ledger) -> None:
    """Check the order within the round and against earlier rounds, and book what is durable."""
    assert lines[0] == "OPEN"
    buffered: list[int] = []
    last_id = ledger.max_durable
    for line in lines[1:]:
        kind, _, rest = line.partition(" ")
        if kind in ("E", "D", "T"):
            record_id = int(rest)
            assert record_id > last_id, f"id {record_id} not above {last_id} ({line!r})"
            last_id = record_id
            ledger.reported += 1
            if kind == "T":
                buffered.append(record_id)
            else:
                ledger.durable.add(record_id)
        elif kind in ("F", "P"):  # flush, and pending, commit buffered telemetry
            ledger.durable.update(buffered)
            buffered.clear()
            if kind == "P":
                ledger.acking.update(int(x) for x in rest.split())
        elif kind == "A":
            ledger.acked.update(int(x) for x in rest.split())
        else:
            raise AssertionError(f"unexpected line from the child: {line!r}")
    if ledger.durable:
        ledger.max_durable = max(ledger.max_durable, max(ledger.durable))


def check_database(db: Path, ledger: Ledger) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    with Outbox(db) as ob:
        pending = ob.pending(10**6)
        present = {r.id for r in pending}
        assert len(present) == len(pending)
        for lane in Lane:
            ids = [r.id for r in pending if r.lane is lane]
            assert ids == sorted(ids)
        missing = ledger.durable - ledger.acking - present
        assert not missing, f"{len(missing)} reported records lost, e.g. {sorted(missing)[:5]}"
        assert not (ledger.acked & present), "acked records came back"
        stats = ob.stats()
        assert sum(stats.records.values()) == len(pending)
        assert (stats.thinned, stats.dropped) == (0, 0)  # budget far away: nothing may go
        extra = ob.append(Lane.EVENT, "events", b"{}")  # ids go on above everything seen
        assert extra.id > max(present | {ledger.max_durable})
        ledger.durable.add(extra.id)
        ledger.max_durable = extra.id


def test_sigkill_at_random_moments_loses_no_reported_record(tmp_path: Path) -> None:
    db = tmp_path / "outbox.sqlite"
    rng = random.Random(20240611)
    ledger = Ledger()
    for round_no in range(10):
        lines = run_and_kill(db, tmp_path / f"child-{round_no}.log", seed=round_no, delay_s=rng.uniform(0.02, 0.35))
        account(lines, ledger)
        check_database(db, ledger)
    assert ledger.reported > 100, "the children stored too little for the test to mean anything"
    assert ledger.acked, "no acks were exercised"
