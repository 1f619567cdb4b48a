"""The state trace: one JSON line per physics step, flushed while running and completely on exit."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from hil.physics import Commands, Simulation
from hil.scenario import load_scenario
from hil.server import HilError, serve_plant
from hil.trace import TRACE_KEYS, StateTrace, TraceError
from tests.hil.conftest import FAST
from tests.hil.sunspec_client import write_points

HIL = [sys.executable, "-m", "hil"]


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    assert text == "" or text.endswith("\n"), "the last line is cut"
    return [json.loads(line) for line in text.splitlines()]


async def test_trace_has_every_step_with_its_values_and_publication_time(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl"
    started = time.monotonic()
    async with serve_plant("export-step", speed=FAST, trace=path) as plant:
        port = plant.endpoints["bess"]["port"]
        before_write = plant.state.t_s
        await asyncio.to_thread(write_points, port, 704, {"WSetEna": 1, "WSetMod": 1, "WSet": -20_000})
        after_write = plant.state.t_s
        await asyncio.sleep(0.45)  # ~18 plant seconds: past the load step at 10 s
        final_t = plant.state.t_s
    ended = time.monotonic()
    rows = _lines(path)
    assert all(list(row) == list(TRACE_KEYS) for row in rows)
    # One line per step, none missing, up to the last step before the plant stopped.
    times = [row["t_plant_s"] for row in rows]
    assert times[0] == pytest.approx(0.1)
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(times))
    assert times[-1] == pytest.approx(final_t)
    # The publication clock: the server's monotonic time, in order, within the test's window.
    stamps = [row["t_mono"] for row in rows]
    assert started <= stamps[0] and stamps[-1] <= ended
    assert all(a <= b for a, b in itertools.pairwise(stamps))
    assert len(set(stamps)) >= 3  # several publications (steps of one catch-up share one)
    for row in rows:
        assert row["meter_w"] == pytest.approx(row["load_w"] - row["pv_w"] - row["bess_w"], abs=1e-6)
        assert row["pv_limit_pct"] == 100.0 and 0.0 < row["pv_w"] <= row["pv_available_w"]
        assert 25.0 <= row["bess_temp_c"] < 26.0 and 50.0 <= row["soc_pct"] < 50.1
    # The setpoint as commanded on the wire, and the battery following it after the dead time.
    first_commanded = next(row for row in rows if row["bess_setpoint_w"] == -20_000.0)
    assert before_write < first_commanded["t_plant_s"] <= after_write + 0.1 + 1e-9
    assert first_commanded["bess_w"] == 0.0
    assert rows[-1]["bess_w"] == pytest.approx(-20_000.0, rel=1e-3)
    assert rows[-1]["soc_pct"] > rows[0]["soc_pct"]  # charging
    # The load step of the scenario at 10 s.
    load = {round(row["t_plant_s"], 1): row["load_w"] for row in rows}
    assert load[9.9] - load[10.0] == pytest.approx(52_500.0, rel=0.1)


def test_trace_matches_the_physics_run_offline(tmp_path: Path) -> None:
    """The trace records the states the simulation computed: a replay with the same commands agrees."""
    scenario = load_scenario("overtemp")
    sim = Simulation(scenario.params)
    trace = StateTrace(tmp_path / "t.jsonl")
    states = [sim.advance(Commands()) for _ in range(200)]
    for index, state in enumerate(states):
        trace.record(1000.0 + index, state)
    trace.close()
    rows = _lines(tmp_path / "t.jsonl")
    assert [row["t_mono"] for row in rows] == [1000.0 + i for i in range(200)]
    assert [row["bess_temp_c"] for row in rows] == [s.bess_temp_c for s in states]
    assert [row["load_w"] for row in rows] == [s.load_w for s in states]
    assert max(row["bess_temp_c"] for row in rows) > 40.0  # the heat event at 10 s is in it


def test_a_slow_disk_does_not_hold_up_the_physics_loop(tmp_path: Path) -> None:
    trace = StateTrace(tmp_path / "slow.jsonl", flush_interval_s=0.0)
    release = threading.Event()
    real_write = trace._file.write

    def slow_write(text: str) -> int:
        release.wait(5.0)
        return real_write(text)

    trace._file.write = slow_write  # type: ignore[method-assign]
    state = Simulation(load_scenario("sunny-day").params).state
    worst = 0.0
    for tick in range(50):  # 50 ticks of 20 steps while the writer is stuck
        began = time.perf_counter()
        for _ in range(20):
            trace.record(float(tick), state)
        trace.tick(float(tick) + 1.0)
        worst = max(worst, time.perf_counter() - began)
    assert worst < 0.01
    release.set()
    trace.close()
    assert len(_lines(tmp_path / "slow.jsonl")) == 50 * 20


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_write_error_is_raised_not_swallowed() -> None:
    trace = StateTrace("/dev/full", flush_interval_s=0.0)
    state = Simulation(load_scenario("sunny-day").params).state
    trace.record(1.0, state)
    trace.tick(1.0)
    trace.tick(2.0)  # hands the batch to the writer
    deadline = time.monotonic() + 5.0
    with pytest.raises(TraceError, match=r"cannot write trace file /dev/full: No space left on device"):
        while time.monotonic() < deadline:
            trace.tick(3.0)
            time.sleep(0.01)
    with pytest.raises(TraceError):
        trace.close()


async def test_an_unopenable_trace_file_is_a_clear_start_error(tmp_path: Path) -> None:
    with pytest.raises(HilError, match=r"cannot open trace file .*missing/t\.jsonl: No such file or directory"):
        async with serve_plant("sunny-day", trace=tmp_path / "missing" / "t.jsonl"):
            pass
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_serve_writes_the_trace_while_running_and_completes_it_on_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "serve.jsonl"
    proc = await asyncio.create_subprocess_exec(
        *HIL, "serve", "--scenario", "export-step", "--speed", "5", "--status-interval", "0", "--trace", str(path),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(15.0):
            ready = json.loads(await proc.stdout.readline())
        assert ready["duration_s"] == 30.0
        assert ready["events"] == [{"kind": "load_step", "at_s": 10.0, "duration_s": None, "delta_kw": -52.5}]
        started = time.monotonic()
        await asyncio.sleep(1.5)
        running = _lines(path)  # flushed while the plant runs, not only at exit
        assert len(running) >= 0.5 * 5 / 0.1
        assert running[-1]["t_mono"] >= started - 0.1
        sigterm_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _stdout, stderr = await asyncio.wait_for(proc.communicate(), 5.0)
        assert proc.returncode == 0, stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    final = _lines(path)
    assert len(final) > len(running)
    assert final[: len(running)] == running
    assert final[-1]["t_mono"] >= sigterm_at - 0.3  # the last steps before SIGTERM made it to the file
    assert all(b["t_plant_s"] - a["t_plant_s"] == pytest.approx(0.1) for a, b in itertools.pairwise(final))


def test_cli_reports_an_unwritable_trace_in_one_line(tmp_path: Path) -> None:
    target = tmp_path / "nope" / "t.jsonl"
    result = subprocess.run([*HIL, "serve", "--trace", str(target)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hil: error: cannot open trace file"), result.stderr
