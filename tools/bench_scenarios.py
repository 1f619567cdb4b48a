"""Run the demo's safety scenarios several times on the HIL plant and report medians.

    python tools/bench_scenarios.py                       # every safety scenario, 5 runs each
    python tools/bench_scenarios.py --runs 3 --scenario export-step --scenario meter-loss

Each run is a separate `edgeagent demo --scenario NAME --json` process (plant and daemon fresh,
as a bench would run them). Prints a table of medians (and the worst run) per scenario, then one
JSON line with every run's figures. Exit status 1 if any run failed its scenario's expectations.

Timing figures depend on the machine's load: run it on a quiet machine, and compare a change
against the same command before it, in the same session.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from typing import Any

SCENARIOS = ("export-step", "export-step-full", "meter-loss", "overtemp")
FIGURES = ("response_s", "max_export_kw", "seconds_over_limit", "kwh_over_limit", "fallback_s", "takeover_response_s")


def run_once(scenario: str, timeout_s: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "edgeagent", "demo", "--scenario", scenario, "--json"],
                          capture_output=True, text=True, timeout=timeout_s, check=False)
    lines = proc.stdout.strip().splitlines()
    if not lines or not lines[-1].startswith("{"):
        return {"passed": False, "error": (proc.stderr or proc.stdout)[-500:]}
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def figures(summary: dict[str, Any]) -> dict[str, Any]:
    out = {key: summary.get(key) for key in FIGURES}
    out["passed"] = summary.get("passed", False)
    # trips on the condition itself (not the start-up trips on inputs not yet read)
    out["trips"] = [(t["name"], t["reaction_s"], t["cleared"]) for t in summary.get("trips", [])
                    if t.get("cause", "condition") == "condition"]
    out["failed_checks"] = [c["name"] for c in summary.get("checks", []) if not c["passed"]]
    if "error" in summary:
        out["error"] = summary["error"]
    return out


def median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 3) if known else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    args = p.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {}
    for scenario in args.scenario or SCENARIOS:
        for i in range(args.runs):
            result = figures(run_once(scenario, args.timeout))
            results.setdefault(scenario, []).append(result)
            print(f"{scenario} run {i + 1}/{args.runs}: {'passed' if result['passed'] else 'FAILED'} "
                  + ", ".join(f"{k}={result[k]}" for k in FIGURES if result.get(k) is not None)
                  + (f", trips={result['trips']}" if result["trips"] else "")
                  + (f", failed={result['failed_checks']}" if result["failed_checks"] else ""),
                  file=sys.stderr, flush=True)
    print(f"{'scenario':<18} {'passed':>7} " + " ".join(f"{k:>18}" for k in (*FIGURES, "trip_reaction_s")))
    medians: dict[str, dict[str, Any]] = {}
    for scenario, runs in results.items():
        row: dict[str, Any] = {k: median([r.get(k) for r in runs]) for k in FIGURES}
        row["trip_reaction_s"] = median([t[1] for r in runs for t in r["trips"]])
        row["passed"] = f"{sum(r['passed'] for r in runs)}/{len(runs)}"
        medians[scenario] = row
        print(f"{scenario:<18} {row['passed']:>7} "
              + " ".join(f"{'—' if row[k] is None else row[k]:>18}" for k in (*FIGURES, "trip_reaction_s")))
    print(json.dumps({"runs": args.runs, "medians": medians, "results": results}, separators=(",", ":")))
    return 0 if all(r["passed"] for runs in results.values() for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
