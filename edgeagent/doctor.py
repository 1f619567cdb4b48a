"""`edgeagent doctor -c FILE`: one command that tells a technician on site what is wrong, and how to fix it.

One line per check, `PASS|WARN|FAIL  what: detail -> fix`, in a fixed order: the config (if it is
invalid, its problems and exit 2, as check-config), each Modbus device, each OPC UA device (endpoint,
server certificate, nodes), each I2C bus and chip, the broker (TCP, TLS certificate, login), the
clock, free disk, the state folder, the models against their manifests, the key files. Exit 0 when
nothing FAILs (WARNs allowed), else 1.

The checks run concurrently (a dead device costs its timeout once, not once per device) and are
printed in order as they finish; devices sharing one serial port take turns. Every check runs under
its own time limit and the run under an overall one, blocking work runs in daemon threads (a hung
I2C transfer cannot keep the doctor from exiting), and an unexpected exception in a check becomes a
FAIL line naming the check: the technician never sees a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO, TypeVar

from edgeagent import config
from edgeagent.doctor_checks import (
    Finding,
    Status,
    check_disk,
    check_key_files,
    check_models,
    check_state_dir,
    fail,
    passed,
)
from edgeagent.doctor_checks_broker import check_broker
from edgeagent.doctor_checks_clock import ClockSync, check_clock, clock_sync
from edgeagent.doctor_checks_i2c import check_i2c_device, i2c_devices
from edgeagent.doctor_checks_modbus import check_modbus_device
from edgeagent.doctor_checks_opcua import LIMIT_FACTOR as OPCUA_LIMIT_FACTOR
from edgeagent.doctor_checks_opcua import check_opcua_device
from edgeagent.field.i2c_bus import BusFactory

EXIT_OK = 0
EXIT_FAILED = 1
LOCAL_LIMIT_S = 60.0  # checks of local files: hashing a large model on an SD card takes a while
CLOCK_LIMIT_S = 5.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Step:
    name: str  # names the check in a FAIL line if it times out or crashes
    run: Callable[[], Awaitable[list[Finding]]]
    limit_s: float
    lane: str = ""  # steps in the same lane run one after another (one serial port, one at a time)


@dataclass(slots=True)
class Report:
    config_path: str
    problems: list[str] = field(default_factory=list)  # config errors, when the config is invalid
    findings: list[Finding] = field(default_factory=list)
    exit_code: int = EXIT_OK

    def as_dict(self) -> dict[str, object]:
        counts = {s.value.lower(): sum(f.status is s for f in self.findings) for s in Status}
        return {"config": self.config_path, "exit_code": self.exit_code, "counts": counts,
                "problems": self.problems, "checks": [f.as_dict() for f in self.findings]}


def run_doctor(config_path: str | Path, *, out: TextIO = sys.stdout, timeout_s: float = 3.0,
               i2c_bus_factory: BusFactory | None = None, now: Callable[[], float] = time.time,
               clock_probe: Callable[[], ClockSync] | None = None) -> int:
    """Run every check, print one line each to `out` as they finish, and return the exit status:
    0 nothing failed, 1 something failed, 2 the config is invalid (its problems are printed).

    `timeout_s` bounds each network step; `i2c_bus_factory` stands in for smbus2, `now` for the
    wall clock (certificate expiry) and `clock_probe` for the NTP status (default `clock_sync`), in tests.
    Must not be called from a running event loop (it runs its own)."""

    def emit(finding: Finding) -> None:
        print(finding.line(), file=out, flush=True)

    def problems(lines: list[str]) -> None:
        for line in lines:
            print(line, file=out)

    report = diagnose(config_path, timeout_s=timeout_s, i2c_bus_factory=i2c_bus_factory, now=now,
                      clock_probe=clock_probe, on_finding=emit, on_problems=problems)
    print(_summary(report), file=out, flush=True)
    return report.exit_code


def diagnose(config_path: str | Path, *, timeout_s: float = 3.0, i2c_bus_factory: BusFactory | None = None,
             now: Callable[[], float] = time.time, clock_probe: Callable[[], ClockSync] | None = None,
             on_finding: Callable[[Finding], None] | None = None,
             on_problems: Callable[[list[str]], None] | None = None) -> Report:
    """The checks of `run_doctor` as a `Report`; `on_finding` sees each finding as it is made."""
    if not (math.isfinite(timeout_s) and timeout_s > 0):
        raise ValueError(f"doctor timeout must be a number of seconds > 0, got {timeout_s}")
    report = Report(str(config_path))

    def add(finding: Finding) -> None:
        report.findings.append(finding)
        if on_finding is not None:
            on_finding(finding)

    try:
        cfg = config.load(config_path)
    except config.ConfigError as exc:
        report.problems = list(exc.problems)
        if on_problems is not None:
            on_problems(report.problems)
        n = len(exc.problems)
        add(fail("config", f"{n} problem{'s' if n != 1 else ''} in {config_path}",
                 f"fix each line above, then run edgeagent check-config {config_path}"))
        report.exit_code = config.EXIT_CONFIG
        return report
    every: list[Any] = [*cfg.devices, *cfg.i2c_devices, *cfg.opcua_devices]
    points = sum(len(d.point_names()) for d in every)
    add(passed("config", f"{config_path} is valid (site {cfg.site.site_id}, node {cfg.site.node_id}, "
                         f"{len(every)} devices, {points} points)"))
    steps = _steps(cfg, timeout_s, i2c_bus_factory, now, clock_probe or clock_sync)
    with _quiet_libraries():
        asyncio.run(_run_steps(steps, add))
    report.exit_code = EXIT_FAILED if any(f.status is Status.FAIL for f in report.findings) else EXIT_OK
    return report


def _steps(cfg: config.Config, timeout_s: float, factory: BusFactory | None, now: Callable[[], float],
           clock_probe: Callable[[], ClockSync]) -> list[_Step]:
    steps: list[_Step] = []
    for dev in cfg.devices:
        lane = f"serial {dev.link.serial_port}" if dev.link.transport == "rtu" else ""
        steps.append(_Step(f"modbus {dev.name}", partial(check_modbus_device, dev, timeout_s), 4 * timeout_s, lane))
    for ua_dev in cfg.opcua_devices:
        steps.append(_Step(f"opcua {ua_dev.name}", partial(check_opcua_device, ua_dev, timeout_s, now),
                           OPCUA_LIMIT_FACTOR * timeout_s))
    for i2c in i2c_devices(cfg):
        steps.append(_Step(f"i2c {i2c.name}", partial(_in_thread, partial(check_i2c_device, i2c, factory)),
                           max(2 * timeout_s, 2 * i2c.timeout_s), f"i2c {i2c.bus}"))
    if cfg.uplink is None:
        steps.append(_Step("broker", partial(_value, [passed("broker", "no [uplink] configured: nothing to check")]),
                           timeout_s))
    else:
        steps.append(_Step("broker", partial(check_broker, cfg.uplink, timeout_s, now),
                           5 * timeout_s))
    steps.append(_Step("clock", partial(_in_thread, partial(check_clock, clock_probe)), CLOCK_LIMIT_S))
    local: list[tuple[str, Callable[[config.Config], list[Finding]]]] = [
        ("disk", check_disk), ("state dir", check_state_dir), ("models", check_models), ("key files", check_key_files)]
    for name, check in local:
        steps.append(_Step(name, partial(_in_thread, partial(check, cfg)), LOCAL_LIMIT_S))
    return steps


async def _value(findings: list[Finding]) -> list[Finding]:
    return findings


async def _run_steps(steps: Sequence[_Step], add: Callable[[Finding], None]) -> None:
    loop = asyncio.get_running_loop()
    lanes: dict[str, float] = {}
    for step in steps:
        lanes[step.lane or step.name] = lanes.get(step.lane or step.name, 0.0) + step.limit_s
    overall_s = max(lanes.values()) + 5.0  # every step has its own limit; this is the backstop
    deadline = loop.time() + overall_s
    last_in_lane: dict[str, asyncio.Task[list[Finding]]] = {}
    tasks: list[asyncio.Task[list[Finding]]] = []
    for step in steps:
        task = asyncio.create_task(_after(last_in_lane.get(step.lane) if step.lane else None, step))
        if step.lane:
            last_in_lane[step.lane] = task
        tasks.append(task)
    try:
        for step, task in zip(steps, tasks, strict=True):
            done, _ = await asyncio.wait([task], timeout=max(0.0, deadline - loop.time()))
            if task in done:
                findings = task.result()
            else:
                findings = [fail(step.name, f"not finished within the doctor's overall limit of {overall_s:g} s",
                                 "run the doctor again; if this repeats, the check's hardware or network hangs")]
            for finding in findings:
                add(finding)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _after(previous: asyncio.Task[list[Finding]] | None, step: _Step) -> list[Finding]:
    if previous is not None:
        await asyncio.wait([previous])
    return await _guarded(step)


async def _guarded(step: _Step) -> list[Finding]:
    """The step's findings, or one FAIL naming it if it overran its limit or raised."""
    try:
        async with asyncio.timeout(step.limit_s):
            return await step.run()
    except TimeoutError:
        return [fail(step.name, f"no result within {step.limit_s:g} s",
                     "the device or network does not answer in time; check it, or allow more with --timeout")]
    except Exception as exc:
        return [fail(step.name, f"the check itself failed: {type(exc).__name__}: {exc}",
                     "this is a bug in edgeagent doctor, please report this line; the other checks are not affected")]


