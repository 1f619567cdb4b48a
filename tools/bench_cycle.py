"""Benchmark: the cost of one scan cycle (`ScanCycle.step()`) over a process image of N points.

Builds a `ProcessImage` of N points (default 500), all GOOD, and three cycles over the same image:

* `snapshot`: `image.snapshot()` alone, the floor every cycle pays;
* `empty`: a `ScanCycle` with no phases (snapshot, default arbiter on no requests, no writes);
* `full`: a `ScanCycle` with three small but realistic phases (an over-temperature interlock, a
  peak-shaving controller, an approved-action phase) that read snapshot values and emit 0-2
  commands each, the default arbiter (`last_request_wins`) and a no-op write sink;
* `phases`: the same cycle over an image whose snapshot was taken beforehand (untimed), so it
  measures what the phases, arbitration and writes add, free of the snapshot's own jitter.

Between iterations a writer updates 50 points with fresh GOOD samples, as the field adapters would
between two scans (untimed). Each iteration times the four variants once each with
`time.perf_counter_ns`, in a rotating order, so all see the same image and the same machine noise;
the baselines are measured in the same run, and the ratios are what to compare across runs.
Nothing here does I/O. The run is bounded by `--cycles` and by `--max-seconds`.

Run from the repo root: `.venv/bin/python tools/bench_cycle.py [--points N] [--cycles N] [--json]`.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgeagent.cycle import Command, CycleRecord, ScanCycle
from edgeagent.image import PointSpec, ProcessImage, Quality, Sample, Snapshot

DEVICES = ("bess", "pv", "grid", "feeder", "aux")
MAX_AGE_S = 4.0  # the config default for a 1 s poll with a 1 s timeout: 3 * poll + timeout
WRITES_PER_CYCLE = 50


def point_names(n: int) -> list[str]:
    """N point names spread over a few devices: `bess.p000`, `pv.p000`, `grid.p000`, …"""
    return [f"{DEVICES[i % len(DEVICES)]}.p{i // len(DEVICES):03d}" for i in range(n)]


class OverTemperature:
    """Interlock: trip the battery to 0 W if any of 8 cell-block temperatures is too hot or unknown.

    Emits 0 or 1 command.
    """

    name = "interlock.overtemp"

    def __init__(self, temps: Sequence[str], limit_c: float = 55.0) -> None:
        self.temps = tuple(temps)
        self.limit_c = limit_c

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        hottest = -math.inf
        for point in self.temps:
            value = snapshot.value(point)
            if value is None:
                return (Command("bess", "setpoint_w", 0.0, self.name, f"{point} unknown"),)
            hottest = max(hottest, value)
        if hottest > self.limit_c:
            return (Command("bess", "setpoint_w", 0.0, self.name, f"{hottest:.1f} °C"),)
        return ()


class PeakShaving:
    """Controller: discharge the battery by the grid import above a limit, bounded by state of charge.

    Reads grid import, PV power, SoC and the battery's own power; emits 1 command, or 2 when it also
    asks the PV inverter to curtail (export above the limit).
    """

    name = "controller.peak_shaving"

    def __init__(self, grid: str, pv: str, soc: str, bess_p: str, limit_w: float = 30_000.0) -> None:
        self.grid, self.pv, self.soc, self.bess_p = grid, pv, soc, bess_p
        self.limit_w = limit_w
        self.integral = 0.0

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        grid_w = snapshot.value(self.grid)
        soc = snapshot.value(self.soc)
        if grid_w is None or soc is None:
            return ()
        bess_w = snapshot.value(self.bess_p) or 0.0
        error = grid_w - self.limit_w
        self.integral = max(-50_000.0, min(50_000.0, self.integral + 0.1 * error))
        target = max(-50_000.0, min(50_000.0, bess_w + 0.5 * error + 0.05 * self.integral))
        if soc < 10.0:
            target = min(target, 0.0)
        out = [Command("bess", "setpoint_w", round(target, 1), self.name)]
        pv_w = snapshot.value(self.pv)
        if pv_w is not None and grid_w < -self.limit_w:
            out.append(Command("pv", "limit_w", max(0.0, pv_w + grid_w + self.limit_w), self.name))
        return tuple(out)


class ApprovedActions:
    """Approved actions: a human-confirmed setpoint that holds for a while, then expires.

    Every `every`-th cycle one action is active (1 command); every `2 * every`-th, two are (2 commands).
    """

    name = "actions.approved"

    def __init__(self, guard: str, every: int = 7) -> None:
        self.guard = guard
        self.every = every
        self.n = 0

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        self.n += 1
        if self.n % self.every or snapshot.value(self.guard) is None:
            return ()
        out = [Command("feeder", "tap_pos", 3.0, "action:a17", "approved by operator")]
        if self.n % (2 * self.every) == 0:
            out.append(Command("bess", "setpoint_w", -5_000.0, "action:a18", "approved by operator"))
        return tuple(out)


class FrozenImage:
    """Stands in for the image in the `phases` variant: hands out a snapshot taken beforehand."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snap = snapshot

    def snapshot(self, t_mono: float | None = None) -> Snapshot:
        return self.snap


