"""The running plant: physics loop, one Modbus TCP server per device, fault injection.

Each device is served by a pymodbus 3.16 ``ModbusTcpServer`` on an internal loopback port,
built from a ``SimDevice`` (unit id 1, one register block from 40000, read-only except the
points the device declares writable).  pymodbus calls the device's ``action`` hook on every
request *before* it touches its registers; the hook is where this module

* copies the served register image into pymodbus' registers on reads (so the image the
  plant publishes is the single source of truth), and
* decodes writes with pysunspec2, lets the device accept or reject them (ILLEGAL_DATA_VALUE),
  and timestamps them in plant time (so revert timers know when a control was refreshed).

In front of each internal server sits a :class:`~hil.proxy.FaultProxy` on the public port
(offline and slow faults); frozen and garbage are applied when the image is published.

Every tick the loop catches the physics up with the clock, then renders and publishes all
devices without yielding to the event loop, so no client ever sees two devices at different
steps.  With ``trace`` each physics step is also written to a JSON-lines file
(:mod:`hil.trace`), stamped with the ``time.monotonic()`` of that publication.

A scenario with a ``[transformer]`` table also gets the site transformer's thermal model
(:mod:`hil.transformer`), stepped with every physics step from the same PCC flow, and an OPC UA
server for it (:mod:`hil.transformer_server`) whose variables are written every tick, after
the Modbus devices; its port is ``port_base + 3`` (or ephemeral).

Use :func:`serve_plant` (tests, demos) or ``python -m hil serve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hil.devices import Device, build_devices
from hil.faults import DEVICE_NAMES, FaultState, garble, scheduled_state
from hil.physics import Commands, PlantState, Simulation
from hil.proxy import FaultProxy
from hil.scenario import MAX_SPEED, Scenario, load_scenario
from hil.sunspec_image import ImageError
from hil.trace import StateTrace, TraceError
from hil.transformer import TransformerModel, TransformerSimulation, TransformerState
from hil.transformer_server import TransformerServer, TransformerServerError

UNIT_ID = 1
TICK_S = 0.1  # wall seconds between physics catch-ups and register publications
MAX_STEPS_PER_TICK = 5000
_READ_FUNCTIONS = frozenset({3, 4})
_WRITE_FUNCTIONS = frozenset({6, 16, 23})


class HilError(Exception):
    """A plant that cannot start (bad parameters, port in use); the message is one clear line."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one device."""

    host: str
    port: int
    unit_id: int
    sunspec_base: int
    models: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "unit_id": self.unit_id,
            "sunspec_base": self.sunspec_base,
            "models": list(self.models),
        }


