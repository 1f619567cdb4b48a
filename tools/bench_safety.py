"""Benchmark: the scan cycle with the safety phases: 50 interlocks, the export limiter and the
arbiter over 500 points, against an empty cycle over the same image in the same run.

Target (issue "Safety"): p99 under 2 ms per cycle on a developer machine.
Run: .venv/bin/python tools/bench_safety.py [--points 500] [--interlocks 50] [--cycles 5000] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence

from edgeagent.cycle import ScanCycle
from edgeagent.image import PointSpec, ProcessImage, Quality, Sample
from edgeagent.safety.arbitration import Arbiter, Bound
from edgeagent.safety.export_limit import BessTarget, ExportLimitConfig, ExportLimiter, PvTarget
from edgeagent.safety.interlocks import Condition, Interlocks, InterlockSpec, SafeSetpoint


def build(points: int, interlocks: int) -> tuple[ProcessImage, ScanCycle, ScanCycle, list[str]]:
    names = [f"dev{i // 50}.p{i}" for i in range(points - 5)] + ["pcc.W", "bess.SoC", "pv.W", "bess.WSet",
                                                                 "pv.WMaxLimPct"]
    image = ProcessImage([PointSpec(n, "", 5.0) for n in names])
    safe = (SafeSetpoint("bess", "WSet", 0.0), SafeSetpoint("pv", "WMaxLimPct", 0.0))
    conditions = [Condition.ABOVE, Condition.BELOW, Condition.OUTSIDE, Condition.RATE_ABOVE]
    specs = []
    for i in range(interlocks):
        cond = conditions[i % 4]
        extra = {Condition.ABOVE: {"limit": 1e9}, Condition.BELOW: {"limit": -1e9},
                 Condition.OUTSIDE: {"low": -1e9, "high": 1e9}, Condition.RATE_ABOVE: {"rate_per_s": 1e12}}[cond]
        specs.append(InterlockSpec(name=f"i{i}", points=(names[i * 3 % (points - 5)],), condition=cond,
                                   hysteresis=0.0, pickup_s=0.5, safe_action=safe, **extra))  # type: ignore[arg-type]
    limiter = ExportLimiter(ExportLimitConfig(
        contract_min_kw=0, contract_max_kw=100, static_kw=50, margin_kw=2,
        bess=BessTarget("bess", "WSet", "bess.SoC", 95.0, 50_000.0),
        pv=PvTarget("pv", "WMaxLimPct", rated_w=100_000.0, power_point="pv.W")))
    phase = Interlocks(specs)
    # wired as the daemon wires them: active trips bound the envelope, the limiter plans with it
    arbiter = Arbiter([Bound("bess", "WSet", -100_000, 100_000), Bound("pv", "WMaxLimPct", 0, 100)],
                      trip_bounds=phase.bounds)
    limiter.envelope = arbiter.envelope
    full = ScanCycle(image, 0.1, interlocks=[phase], controllers=[limiter], arbiter=arbiter,
                     write=lambda c: None)
    empty = ScanCycle(image, 0.1)
    return image, full, empty, names


def run(points: int, interlocks: int, cycles: int) -> dict[str, float]:
    image, full, empty, names = build(points, interlocks)
    rng = random.Random(1)
    t = 1000.0
    timings: dict[str, list[float]] = {"full": [], "empty": []}
    for i in range(cycles + 500):
        t += 0.1
        for name in rng.sample(names, 50):  # adapters update ~10 % of the points per cycle
            image.write(Sample(name, rng.uniform(0, 100), "", Quality.GOOD, t, 1e9 + t))
        image.write(Sample("pcc.W", -60_000.0 + rng.uniform(-500, 500), "W", Quality.GOOD, t, 1e9 + t))
        for kind, cycle in (("empty", empty), ("full", full)):
            t0 = time.perf_counter_ns()
            cycle.step(t)
            if i >= 500:
                timings[kind].append((time.perf_counter_ns() - t0) / 1000)
    out: dict[str, float] = {}
    for kind, values in timings.items():
        values.sort()
        out[f"{kind}_median_us"] = round(statistics.median(values), 1)
        out[f"{kind}_p99_us"] = round(values[int(0.99 * (len(values) - 1))], 1)
    out["ratio_median"] = round(out["full_median_us"] / out["empty_median_us"], 2)
    out["p99_share_of_2ms_target"] = round(out["full_p99_us"] / 2000, 3)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--points", type=int, default=500)
    ap.add_argument("--interlocks", type=int, default=50)
    ap.add_argument("--cycles", type=int, default=5000)
    ap.add_argument("--json", action="store_true", help="also print one JSON object as the last line")
    args = ap.parse_args(argv)
    if not (60 <= args.points <= 100_000 and 1 <= args.interlocks <= args.points and 1 <= args.cycles <= 100_000):
        ap.error("--points 60..100000, --interlocks 1..points, --cycles 1..100000")
    r = run(args.points, args.interlocks, args.cycles)
    print(f"scan cycle with {args.interlocks} interlocks + export limiter + arbiter, {args.points} points, "
          f"{args.cycles} cycles (+500 warm-up), 50 point updates per cycle")
    print(f"  empty cycle (baseline)   median {r['empty_median_us']:8.1f} µs   p99 {r['empty_p99_us']:8.1f} µs")
    print(f"  with the safety phases   median {r['full_median_us']:8.1f} µs   p99 {r['full_p99_us']:8.1f} µs")
    share = r["p99_share_of_2ms_target"] * 100
    print(f"  ratio (median) {r['ratio_median']}x; p99 is {share:.1f} % of the 2 ms target")
    if args.json:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
