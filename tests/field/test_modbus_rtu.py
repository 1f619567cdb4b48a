"""Modbus RTU: the adapter and a pymodbus RTU server talk over a pseudo-terminal pair.

Two ptys are bridged by a relay (what `socat pty pty` does), so each side opens a real serial
device path and pymodbus' RTU framing and CRC are exercised end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import termios
import tty
from collections.abc import AsyncIterator

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import ModbusSerialServer

from edgeagent import config
from edgeagent.cycle import Command
from edgeagent.field.modbus import ModbusDevice
from edgeagent.image import PointSpec, ProcessImage, Quality
from tests.helpers import eventually


def _raw_pty() -> tuple[int, str]:
    master, slave = pty.openpty()
    tty.setraw(slave, termios.TCSANOW)
    path = os.ttyname(slave)
    os.close(slave)
    return master, path


@contextlib.asynccontextmanager
async def pty_bridge() -> AsyncIterator[tuple[str, str]]:
    (ma, path_a), (mb, path_b) = _raw_pty(), _raw_pty()
    loop = asyncio.get_running_loop()
    for fd in (ma, mb):
        os.set_blocking(fd, False)

    def relay(src: int, dst: int) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(dst, os.read(src, 4096))

    loop.add_reader(ma, relay, ma, mb)
    loop.add_reader(mb, relay, mb, ma)
    try:
        yield path_a, path_b
    finally:
        loop.remove_reader(ma)
        loop.remove_reader(mb)
        os.close(ma)
        os.close(mb)


async def test_rtu_read_and_write_over_a_serial_line() -> None:
    async with pty_bridge() as (server_path, client_path):
        values = [0] * 300
        values[100] = 215
        block = ModbusSequentialDataBlock(1, values)  # pymodbus 3.16: values[0] is register 0
        context = ModbusServerContext(devices={7: ModbusDeviceContext(hr=block)}, single=False)
        server = ModbusSerialServer(context, port=server_path, baudrate=19200)
        await server.serve_forever(background=True)
        cfg = config.parse(f"""
[site]
id = "t"
node = "n"
[devices.oil]
kind = "modbus"
transport = "rtu"
serial_port = "{client_path}"
baudrate = 19200
unit_id = 7
poll_ms = 100
timeout_ms = 500
points = [{{ name = "top_oil_c", address = 100, type = "int16", scale = 0.1, unit = "°C" }},
          {{ name = "fan_cmd", address = 101, type = "uint16", writable = true }}]
""").devices[0]
        image = ProcessImage([PointSpec(n, "", cfg.max_age_s) for n in cfg.point_names()])
        device = ModbusDevice(cfg, image)
        task = asyncio.create_task(device.run())
        try:
            await eventually(lambda: image.latest("oil.top_oil_c").quality is Quality.GOOD, timeout_s=10)
            assert image.latest("oil.top_oil_c").value == 21.5
            device.submit(Command("oil", "fan_cmd", 1.0, "test"))
            await eventually(lambda: image.latest("oil.fan_cmd").value == 1.0, timeout_s=10, what="read back")
        finally:
            device.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 10)
            await server.shutdown()
