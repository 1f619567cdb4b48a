"""`edgeagent demo`: the HIL plant and the daemon together on loopback, with a live view.

The plant runs as its own process (`python -m hil serve`), exactly as a bench would run it, so
the daemon reads it over real Modbus TCP and the two never share code or an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import IO, Any

from edgeagent import config, demo_decisions, demo_uplink, logs
from edgeagent.daemon import Daemon
from edgeagent.demo_safety import EXPECTATIONS, SafetyRecorder
from edgeagent.demo_safety import report as safety_report
from edgeagent.image import Quality
from edgeagent.view import format_value, render, safety_lines

PLANT_START_TIMEOUT_S = 30.0


class DemoError(Exception):
    """A problem starting the demo, explained for the user (exit status 2)."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str


def run_demo(scenario: str, duration_s: float | None, speed: float, as_json: bool,
             state_dir: Path | None, broker: str | None = None) -> int:
    if duration_s is not None and duration_s <= 0:
        print("--duration must be positive", file=sys.stderr)
        return 2
    if speed <= 0:
        print("--speed must be positive", file=sys.stderr)
        return 2
    kept = state_dir is not None
    with contextlib.ExitStack() as stack:
        if state_dir is None:
            state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgeagent-demo-")))
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            log_file = stack.enter_context(open(state_dir / "edgeagent.log", "a", encoding="utf-8"))
            hil_log = stack.enter_context(open(state_dir / "hil.log", "w", encoding="utf-8"))
        except OSError as exc:
            print(f"cannot use state directory {state_dir}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        logs.configure("json", "info", stream=log_file)
        try:
            summary = asyncio.run(_demo(scenario, duration_s, speed, state_dir, hil_log, broker))
        except (DemoError, ValueError) as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 2
        _print_summary(summary, as_json, state_dir if kept else None)
        return 0 if summary["passed"] else 1


async def _demo(scenario: str, duration_s: float | None, speed: float, state_dir: Path,
                hil_log: IO[str], broker_url: str | None) -> dict[str, Any]:
    plant_scenario, up = await demo_uplink.prepare(scenario, broker_url, state_dir)
    trace_path = state_dir / "plant-trace.jsonl"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hil", "serve", "--scenario", plant_scenario, "--speed", str(speed),
        "--host", "127.0.0.1", "--port-base", "0", "--trace", str(trace_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        ready = await _wait_ready(proc, hil_log)
        ready["scenario"] = scenario
        if duration_s is None and ready.get("duration_s"):
            duration_s = float(ready["duration_s"]) / speed  # the scenario's own length
        approval = demo_decisions.ApprovalDemo.create(state_dir) if scenario == demo_decisions.SCENARIO else None
        cfg = _demo_config(ready, state_dir, up.config_toml() + (approval.config_toml() if approval else ""))
        daemon = Daemon(cfg)
        recorder = SafetyRecorder(daemon)
        await up.start_witness(cfg.site.site_id, cfg.site.node_id)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, daemon.request_stop)
        started = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            background = [tg.create_task(_drain(proc, hil_log)), tg.create_task(up.drive_outage(duration_s))]
            if approval is not None:
                background.append(tg.create_task(approval.drive(daemon)))
            stopped_at: list[float] = []  # when the stop was asked: the end state is judged at that moment,
            # not after the shutdown, the witness and the plant's exit have aged every sample

            async def note_stop() -> None:
                await daemon.stop_event.wait()
                stopped_at.append(time.monotonic())

            async with asyncio.TaskGroup() as inner:
                inner.create_task(note_stop())
                inner.create_task(daemon.run())
                inner.create_task(_view_loop(daemon, up, ready, duration_s, started, live=sys.stdout.isatty()))
            elapsed = time.monotonic() - started
            await asyncio.sleep(0.5)  # the witness sees the goodbye
            proc.terminate()  # the plant flushes its trace on the way out
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await proc.wait()
            summary = _summary(daemon, up, ready, elapsed, recorder, trace_path, stopped_at[0])
            if approval is not None:
                extra, approval_checks = approval.report(daemon)
                summary.update(extra)
                summary["checks"] += [{"name": n, "passed": ok, "detail": d} for n, ok, d in approval_checks]
                summary["passed"] = summary["passed"] and all(ok for _, ok, _ in approval_checks)
            await asyncio.to_thread(up.stop_witness)
            for task in background:
                task.cancel()
        return summary
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if up.broker is not None:
            await up.broker.stop()


async def _wait_ready(proc: asyncio.subprocess.Process, hil_log: IO[str]) -> dict[str, Any]:
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(PLANT_START_TIMEOUT_S):
            line = await proc.stdout.readline()
    except TimeoutError:
        raise DemoError(f"the HIL plant did not start within {PLANT_START_TIMEOUT_S:.0f} s") from None
    if not line:
        await proc.wait()
        err = (await proc.stderr.read()).decode(errors="replace").strip()
        raise DemoError(err or f"the HIL plant exited with status {proc.returncode}")
    try:
        ready: dict[str, Any] = json.loads(line)
        ports = {name: int(ready["devices"][name]["port"]) for name in ("meter", "inverter", "bess")}
    except (ValueError, KeyError, TypeError):
        raise DemoError(f"unexpected first line from the HIL plant: {line[:200]!r}") from None
    ready["ports"] = ports
    hil_log.write(line.decode(errors="replace"))
    return ready


async def _drain(proc: asyncio.subprocess.Process, hil_log: IO[str]) -> None:
    """Copy the plant's output to hil.log so its pipes never fill up and stall it."""
    assert proc.stdout is not None and proc.stderr is not None

    async def copy(stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            hil_log.write(line.decode(errors="replace"))

    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(copy(proc.stdout), copy(proc.stderr))


def _demo_config(ready: dict[str, Any], state_dir: Path, extra_toml: str = "") -> config.Config:
    template = resources.files("edgeagent").joinpath("examples/demo.toml").read_text(encoding="utf-8")
    text = Template(template).substitute(
        state_dir=str(state_dir).replace("\\", "/"), meter_port=ready["ports"]["meter"],
        inverter_port=ready["ports"]["inverter"], bess_port=ready["ports"]["bess"],
    )
    return config.parse(text + extra_toml, "demo.toml")


async def _view_loop(daemon: Daemon, up: demo_uplink.DemoUplink, ready: dict[str, Any],
                     duration_s: float | None, started: float, live: bool) -> None:
    """Refresh the terminal view every second; stop the daemon when the duration is over."""
    try:
        last_line = 0.0
        while not daemon.stop_event.is_set():
            elapsed = time.monotonic() - started
            if duration_s is not None and elapsed >= duration_s:
                if daemon.uplink is not None:
                    await up.drain(daemon.uplink)
                daemon.request_stop()
                break
            header = (f"edgeagent demo — scenario {ready.get('scenario', '?')}, speed {ready.get('speed', 1)}x, "
                      f"{elapsed:5.1f} s" + (f" of {duration_s:g} s" if duration_s else " (Ctrl-C to stop)"))
            devices = {name: ("online" if d.online else f"OFFLINE: {d.link.reason}")
                       for name, d in daemon.devices.items()}
            if daemon.uplink is not None:
                devices["uplink"] = _uplink_line(daemon, up)
            safety = safety_lines(daemon.safety.interlocks, daemon.safety.export_limit)
            if live:
                sys.stdout.write("\x1b[H\x1b[2J" + render(daemon.image.snapshot(), header, devices, safety) + "\n")
                sys.stdout.flush()
            elif elapsed - last_line >= 5.0 or last_line == 0.0:
                last_line = elapsed or 1e-9
                uplink = f"; uplink {devices['uplink']}" if "uplink" in devices else ""
                extra = "".join(f"; {line.strip()}" for line in safety)
                print(f"[{elapsed:5.1f} s] {daemon.health().line()}{uplink}{' '.join(extra.split())}",
                      file=sys.stderr, flush=True)
            await asyncio.sleep(1.0)
    finally:
        daemon.request_stop()


def _uplink_line(daemon: Daemon, up: demo_uplink.DemoUplink) -> str:
    assert daemon.uplink is not None
    link = daemon.uplink.mqtt.link
    state = f"online ({up.broker_url})" if link.up else f"OFFLINE: {up.note or link.reason}"
    return f"{state}, {daemon.uplink.backlog()} records waiting"


def _summary(daemon: Daemon, up: demo_uplink.DemoUplink, ready: dict[str, Any], elapsed_s: float,
             recorder: SafetyRecorder, trace_path: Path, stopped_at: float) -> dict[str, Any]:
    snap = daemon.image.snapshot(stopped_at)
    points = {
        name: {"value": view.value, "unit": view.sample.unit, "quality": view.quality.value,
               "age_s": round(view.age_s, 3), **({"reason": view.sample.reason} if view.sample.reason else {})}
        for name, view in sorted(snap.items())
    }
    devices = {name: {"online": d.online, "polls": d.polls, "reconnects": d.link.restarts,
                      **({"reason": d.link.reason} if not d.online else {})}
               for name, d in daemon.devices.items()}
    cycle = daemon.cycle_summary()
    bad = [n for n, v in snap.items() if v.quality is not Quality.GOOD]
    checks = [
        Check("all_points_good_at_end", not bad, f"not good: {', '.join(sorted(bad))}" if bad else "ok"),
        Check("all_devices_online_at_end", all(d.online for d in daemon.devices.values()),
              ", ".join(f"{n}: {'online' if d.online else d.link.reason}" for n, d in daemon.devices.items())),
        Check("no_phase_faults", cycle["phase_faults"] == 0, f"{cycle['phase_faults']} phase faults"),
        Check("cycle_ran", cycle["cycles"] > 0, f"{cycle['cycles']} cycles"),
    ]
    scenario = Path(str(ready.get("scenario"))).stem
    safety, safety_checks = safety_report(recorder, scenario, trace_path)
    checks.extend(Check(name, passed, detail) for name, passed, detail in safety_checks)
    uplink: dict[str, Any] = {}
    if daemon.uplink is not None:
        uplink = up.summary(daemon.uplink)
        if "lost" in uplink:
            checks.append(Check("no_records_lost", uplink["lost"] == 0,
                                f"emitted {uplink['emitted']}, received {uplink['received']}, "
                                f"waiting {uplink['backlog']}, lost {uplink['lost']}"))
        if up.outage is not None:
            checks.append(Check("broker_outage_survived", up.outage_done and uplink.get("backlog") == 0,
                                f"outage {'done' if up.outage_done else 'not reached'}, "
                                f"max backlog {uplink['max_backlog']}"))
    return {
        "scenario": ready.get("scenario"),
        "duration_s": round(elapsed_s, 3),
        "speed": ready.get("speed"),
        "passed": all(c.passed for c in checks),
        **({"expectation": EXPECTATIONS[scenario].description} if scenario in EXPECTATIONS else {}),
        **safety,
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in checks],
        "points": points,
        "devices": devices,
        "cycle": cycle,
        **({"uplink": uplink, **{k: uplink[k] for k in ("emitted", "delivered", "lost", "max_backlog")
                                 if k in uplink}} if uplink else {}),
    }


def _print_summary(summary: dict[str, Any], as_json: bool, state_dir: Path | None) -> None:
    print()
    print(f"scenario {summary['scenario']}: {'PASSED' if summary['passed'] else 'FAILED'} "
          f"after {summary['duration_s']:.1f} s")
    for check in summary["checks"]:
        print(f"  [{'ok' if check['passed'] else 'FAIL'}] {check['name']}: {check['detail']}")
    if "export_limit_kw" in summary:
        print(f"  export: limit {summary['export_limit_kw']:g} kW, max {format_value(summary['max_export_kw'])} kW, "
              f"{summary['seconds_over_limit']} s and {summary['kwh_over_limit']} kWh over, "
              f"response {format_value(summary['response_s'])} s, fallback {format_value(summary['fallback_s'])} s")
    for trip in summary.get("trips", []):
        why = " (at start-up: inputs not read yet)" if trip.get("cause") == "input" else ""
        print(f"  trip {trip['name']}{why}: reaction {format_value(trip['reaction_s'])} s, "
              f"{'cleared' if trip['cleared'] else 'NOT cleared'}")
    cycle = summary["cycle"]
    print(f"  cycle: {cycle['cycles']} cycles, median {cycle['cycle_median_ms']} ms, "
          f"max {cycle['cycle_max_ms']} ms, overruns {cycle['overruns']}")
    for name, dev in summary["devices"].items():
        print(f"  device {name}: {'online' if dev['online'] else 'offline'}, {dev['polls']} polls, "
              f"{dev['reconnects']} reconnects")
    for name, point in summary["points"].items():
        print(f"  {name:<20} {format_value(point['value']):>14} {point['unit']:<5} {point['quality']}")
    print(f"  logs: {state_dir}" if state_dir else "  logs: removed with the temporary state (see --state-dir)")
    if as_json:
        print(json.dumps(summary, separators=(",", ":"), default=str))