async def _in_thread(fn: Callable[[], T]) -> T:
    """Run blocking `fn` in a daemon thread: if it hangs, the step's limit still ends the wait and
    the process can still exit (asyncio.to_thread's pool would be waited for at exit)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if fut.done():
            return
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        try:
            result, error = fn(), None
        except BaseException as exc:
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits any more
            loop.call_soon_threadsafe(deliver, result, error)

    threading.Thread(target=work, name="doctor check", daemon=True).start()
    return await fut


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """pymodbus and asyncua log every failed connect to stderr; the doctor reports failures in its own lines."""
    loggers = [logging.getLogger(name) for name in ("pymodbus", "asyncua")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _summary(report: Report) -> str:
    fails = sum(f.status is Status.FAIL for f in report.findings)
    warns = sum(f.status is Status.WARN for f in report.findings)
    if report.exit_code == config.EXIT_CONFIG:
        return "doctor: the config is invalid; nothing else was checked"
    if not fails and not warns:
        return f"doctor: all {len(report.findings)} checks passed"
    return (f"doctor: {fails} failure{'s' if fails != 1 else ''} and {warns} warning{'s' if warns != 1 else ''} "
            f"in {len(report.findings)} checks")


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be more than 0 s, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeagent doctor", description="check this box's set-up: config, devices, "
                                "I2C, broker, clock, disk, state folder, models and key files; one line per check")
    p.add_argument("-c", "--config", required=True, type=Path, help="site config file")
    p.add_argument("--timeout", type=_positive_seconds, default=3.0, metavar="S",
                   help="time limit for each network step, in seconds (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object with every check, at the end")
    return p


def main_doctor(argv: Sequence[str] | None = None) -> int:
    """`edgeagent doctor`: exit 0 nothing failed, 1 something failed, 2 invalid config or usage."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error
        return exc.code if isinstance(exc.code, int) else config.EXIT_CONFIG
    from edgeagent.logs import configure

    configure("console", "error", sys.stderr)  # library errors to stderr, never into the report
    if not args.json:
        return run_doctor(args.config, timeout_s=args.timeout)
    report = diagnose(args.config, timeout_s=args.timeout)
    print(json.dumps(report.as_dict(), indent=2))
    return report.exit_code


__all__ = ["EXIT_FAILED", "EXIT_OK", "Finding", "Report", "Status", "diagnose", "main_doctor", "run_doctor"]
