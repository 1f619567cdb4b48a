"""Doctor checks for Modbus devices: reachable (TCP connect, or the RTU port opens), then the points.

For a SunSpec device: the "SunS" marker found, every configured point resolved in the device's
model chain (naming the ones that are not there), then one read of them all. For a plain register
map: one read of the configured registers. The read catches what a connect cannot: a wrong unit id,
registers the device does not have, and replies that hold garbage (not-implemented sentinels,
broken scale factors). Each device's whole check runs under the doctor's timeout, each request
under the device's own timeout (at most the doctor's). A fresh connection is used and closed; no
register is written.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edgeagent.config import DeviceConfig
from edgeagent.doctor_checks import Finding, fail, os_reason, passed, user_name
from edgeagent.field.modbus import DeviceReplyError, ExceptionReply, RequestTimeout
from edgeagent.field.points import RegisterPoint, Table
from edgeagent.field.readplan import ReadBlock, decode_points, plan_reads
from edgeagent.field.sunspec import NoSuchRegisters, SunSpecError, SunSpecMap, discover

_SHOW_VALUES = 6  # values shown on a PASS line; the rest are counted


async def check_modbus_device(dev: DeviceConfig, timeout_s: float) -> list[Finding]:
    what = f"modbus {dev.name}"
    request_s = min(dev.timeout_s, timeout_s)
    if dev.link.transport == "tcp":
        problem = await _reach_tcp(dev, what, request_s)
    else:
        problem = _reach_rtu(dev, what)
    if problem is not None:
        return [problem]
    client = _client(dev, request_s)
    try:
        try:
            async with asyncio.timeout(request_s * 2):
                ok = await client.connect()
        except (TimeoutError, OSError):
            ok = False
        if not ok:
            return [fail(what, f"cannot open {dev.link.describe()}", _link_fix(dev))]
        how = "TCP connection accepted" if dev.link.transport == "tcp" else "serial port opened"
        found = [passed(what, f"{dev.link.describe()}: {how}")]
        found.append(await _check_points(dev, client, request_s))
        return found
    finally:
        client.close()


async def _reach_tcp(dev: DeviceConfig, what: str, timeout_s: float) -> Finding | None:
    host, port = dev.link.host, dev.link.port
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return fail(what, f"no TCP connection to {host}:{port} within {timeout_s:g} s",
                    f"check the device's IP address and power, the cable or switch, and any firewall between "
                    f"this box and port {port}")
    except OSError as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else os_reason(exc)
        return fail(what, f"cannot connect to {host}:{port}: {reason}",
                    f"check that the device is on and serves Modbus TCP on port {port} "
                    f"(devices.{dev.name}.host and .port; Modbus TCP is usually 502)")
    writer.close()
    return None


def _reach_rtu(dev: DeviceConfig, what: str) -> Finding | None:
    port = dev.link.serial_port
    if not Path(port).exists():
        return fail(what, f"serial port {port} does not exist",
                    f"plug in the RS-485 adapter, or fix devices.{dev.name}.serial_port (ls /dev/serial/by-id/ "
                    "gives names that survive a reboot)")
    if not os.access(port, os.R_OK | os.W_OK):
        return fail(what, f"{user_name()} may not open {port}",
                    "add the service's user to group dialout (usermod -aG dialout <user>, then restart it)")
    return None


def _link_fix(dev: DeviceConfig) -> str:
    if dev.link.transport == "tcp":
        return f"check that the device serves Modbus TCP on {dev.link.host}:{dev.link.port}"
    return f"check that no other program holds {dev.link.serial_port} (lsof {dev.link.serial_port})"


def _client(dev: DeviceConfig, request_s: float) -> Any:
    link = dev.link
    if link.transport == "tcp":
        return AsyncModbusTcpClient(link.host, port=link.port, timeout=request_s, retries=0, reconnect_delay=0)
    return AsyncModbusSerialClient(link.serial_port, baudrate=link.baudrate, parity=link.parity,
                                   stopbits=link.stopbits, bytesize=link.bytesize, timeout=request_s,
                                   retries=0, reconnect_delay=0)


async def _read(client: Any, dev: DeviceConfig, table: Table, address: int, count: int, request_s: float) -> list[int]:
    fn = client.read_holding_registers if table is Table.HOLDING else client.read_input_registers
    try:
        async with asyncio.timeout(request_s + 0.5):
            reply = await fn(address, count=count, device_id=dev.link.unit_id)
    except TimeoutError:
        raise RequestTimeout(f"no reply within {request_s * 1000:.0f} ms") from None
    except ModbusException as exc:
        if not client.connected:
            raise ConnectionError("the device closed the connection") from None
        raise RequestTimeout(str(exc).strip() or "no valid reply") from None
    if reply.isError():
        raise ExceptionReply(int(getattr(reply, "exception_code", 0)))
    registers = list(getattr(reply, "registers", []))
    if len(registers) != count:
        raise DeviceReplyError(f"asked for {count} registers at {address}, got {len(registers)}")
    return registers


def _request_failure(what: str, dev: DeviceConfig, exc: Exception, doing: str) -> Finding:
    """A failed request, in the words that point at its usual cause."""
    unit = dev.link.unit_id
    if isinstance(exc, RequestTimeout):
        fix = f"check devices.{dev.name}.unit_id ({unit}) against the device's setting"
        if dev.link.transport == "rtu":
            fix += ", the baud rate and parity, the A/B wires (swapped is common) and the bus termination"
        return fail(what, f"no answer {doing} from unit {unit}: {exc}", fix)
    if isinstance(exc, ExceptionReply) and exc.code in (10, 11):
        return fail(what, f"the gateway answers {doing} but not for unit {unit}: {exc}",
                    f"check devices.{dev.name}.unit_id and that the device behind the gateway is on and wired")
    if isinstance(exc, ExceptionReply) and exc.code == 2:
        return fail(what, f"the device has no such registers ({doing}): {exc}",
                    f"check devices.{dev.name}.points addresses and table against the device's register map "
                    "(maps that count from 1 need address - 1)")
    if isinstance(exc, ConnectionError):
        return fail(what, f"{exc} ({doing})", "check that no other client holds the device's only connection")
    return fail(what, f"bad reply {doing}: {exc}", "check the unit id; a reply of the wrong length often means "
                "two devices answer on the same unit id, or a noisy RS-485 line")


async def _check_points(dev: DeviceConfig, client: Any, request_s: float) -> Finding:
    what = f"modbus {dev.name} points"
    points: Sequence[RegisterPoint] = dev.registers
    found_where = ""
    if dev.kind == "sunspec":
        what = f"sunspec {dev.name}"
        result = await _discover(dev, client, what, request_s)
        if isinstance(result, Finding):
            return result
        smap = result
        models = ", ".join(str(m.model_id) for m in smap.models)
        found_where = f"SunSpec at {smap.base} (models {models}); "
        resolved, missing = [], []
        for ref in dev.sunspec_points:
            try:
                resolved.append(smap.resolve(ref.ref, ref.name))
            except SunSpecError as exc:
                missing.append(f"{ref.ref} ({exc})")
        if missing:
            return fail(what, f"{found_where}not on this device: {'; '.join(missing)}",
                        f"correct devices.{dev.name}.points to points of the models this device has")
        points = resolved
    blocks = plan_reads(points)
    data: dict[ReadBlock, Sequence[int]] = {}
    for block in blocks:
        try:
            data[block] = await _read(client, dev, block.table, block.address, block.count, request_s)
        except (RequestTimeout, ExceptionReply, DeviceReplyError, ConnectionError) as exc:
            doing = f"to a read of {block.count} registers at {block.address}"
            return _request_failure(what, dev, exc, doing)
    results = decode_points(data, points)
    bad = [f"{r.name} ({r.reason})" for r in results if not r.ok]
    if bad:
        return fail(what, f"{found_where}{len(bad)} of {len(results)} points unreadable: {'; '.join(bad)}",
                    "the device answers but does not provide these values: check its settings and firmware, "
                    "remove points it does not implement, and restart a gateway that serves garbage")
    units = {p.name: p.unit for p in points}
    shown = [f"{r.name}={_fmt(r.value)}{' ' + units[r.name] if units[r.name] else ''}"
             for r in results[:_SHOW_VALUES]]
    more = f" and {len(results) - _SHOW_VALUES} more" if len(results) > _SHOW_VALUES else ""
    counted = f"{len(results)} point{'s' if len(results) != 1 else ''}"
    return passed(what, f"{found_where}{counted} read: {', '.join(shown)}{more}")


def _fmt(value: float | str | None) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value)


async def _discover(dev: DeviceConfig, client: Any, what: str, request_s: float) -> SunSpecMap | Finding:
    async def read(address: int, count: int) -> Sequence[int]:
        try:
            return await _read(client, dev, Table.HOLDING, address, count, request_s)
        except ExceptionReply as exc:
            if exc.code == 2:
                raise NoSuchRegisters(str(exc)) from None
            raise

    try:
        return await discover(read, dev.sunspec_bases)
    except SunSpecError as exc:
        return fail(what, str(exc), f"check devices.{dev.name}.unit_id and sunspec_bases (the device's manual gives "
                    "the SunSpec base register), or use kind = \"modbus\" with a register map")
    except (RequestTimeout, ExceptionReply, DeviceReplyError, ConnectionError) as exc:
        return _request_failure(what, dev, exc, "during SunSpec discovery")


__all__ = ["check_modbus_device"]
