"""The safety scenarios of the demo, end to end on the HIL plant: each must meet its own expectations.

Each run is the real `edgeagent demo` process (plant subprocess, daemon, local mosquitto), at
speed 1 because the plant's dynamics (battery 0.1 s dead time + 0.2 s lag, PV 1 s lag) are what
the targets are about.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from edgeagent.demo_metrics import read_trace


async def run_demo(scenario: str, state_dir: Path) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgeagent", "demo", "--scenario", scenario, "--json", "--state-dir", str(state_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    lines = out.decode().strip().splitlines()
    assert lines and lines[-1].startswith("{"), err.decode()[-2000:]
    summary: dict[str, Any] = json.loads(lines[-1])
    failed = [c for c in summary["checks"] if not c["passed"]]
    assert proc.returncode == (0 if summary["passed"] else 1)
    assert summary["passed"], failed
    return summary


async def test_export_step_is_absorbed_by_the_battery_within_2_s(tmp_path: Path) -> None:
    s = await run_demo("export-step", tmp_path)
    assert s["export_limit_kw"] == 30.0 and s["max_export_kw"] > 45.0  # the step really pushed export over
    assert 0.0 < s["response_s"] <= 2.0 and 0.0 < s["seconds_over_limit"] <= 2.0 and s["kwh_over_limit"] > 0.0
    assert s["points"]["bess.W"]["value"] < -30_000  # the battery holds the limit at the end
    assert len(read_trace(tmp_path / "plant-trace.jsonl")) == s["trace_steps"] > 250


async def test_export_step_with_a_full_battery_is_curtailed_within_4_s(tmp_path: Path) -> None:
    s = await run_demo("export-step-full", tmp_path)
    assert s["max_export_kw"] > 45.0 and 0.0 < s["response_s"] <= 4.0
    assert s["points"]["pv.WMaxLimPct"]["value"] < 80.0 and abs(s["points"]["bess.W"]["value"]) < 1000


async def test_meter_loss_moves_to_the_fallback_within_1_s(tmp_path: Path) -> None:
    s = await run_demo("meter-loss", tmp_path)
    assert s["fallback_s"] is not None and 0.0 < s["fallback_s"] < 1.0
    assert s["seconds_over_limit"] == 0.0  # the fallback is more restrictive, never less
    log = (tmp_path / "edgeagent.log").read_text(encoding="utf-8")
    assert '"event": "export_limit.fallback_entered"' in log and '"event": "export_limit.fallback_left"' in log


async def test_overtemp_trips_the_battery_and_pv_holds_the_limit(tmp_path: Path) -> None:
    s = await run_demo("overtemp", tmp_path)
    (trip,) = [t for t in s["trips"] if t["cause"] == "condition"]
    assert trip["name"] == "bess_overtemp" and trip["cleared"] and 0.0 < trip["reaction_s"] <= 0.3
    assert s["takeover_response_s"] <= 4.0


@pytest.mark.parametrize("scenario", ["sunny-day"])
async def test_a_scenario_without_expectations_reports_the_figures_without_judging_them(
        scenario: str, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "edgeagent", "demo", "--scenario", scenario, "--duration", "4", "--json",
        "--state-dir", str(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    s = json.loads(out.decode().strip().splitlines()[-1])
    assert {"export_limit_kw", "max_export_kw", "seconds_over_limit", "kwh_over_limit", "response_s", "fallback_s",
            "trips"} <= set(s)
    assert not any(c["name"].startswith(("export_", "meter_loss", "trip_")) for c in s["checks"])