class DeviceServer:
    """One device on the network: internal pymodbus server, fault proxy, published image."""

    def __init__(self, device: Device, plant: Plant, host: str, port: int, garbage_seed: int) -> None:
        self.device = device
        self._plant = plant
        self._garbage_rng = np.random.default_rng([garbage_seed, DEVICE_NAMES.index(device.name)])
        self._header = device.image.header_offsets()
        self.live: list[int] = device.image.render()  # what the device holds
        self.served: list[int] = list(self.live)  # what the network sees (stale when frozen)
        self.fault = FaultState()
        self._modbus: ModbusTcpServer | None = None
        self.proxy = FaultProxy(host, port, ("127.0.0.1", 0))

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.proxy.host, self.proxy.port, UNIT_ID, self.device.image.base, self.device.image.model_ids)

    def _simdevice(self) -> SimDevice:
        image = self.device.image
        mask = image.writable_mask()
        blocks: list[SimData] = []
        start = 0
        for i in range(1, len(mask) + 1):
            if i == len(mask) or mask[i] != mask[start]:
                blocks.append(
                    SimData(
                        image.base + start,
                        values=self.served[start:i],
                        datatype=DataType.REGISTERS,
                        readonly=not mask[start],
                    )
                )
                start = i
        return SimDevice(UNIT_ID, simdata=blocks, action=self._action)

    @staticmethod
    def _other_units() -> SimDevice:
        """Unit ids other than 1 get "gateway target failed to respond", like a TCP gateway."""
        everything = SimData(0, count=65535, values=0, datatype=DataType.REGISTERS)
        return SimDevice(0, simdata=[everything], action=_no_such_unit)

    async def start(self) -> None:
        self._modbus = ModbusTcpServer([self._simdevice(), self._other_units()], address=("127.0.0.1", 0))
        await self._modbus.serve_forever(background=True)
        listener = cast(asyncio.Server, self._modbus.transport)
        self.proxy.upstream = ("127.0.0.1", int(listener.sockets[0].getsockname()[1]))
        try:
            await self.proxy.start()
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))
            raise HilError(
                f"{self.device.name}: cannot listen on {self.proxy.host}:{self.proxy.port}: {reason}"
            ) from None

    async def stop(self) -> None:
        await self.proxy.stop()
        if self._modbus is not None:
            await self._modbus.shutdown()  # type: ignore[no-untyped-call]
            self._modbus = None

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus request hook: serve the published image, route writes to the device."""
        offset = address - start_address
        if set_values is not None and function_code in _WRITE_FUNCTIONS:
            values = [int(v) for v in set_values]
            image = self.device.image
            try:
                changes = image.decode_write(address, values, self.live)
            except ImageError:
                return ExcCodes.ILLEGAL_ADDRESS
            if not self.device.handle_write(changes, self._plant.state.t_s):
                return ExcCodes.ILLEGAL_VALUE
            self.live[offset : offset + len(values)] = values
            self.served[offset : offset + len(values)] = values
            return None
        if function_code not in _READ_FUNCTIONS and function_code not in _WRITE_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        registers[offset : offset + count] = self.served[offset : offset + count]
        return None

    def publish(self) -> None:
        """Copy the device's fresh image to the wire, unless frozen; garble it if garbage."""
        self.live = self.device.image.render()
        if self.fault.frozen:
            return
        self.served[:] = garble(self.live, self._header, self._garbage_rng) if self.fault.garbage else self.live

    async def apply_fault(self, fault: FaultState) -> None:
        """Move the device to a fault state (offline/online transitions happen here)."""
        self.fault = fault
        self.proxy.delay_s = fault.delay_ms / 1000.0
        if fault.offline and self.proxy.listening:
            await self.proxy.stop()
        elif not fault.offline and not self.proxy.listening:
            with contextlib.suppress(OSError):  # port taken meanwhile: stays offline, retried next tick
                await self.proxy.start()