def make_phases() -> dict[str, Any]:
    """Fresh phase objects (they keep state) as keyword arguments for `ScanCycle`."""
    return {
        "interlocks": [OverTemperature([f"bess.p{i:03d}" for i in range(8)])],
        "controllers": [PeakShaving(grid="grid.p000", pv="pv.p000", soc="bess.p010", bess_p="bess.p011")],
        "actions": [ApprovedActions(guard="feeder.p000")],
    }


class Writer:
    """Stands in for the field adapters: writes fresh GOOD samples to a rotating window of points."""

    def __init__(self, image: ProcessImage, names: Sequence[str], seed: int = 1) -> None:
        self.image = image
        self.names = list(names)
        self.rng = random.Random(seed)
        self.next = 0

    def value_for(self, name: str) -> float:
        # Values chosen so the phases take every branch now and then (over-temperature, low SoC,
        # export above the limit).
        r = self.rng.random()
        if name.startswith("bess.p00"):  # temperatures
            return 25.0 + 31.0 * r
        if name == "bess.p010":  # state of charge
            return 5.0 + 90.0 * r
        return -40_000.0 + 120_000.0 * r

    def fill(self) -> None:
        now_m, now_w = time.monotonic(), time.time()
        for name in self.names:
            self.image.write(Sample(name, self.value_for(name), "", Quality.GOOD, now_m, now_w))

    def update(self, count: int) -> None:
        now_m, now_w = time.monotonic(), time.time()
        for _ in range(count):
            name = self.names[self.next]
            self.next = (self.next + 1) % len(self.names)
            self.image.write(Sample(name, self.value_for(name), "", Quality.GOOD, now_m, now_w))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def summary_us(samples_ns: Sequence[int]) -> dict[str, float]:
    """Median, p99 and max of nanosecond samples, in microseconds."""
    s = sorted(samples_ns)
    return {"median": statistics.median(s) / 1000, "p99": percentile(s, 99) / 1000, "max": s[-1] / 1000}


def run(points: int, cycles: int, warmup: int, period_ms: float, max_seconds: float) -> dict[str, Any]:
    """Run the benchmark and return the results as a JSON-ready dict."""
    if points < 16:
        raise SystemExit("--points must be at least 16 (the phases read 13 named points)")
    names = point_names(points)
    image = ProcessImage([PointSpec(n, "", MAX_AGE_S) for n in names], history_len=600)
    writer = Writer(image, names)
    writer.fill()

    written = 0

    def sink(command: Command) -> None:
        nonlocal written
        written += 1

    full = ScanCycle(image, period_ms / 1000, write=sink, **make_phases())
    empty = ScanCycle(image, period_ms / 1000, write=sink)
    frozen = FrozenImage(image.snapshot())
    phases_only = ScanCycle(cast(ProcessImage, frozen), period_ms / 1000, write=lambda c: None, **make_phases())

    def snapshot_alone() -> None:
        image.snapshot()  # taken and dropped, as a cycle does with its snapshot

    variants: list[tuple[str, Callable[[], object]]] = [
        ("snapshot", snapshot_alone),
        ("empty", empty.step),
        ("full", full.step),
        ("phases", phases_only.step),
    ]
    times: dict[str, list[int]] = {name: [] for name, _ in variants}
    paired_added: list[int] = []  # full - empty in the same iteration
    clock = time.perf_counter_ns
    started = time.monotonic()
    deadline = started + max_seconds
    done = 0
    requests = 0
    stopped_early = False
    gc.collect()
    for i in range(warmup + cycles):
        if time.monotonic() > deadline:
            stopped_early = True
            break
        writer.update(WRITES_PER_CYCLE)
        frozen.snap = image.snapshot()
        this: dict[str, int] = {}
        shift = i % len(variants)
        for name, fn in variants[shift:] + variants[:shift]:
            t0 = clock()
            out = fn()
            this[name] = clock() - t0
            if isinstance(out, CycleRecord) and name == "full":
                requests += len(out.requests)
            out = None  # released here, not inside the next variant's timing
        if i < warmup:
            continue
        for name, ns in this.items():
            times[name].append(ns)
        paired_added.append(this["full"] - this["empty"])
        done += 1
    elapsed = time.monotonic() - started
    if done == 0:
        raise SystemExit("no measured cycles (time limit hit during warm-up); raise --max-seconds")

    snap, emp, ful = summary_us(times["snapshot"]), summary_us(times["empty"]), summary_us(times["full"])
    pha = summary_us(times["phases"])
    period_us = period_ms * 1000
    return {
        "bench": "cycle",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "points": points,
        "cycles": done,
        "warmup": warmup,
        "writes_per_cycle": WRITES_PER_CYCLE,
        "stopped_early": stopped_early,
        "elapsed_s": round(elapsed, 2),
        "snapshot_us": _rounded(snap),
        "empty_cycle_us": _rounded(emp),
        "cycle_us": _rounded(ful),
        "phases_on_ready_snapshot_us": _rounded(pha),
        "phases_added_us_median": round(statistics.median(paired_added) / 1000, 2),
        "ratio_cycle_to_empty": round(ful["median"] / emp["median"], 3),
        "ratio_cycle_to_snapshot": round(ful["median"] / snap["median"], 3),
        "ratio_empty_to_snapshot": round(emp["median"] / snap["median"], 3),
        "phases_share_of_cycle": round(pha["median"] / ful["median"], 4),
        "period_ms": period_ms,
        "period_fraction_median": round(ful["median"] / period_us, 5),
        "period_fraction_p99": round(ful["p99"] / period_us, 5),
        # counted over warm-up and measured cycles alike
        "requests_per_cycle": round(requests / (warmup + done), 3),
        "commands_per_cycle": round(written / (warmup + done), 3),
    }


