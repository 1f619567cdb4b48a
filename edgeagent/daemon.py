"""Wiring and supervision: field adapters, the scan cycle, systemd notify, orderly shutdown.

One `asyncio.TaskGroup` holds every task; nothing runs outside it, so nothing is orphaned. A
field adapter never takes the daemon down (it is restarted by `supervise`), but a failure of the
cycle itself does: better systemd restarts us than the plant runs without interlocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from edgeagent import __version__, control_handlers, safety_wiring
from edgeagent.config import Config
from edgeagent.control import ControlServer
from edgeagent.cycle import Command, CycleRecord, ScanCycle
from edgeagent.decisions.service import DecisionService
from edgeagent.field.i2c_adapter import I2cDevice
from edgeagent.field.i2c_bus import BusFactory
from edgeagent.field.modbus import ModbusDevice
from edgeagent.field.opcua import OpcUaDevice
from edgeagent.history import Clock, HistoryService, RecordingImage
from edgeagent.image import PointSpec, ProcessImage, Quality
from edgeagent.notify import Notifier
from edgeagent.supervise import LinkState
from edgeagent.transformer_service import TransformerService
from edgeagent.uplink.service import Identity, Uplink

log = structlog.get_logger("edgeagent.daemon")

SHUTDOWN_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Health:
    """A one-glance summary, for STATUS= and the terminal."""

    devices_online: int
    devices: int
    points_good: int
    points: int
    cycles: int
    overruns: int
    uplink: str = ""

    def line(self) -> str:
        return (f"devices {self.devices_online}/{self.devices} online, points {self.points_good}/"
                f"{self.points} good, cycles {self.cycles}, overruns {self.overruns}"
                + (f", uplink {self.uplink}" if self.uplink else ""))


class Daemon:
    def __init__(self, cfg: Config, notifier: Notifier | None = None, i2c_bus_factory: BusFactory | None = None,
                 history_clock: Clock = time.time) -> None:
        """`i2c_bus_factory` stands in for smbus2 (tests, the HIL bench); None opens /dev/i2c-N.
        `history_clock` dates the hours of the point history (an accelerated scenario's simulated clock)."""
        self.cfg = cfg
        self.notifier = notifier or Notifier()
        specs = [PointSpec(name, "", d.max_age_s) for d in cfg.devices for name in d.point_names()]
        specs += [spec for d in cfg.i2c_devices for spec in d.point_specs()]
        specs += [spec for d in cfg.opcua_devices for spec in d.point_specs()]
        self.history = HistoryService.in_state_dir(cfg.state_dir, cfg.history, history_clock)
        self.image: ProcessImage = RecordingImage(specs, cfg.scan.history_len, self.history.observe)
        self.devices = {d.name: ModbusDevice(d, self.image) for d in cfg.devices}
        self.i2c = {d.name: I2cDevice(d, self.image, i2c_bus_factory) for d in cfg.i2c_devices}
        self.opcua = {d.name: OpcUaDevice(d, self.image) for d in cfg.opcua_devices}
        self.uplink: Uplink | None = None
        if cfg.uplink is not None:
            identity = Identity(cfg.site.site_id, cfg.site.node_id, __version__, cfg.sha256)
            self.uplink = Uplink(cfg.uplink, identity, Path(cfg.state_dir), self.image)
        links = [d.link for d in self.devices.values()] + [d.link for d in self.i2c.values()]
        for link in links + [d.link for d in self.opcua.values()]:
            link.on_change = self._device_event
        self.safety = safety_wiring.build(cfg.safety)
        self.decisions = DecisionService(
            site=cfg.site.site_id, node=cfg.site.node_id, state_dir=Path(cfg.state_dir), trust=cfg.trust,
            cfg=cfg.decisions, safety=self.safety, device_online=self._device_online, config_path=cfg.path,
            config_sha256=cfg.sha256)
        if self.uplink is not None:
            self.uplink.signed_handler = self.decisions.submit_signed  # verified off the event loop
            self.uplink.audit_head = lambda: self.decisions.head or (0, "0" * 64)
            self.decisions.publish = self.uplink.emit_decision
            self.decisions.emit_event = self.uplink.emit_event
        self.transformer: TransformerService | None = None
        if cfg.transformer is not None:
            self.transformer = TransformerService(cfg.transformer, self.history, self.decisions,
                                                  emit_event=self._emit_event, clock=history_clock)
        interlock_phases, controller_phases = self.safety.phases
        self.cycle = ScanCycle(self.image, cfg.scan.period_s, interlocks=interlock_phases,
                               controllers=controller_phases, actions=[self.decisions.phase],
                               arbiter=self.safety.arbitrate, write=self._route, on_cycle=self._on_cycle)
        self.control_path = Path(cfg.state_dir) / "control.sock"
        self.control = ControlServer(self.control_path)
        control_handlers.register(self.control, self)
        self.started_mono = time.monotonic()
        self.stop_event = asyncio.Event()
        self._watchdog_every_s = min(1.0, self.notifier.watchdog_interval_s() or 1.0)
        self._last_watchdog = 0.0
        self._unroutable: set[str] = set()
        self._drain_failed = False

    def _device_event(self, link: LinkState, change: str) -> None:
        device = str(link.fields.get("device", ""))
        if change != "offline":
            self.safety.forget_device(device)  # its setpoints are unknown now: write them again
        if self.uplink is None:
            return
        if change == "offline":
            self.uplink.emit_event("device.offline", "warning", {"device": device, "reason": link.reason})
        else:
            self.uplink.emit_event(f"device.{change}", "info", {"device": device})

    def _emit_event(self, name: str, severity: str, data: Mapping[str, Any]) -> None:
        if self.uplink is not None:
            self.uplink.emit_event(name, severity, data)

    def _device_online(self, name: str) -> bool:
        device = self.devices.get(name) or self.opcua.get(name)
        return device is not None and device.online

    def _route(self, command: Command) -> None:
        device: ModbusDevice | OpcUaDevice | None = self.devices.get(command.device) or self.opcua.get(command.device)
        if device is None:
            if command.device not in self._unroutable:
                self._unroutable.add(command.device)
                log.error("cycle.unroutable_command", device=command.device, point=command.point)
            return
        device.submit(command)

    def _on_cycle(self, record: CycleRecord) -> None:
        # Publishing what the safety phases noticed must never stop the cycle that acts on it:
        # a failure here is logged once (the record stays in the phases' own state and logs).
        try:
            self.safety.drain(self.uplink.emit_event if self.uplink is not None else None)
        except Exception as exc:
            if not self._drain_failed:
                self._drain_failed = True
                log.error("safety.events_not_published", error=repr(exc))
        self.decisions.after_cycle(record)  # queues audit records only: no I/O on the cycle
        # The watchdog is fed from the cycle only: if the cycle stalls, systemd restarts us.
        if record.t_mono - self._last_watchdog >= self._watchdog_every_s:
            self._last_watchdog = record.t_mono
            self.notifier.watchdog()

    def health(self) -> Health:
        snap = self.image.snapshot()
        return Health(
            devices_online=sum(d.online for d in self.devices.values()) + sum(d.online for d in self.i2c.values())
            + sum(d.online for d in self.opcua.values()),
            devices=len(self.devices) + len(self.i2c) + len(self.opcua),
            points_good=sum(v.quality is Quality.GOOD for v in snap.values()),
            points=len(snap),
            cycles=self.cycle.stats.cycles,
            overruns=self.cycle.stats.overruns,
            uplink=(f"{'online' if self.uplink.mqtt.connected else 'offline'} ({self.uplink.backlog()} waiting)"
                    if self.uplink is not None else ""),
        )

    def request_stop(self) -> None:
        self.stop_event.set()

    async def run(self, extra_tasks: tuple[Callable[[], Coroutine[Any, Any, None]], ...] = ()) -> None:
        """Run until `request_stop()` (or SIGTERM/SIGINT when installed by `serve`).

        Raises `ControlStartError` before anything else starts when the control socket cannot be
        had (e.g. another daemon already serves this state directory).
        """
        log.info("daemon.starting", version=__version__, config=self.cfg.path,
                 config_sha256=self.cfg.sha256[:12], site=self.cfg.site.site_id, node=self.cfg.site.node_id,
                 devices=len(self.devices) + len(self.i2c) + len(self.opcua), period_ms=self.cfg.scan.period_s * 1000)
        await self.control.start()
        try:
            await self.decisions.open()
            await self._run(extra_tasks)
        finally:
            await self.control.close()  # already closed by its task unless the group failed early
            self.decisions.close()  # already closed by its task unless the group failed early
            if self.transformer is not None:
                self.transformer.close()
            self.history.close()  # writes the hour in progress; merged with the rest of it after a restart

    async def _run(self, extra_tasks: tuple[Callable[[], Coroutine[Any, Any, None]], ...]) -> None:
        tasks: list[asyncio.Task[None]] = []
        async with asyncio.TaskGroup() as tg:
            for name, device in self.devices.items():
                tasks.append(tg.create_task(device.run(), name=f"device:{name}"))
            for name, sensor in self.i2c.items():
                tasks.append(tg.create_task(sensor.run(), name=f"i2c:{name}"))
            for name, server in self.opcua.items():
                tasks.append(tg.create_task(server.run(), name=f"opcua:{name}"))
            tasks.append(tg.create_task(self.cycle.run(self.stop_event), name="cycle"))
            tasks.append(tg.create_task(self._status_loop(), name="status"))
            tasks.append(tg.create_task(self.control.serve(), name="control"))
            tasks.append(tg.create_task(self.history.run(), name="history"))
            tg.create_task(self.decisions.run(), name="decisions")
            if self.transformer is not None:
                tasks.append(tg.create_task(self.transformer.run(), name="transformer"))
            uplink_task = None
            if self.uplink is not None:
                uplink_task = tg.create_task(self.uplink.run(), name="uplink")
            for factory in extra_tasks:
                tasks.append(tg.create_task(factory(), name="extra"))
            self.notifier.ready(f"running: {self.health().line()}")
            log.info("daemon.ready")
            await self.stop_event.wait()
            log.info("daemon.stopping")
            self.notifier.stopping()
            for device in self.devices.values():
                device.stop()
            for sensor in self.i2c.values():
                sensor.stop()
            for server in self.opcua.values():
                server.stop()
            if self.uplink is not None:
                self.uplink.request_stop()  # it ends itself: goodbye, DISCONNECT, outbox closed
            self.decisions.request_stop()  # it ends itself once the queued audit records are written
            for task in tasks:
                if task is not uplink_task:
                    task.cancel()
        log.info("daemon.stopped", **self.cycle_summary())

    async def _status_loop(self) -> None:
        last = ""
        while True:
            line = self.health().line()
            if line != last:
                self.notifier.status(line)
                last = line
            await asyncio.sleep(5.0)

    def cycle_summary(self) -> dict[str, float | int]:
        stats = self.cycle.stats
        durations = sorted(stats.durations_s) or [0.0]
        return {
            "cycles": stats.cycles,
            "overruns": stats.overruns,
            "missed_periods": stats.missed_periods,
            "phase_faults": stats.phase_faults,
            "cycle_median_ms": round(durations[len(durations) // 2] * 1000, 3),
            "cycle_max_ms": round(stats.max_duration_s * 1000, 3),
        }


async def serve(daemon: Daemon) -> None:
    """Run the daemon with signal handling and a bounded shutdown."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    run = asyncio.create_task(daemon.run(), name="daemon")
    stop = asyncio.create_task(daemon.stop_event.wait(), name="stop")
    try:
        await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            try:
                async with asyncio.timeout(SHUTDOWN_TIMEOUT_S):
                    await run
            except TimeoutError:
                log.error("daemon.shutdown_timeout", timeout_s=SHUTDOWN_TIMEOUT_S)
        else:
            run.result()
    finally:
        stop.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