async def _no_such_unit(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes | None:
    return ExcCodes.GATEWAY_NO_RESPONSE


class Plant:
    """A running plant.  Create it with :func:`serve_plant`."""

    def __init__(
        self, scenario: Scenario, *, speed: float, host: str, port_base: int, trace: str | Path | None = None
    ) -> None:
        self.scenario = scenario
        self.trace_path = None if trace is None else Path(trace)
        self._trace: StateTrace | None = None
        self.speed = speed
        self.simulation = Simulation(scenario.params)
        self.devices = build_devices(scenario.params)
        self.servers: dict[str, DeviceServer] = {}
        for index, device in enumerate(self.devices):
            port = 0 if port_base == 0 else port_base + index
            self.servers[device.name] = DeviceServer(device, self, host, port, scenario.seed)
        self._manual: dict[str, FaultState] = {name: FaultState() for name in self.servers}
        self.transformer: TransformerSimulation | None = None
        self.transformer_server: TransformerServer | None = None
        if scenario.transformer is not None:
            model = TransformerModel(scenario.transformer, scenario.transformer_events, scenario.params.start_hour)
            self.transformer = TransformerSimulation(model, self.simulation.state)
            port = 0 if port_base == 0 else port_base + len(self.devices)
            self.transformer_server = TransformerServer(host, port)
        self._t0 = 0.0
        self._task: asyncio.Task[None] | None = None

    # -- observation ------------------------------------------------------------------------

    @property
    def state(self) -> PlantState:
        """The latest physics state (the truth the registers are rendered from)."""
        return self.simulation.state

    @property
    def clock(self) -> datetime:
        """Plant local time: scenario start + plant seconds elapsed."""
        return self.scenario.start + timedelta(seconds=self.state.t_s)

    @property
    def elapsed_s(self) -> float:
        """Wall seconds since the plant started (the time base of scheduled faults)."""
        return asyncio.get_running_loop().time() - self._t0

    @property
    def endpoints(self) -> dict[str, dict[str, Any]]:
        return {name: server.endpoint.as_dict() for name, server in self.servers.items()}

    @property
    def transformer_state(self) -> TransformerState | None:
        """The transformer's true thermal state (None without a ``[transformer]`` table)."""
        return None if self.transformer is None else self.transformer.state

    def ready_event(self) -> dict[str, Any]:
        """The ``hil.ready`` line printed by ``python -m hil serve``."""
        events = [*self.scenario.events, *self.scenario.transformer_events]
        ready: dict[str, Any] = {
            "event": "hil.ready",
            "scenario": self.scenario.name,
            "speed": self.speed,
            "duration_s": self.scenario.duration_s,
            "events": [event.as_dict() for event in events],
            "devices": self.endpoints,
        }
        if self.transformer_server is not None:
            ready["transformer"] = self.transformer_server.endpoint()
        return ready

    def fault_state(self, device: str) -> FaultState:
        return self._server(device).fault

    # -- fault control ----------------------------------------------------------------------

    def _server(self, device: str) -> DeviceServer:
        if device not in self.servers:
            raise ValueError(f"unknown device {device!r}; expected one of {', '.join(self.servers)}")
        return self.servers[device]

    async def _set_manual(self, device: str, **changes: Any) -> None:
        server = self._server(device)
        self._manual[device] = dataclasses.replace(self._manual[device], **changes)
        await server.apply_fault(self._effective(device))
        server.publish()

    async def set_offline(self, device: str, offline: bool) -> None:
        """Switch a device off the network (listener closed, connections dropped) or back on.

        Manual faults add to the scenario's schedule: switching a device back on does not
        cancel a scheduled fault that is active at the time (the same for every kind).
        """
        await self._set_manual(device, offline=offline)

    async def set_frozen(self, device: str, frozen: bool) -> None:
        """Freeze a device's registers at their current values while the physics goes on."""
        await self._set_manual(device, frozen=frozen)

    async def set_garbage(self, device: str, garbage: bool) -> None:
        """Fill a device's data registers with garbage (SunS and model headers intact)."""
        await self._set_manual(device, garbage=garbage)

    async def set_slow(self, device: str, delay_ms: float) -> None:
        """Delay every reply of a device by ``delay_ms`` (0 = normal)."""
        if delay_ms < 0:
            raise ValueError("delay_ms must be >= 0")
        await self._set_manual(device, delay_ms=float(delay_ms))

    def _effective(self, device: str) -> FaultState:
        scheduled = scheduled_state(self.scenario.faults, device, self.elapsed_s)
        return scheduled.merge(self._manual[device])

    # -- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.trace_path is not None:
            try:
                self._trace = StateTrace(self.trace_path, transformer=self.transformer is not None)
            except TraceError as exc:
                raise HilError(str(exc)) from None
        self._t0 = loop.time()
        try:
            for server in self.servers.values():
                await server.start()
            if self.transformer_server is not None and self.transformer is not None:
                try:
                    await self.transformer_server.start(self.transformer.readings(), self.clock)
                except TransformerServerError as exc:
                    raise HilError(str(exc)) from None
        except BaseException:
            await self.stop()
            raise
        self._task = asyncio.create_task(self._run(), name="hil-plant")

    async def stop(self) -> None:
        """Stop the physics loop and every server; re-raise the loop's error if it died of one."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
        try:
            for server in self.servers.values():
                await server.stop()
            if self.transformer_server is not None:
                await self.transformer_server.stop()
        finally:
            trace, self._trace = self._trace, None
            if trace is not None:
                try:
                    trace.close()
                except TraceError as exc:
                    raise HilError(str(exc)) from None
        if task is not None and not task.cancelled() and task.exception() is not None:
            raise cast(BaseException, task.exception())

    async def wait(self) -> None:
        """Return only if the physics loop dies (re-raising its error); cancel to stop waiting."""
        if self._task is not None:
            await asyncio.shield(self._task)

    def _advance_to(self, plant_t: float) -> list[tuple[PlantState, TransformerState | None]]:
        """Run fixed physics steps, with the device control timers, up to plant time ``plant_t``.

        Returns the states of the steps taken (for the trace).
        """
        _meter, inverter, bess = self.devices
        dt = self.scenario.site.step_s
        stepped: list[tuple[PlantState, TransformerState | None]] = []
        for _ in range(MAX_STEPS_PER_TICK):
            next_t = self.simulation.state.t_s + dt
            if next_t > plant_t + 1e-9:
                break
            for device in self.devices:
                device.tick(next_t)
            commands = Commands(
                pv_limit_pct=inverter.limit_pct, pv_connected=inverter.connected, bess_setpoint_w=bess.setpoint_w
            )
            state = self.simulation.advance(commands)
            stepped.append((state, None if self.transformer is None else self.transformer.advance(state)))
        return stepped

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = 0
        while True:
            stepped = self._advance_to(self.speed * (loop.time() - self._t0))
            for name, server in self.servers.items():
                await server.apply_fault(self._effective(name))
            for server in self.servers.values():  # no await in here: all devices show the same step
                server.device.render(self.state)
                server.publish()
            if self.transformer_server is not None and self.transformer is not None:
                await self.transformer_server.publish(self.transformer.readings(), self.clock)
            if self._trace is not None:
                self._record(stepped, time.monotonic())
            tick += 1
            await asyncio.sleep(max(0.0, self._t0 + tick * TICK_S - loop.time()))

    def _record(self, stepped: list[tuple[PlantState, TransformerState | None]], published_mono: float) -> None:
        assert self._trace is not None
        for state, transformer in stepped:
            self._trace.record(published_mono, state, transformer)
        try:
            self._trace.tick(published_mono)
        except TraceError as exc:
            raise HilError(str(exc)) from None


@asynccontextmanager
async def serve_plant(
    scenario: Scenario | str | Path = "sunny-day",
    *,
    speed: float | None = None,
    host: str = "127.0.0.1",
    port_base: int = 0,
    trace: str | Path | None = None,
) -> AsyncIterator[Plant]:
    """Run a plant for the duration of the block.

    ``scenario`` is a :class:`~hil.scenario.Scenario`, a shipped scenario name or a path;
    ``speed`` (plant seconds per wall second) overrides the scenario's; ``port_base`` 0 gives
    each device an ephemeral port, otherwise meter = N, inverter = N+1, bess = N+2 (and the
    transformer's OPC UA server N+3, if the scenario has one);
    ``trace`` names a file that gets one JSON line per physics step (see :mod:`hil.trace`),
    complete once the block has been left.
    Raises :class:`~hil.scenario.ScenarioError` or :class:`HilError` if it cannot start.
    """
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    speed = scenario.speed if speed is None else float(speed)
    if not 0.0 < speed <= MAX_SPEED:
        raise HilError(f"speed must be within (0, {MAX_SPEED:g}], got {speed:g}")
    ports = len(DEVICE_NAMES) + (scenario.transformer is not None)
    if port_base != 0 and not 1 <= port_base <= 65535 - (ports - 1):
        raise HilError(f"port base must be 0 (ephemeral) or 1..{65535 - ports + 1}, got {port_base}")
    plant = Plant(scenario, speed=speed, host=host, port_base=port_base, trace=trace)
    await plant.start()
    try:
        yield plant
    finally:
        await plant.stop()