def _rounded(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in d.items()}


def report(r: dict[str, Any]) -> str:
    """Human-readable lines for a result dict."""
    def line(label: str, key: str) -> str:
        s = r[key]
        return f"  {label:<34} median {s['median']:>9.1f} µs   p99 {s['p99']:>9.1f} µs   max {s['max']:>9.1f} µs"

    lines = [
        f"scan cycle, {r['points']} points, {r['cycles']} measured cycles (+{r['warmup']} warm-up), "
        f"{r['writes_per_cycle']} point writes between cycles; python {r['python']}, {r['cpus']} cpus"
        + ("  [STOPPED EARLY at --max-seconds]" if r["stopped_early"] else ""),
        line("image.snapshot() alone (baseline)", "snapshot_us"),
        line("empty cycle, no phases (baseline)", "empty_cycle_us"),
        line("cycle with 3 phases + arbiter", "cycle_us"),
        line("phases + arbiter + writes only", "phases_on_ready_snapshot_us"),
        f"  phases + arbitration + writes: {r['phases_share_of_cycle'] * 100:.1f} % of the cycle's median; "
        f"cycle minus empty cycle, same iteration (median): {r['phases_added_us_median']:.1f} µs",
        f"  ratio cycle/empty {r['ratio_cycle_to_empty']:.2f}x   cycle/snapshot {r['ratio_cycle_to_snapshot']:.2f}x"
        f"   empty/snapshot {r['ratio_empty_to_snapshot']:.2f}x",
        f"  share of the {r['period_ms']:g} ms period: median {100 * r['period_fraction_median']:.3f} %"
        f"   p99 {100 * r['period_fraction_p99']:.3f} %",
        f"  per cycle (mean): {r['requests_per_cycle']} requests from the phases, "
        f"{r['commands_per_cycle']} commands after arbitration",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse options, run, print the report (and with --json a JSON object as the last line)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--points", type=int, default=500, help="points in the process image (default 500)")
    ap.add_argument("--cycles", type=int, default=5000, help="measured cycles (default 5000)")
    ap.add_argument("--warmup", type=int, default=500, help="unmeasured cycles first (default 500)")
    ap.add_argument("--period-ms", type=float, default=100.0, help="scan period to compare with (default 100)")
    ap.add_argument("--max-seconds", type=float, default=90.0, help="hard time limit (default 90)")
    ap.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    args = ap.parse_args(argv)
    if args.cycles < 1 or args.warmup < 0 or args.period_ms <= 0 or args.max_seconds <= 0:
        ap.error("--cycles must be >= 1, --warmup >= 0, --period-ms and --max-seconds > 0")
    result = run(args.points, args.cycles, args.warmup, args.period_ms, args.max_seconds)
    print(report(result), flush=True)
    if args.json:
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
