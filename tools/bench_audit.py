"""Benchmark: audit log appends/s with an fsync per record, against the same appends without fsync.

Each round opens a fresh `AuditLog` in a temporary folder and appends records shaped like the daemon's
(a command received, a setpoint written: ~300 bytes of canonical JSON each), timing every `append` with
`time.perf_counter_ns`:

* `no fsync` (the baseline, same run): `AuditLog(fsync=False)`: encoding, hashing, the `write` and the
  lock, i.e. everything but waiting for the disk;
* `fsync`: `AuditLog(fsync=True)`, the production setting: each append returns only after `os.fsync`.

Rounds alternate (no fsync, fsync, no fsync, …) so slow drifts of a noisy machine hit both alike; the report
gives medians over the rounds and the ratio fsync/no-fsync. It also times `verify` over the baseline's log
(records/s), the cost of `edgeagent audit verify` on a box.

The folder defaults to one under /var/tmp, which is on disk on common Linux systems, where /tmp may be a
tmpfs whose fsync costs nothing; `--dir` picks another (put it on the disk the state directory lives on).
The run is bounded by `--rounds` and `--max-seconds`; the folder is removed however the run ends. The last
line printed is one JSON object with the figures.

Run from the repo root: `.venv/bin/python tools/bench_audit.py [--records N] [--fsync-records N] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeagent.decisions.audit import AuditLog
from edgeagent.decisions.audit_verify import verify


@dataclass(frozen=True)
class Round:
    fsync: bool
    records: int
    seconds: float
    latencies_us: list[float]
    bytes_written: int

    @property
    def per_s(self) -> float:
        return self.records / self.seconds


def record_data(i: int) -> tuple[str, dict[str, Any]]:
    """Alternately a command received and a setpoint written, as the daemon records them."""
    if i % 2 == 0:
        return "command.received", {"action": "set_export_limit", "target": "export_limit", "key_id": "ops-anna",
                                    "by": "Anna Berg", "nonce": f"{i:032x}", "accepted": True,
                                    "args": {"limit_kw": 25.0 + i % 7, "reason": "feeder maintenance"}}
    return "setpoint.written", {"device": "bess", "point": "bess.p_set_kw", "value_kw": -12.5 + i % 11,
                                "requested_by": "export_limit", "clamped_from_kw": None, "revert_s": 60}


def run_round(directory: Path, fsync: bool, records: int, max_bytes: int) -> Round:
    latencies: list[float] = []
    with AuditLog(directory, fsync=fsync, max_bytes=max_bytes) as log:
        log.append("bench.start", {})  # file creation (and its directory fsync) outside the timing
        start = time.perf_counter_ns()
        for i in range(records):
            kind, data = record_data(i)
            t0 = time.perf_counter_ns()
            log.append(kind, data)
            latencies.append((time.perf_counter_ns() - t0) / 1000)
        seconds = (time.perf_counter_ns() - start) / 1e9
    size = sum(p.stat().st_size for p in directory.glob("audit-*.jsonl"))
    return Round(fsync, records, seconds, latencies, size)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def summarise(rounds: list[Round]) -> dict[str, Any]:
    latencies = [v for r in rounds for v in r.latencies_us]
    return {
        "rounds": len(rounds),
        "records_per_round": rounds[0].records,
        "appends_per_s": round(statistics.median(r.per_s for r in rounds), 1),
        "appends_per_s_each_round": [round(r.per_s, 1) for r in rounds],
        "latency_us_median": round(statistics.median(latencies), 1),
        "latency_us_p99": round(percentile(latencies, 0.99), 1),
        "latency_us_max": round(max(latencies), 1),
        "bytes_per_record": round(rounds[0].bytes_written / (rounds[0].records + 1), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--records", type=int, default=5000, help="appends per round without fsync (default 5000)")
    p.add_argument("--fsync-records", type=int, default=500, help="appends per round with fsync (default 500)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of each kind, alternating (default 5, max 50)")
    p.add_argument("--max-bytes", type=int, default=8 * 1024 * 1024, help="rotation size (default 8 MiB)")
    p.add_argument("--dir", type=Path, default=None, help="make the temporary folder here (default /var/tmp)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="start no new round past this (default 120)")
    args = p.parse_args(argv)
    if not (1 <= args.rounds <= 50 and args.records >= 1 and args.fsync_records >= 1):
        p.error("--rounds must be 1..50 and the record counts at least 1")
    parent = args.dir or (Path("/var/tmp") if Path("/var/tmp").is_dir() else None)
    work = Path(tempfile.mkdtemp(prefix="bench-audit-", dir=parent))
    began = time.monotonic()
    plain: list[Round] = []
    synced: list[Round] = []
    verify_per_s: list[float] = []
    stopped_early = False
    try:
        for n in range(args.rounds):
            if time.monotonic() - began > args.max_seconds:
                stopped_early = True
                break
            base = run_round(work / f"plain-{n}", False, args.records, args.max_bytes)
            plain.append(base)
            t0 = time.perf_counter()
            result = verify(work / f"plain-{n}")
            verify_per_s.append(result.records / (time.perf_counter() - t0))
            if not result.ok:
                raise SystemExit(f"the benchmark's own log does not verify: {result.problem}")
            synced.append(run_round(work / f"fsync-{n}", True, args.fsync_records, args.max_bytes))
            shutil.rmtree(work / f"plain-{n}")
            shutil.rmtree(work / f"fsync-{n}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base_s, fsync_s = summarise(plain), summarise(synced)
    report = {
        "bench": "audit",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "folder": str(parent or tempfile.gettempdir()),
        "stopped_early": stopped_early,
        "no_fsync": base_s,
        "fsync": fsync_s,
        "ratio_fsync_over_no_fsync": round(fsync_s["appends_per_s"] / base_s["appends_per_s"], 4),
        "verify_records_per_s": round(statistics.median(verify_per_s), 1),
    }
    print(f"audit log appends{' (STOPPED EARLY)' if stopped_early else ''}: {len(plain)} rounds each, "
          f"folder under {report['folder']}, {base_s['bytes_per_record']} bytes per record")
    for label, s in (("no fsync (base)", base_s), ("fsync", fsync_s)):
        print(f"  {label:16} {s['appends_per_s']:>10.1f} appends/s  median {s['latency_us_median']:>8.1f} µs  "
              f"p99 {s['latency_us_p99']:>8.1f} µs  ({s['records_per_round']} per round; per round: "
              f"{', '.join(f'{v:.0f}' for v in s['appends_per_s_each_round'])})")
    print(f"  ratio fsync/no fsync: {report['ratio_fsync_over_no_fsync']}")
    print(f"  verify: {report['verify_records_per_s']:.0f} records/s")
    print(json.dumps(report, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
