"""The Modbus adapter against a real pymodbus TCP server started by the test."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import struct
from collections.abc import AsyncIterator

import pytest

from edgeagent import config
from edgeagent.cycle import Command
from edgeagent.field.modbus import ModbusDevice
from edgeagent.image import PointSpec, ProcessImage, Quality
from tests.helpers import eventually
from tests.modbus_server import SilentServer, TestServer

POINTS = """
[[devices.dev.points]]
name = "temp_c"
address = 100
type = "int16"
scale = 0.1
unit = "°C"

[[devices.dev.points]]
name = "energy_wh"
address = 102
type = "uint32"
word_order = "little"
unit = "Wh"

[[devices.dev.points]]
name = "freq_hz"
address = 104
type = "float32"
unit = "Hz"

[[devices.dev.points]]
name = "power_w"
address = 10
type = "int16"
table = "input"
unit = "W"

[[devices.dev.points]]
name = "far_away"
address = 3000
type = "uint16"

[[devices.dev.points]]
name = "setpoint_w"
address = 200
type = "int32"
scale = 10
writable = true
unit = "W"
"""


def device_config(port: int, timeout_ms: int = 300, poll_ms: int = 50, min_gap_ms: int = 0) -> config.DeviceConfig:
    text = f"""
[site]
id = "t"
node = "n"
[devices.dev]
kind = "modbus"
host = "127.0.0.1"
port = {port}
poll_ms = {poll_ms}
timeout_ms = {timeout_ms}
min_gap_ms = {min_gap_ms}
{POINTS}"""
    return config.parse(text).devices[0]


def make_device(port: int, **kw: int) -> tuple[ModbusDevice, ProcessImage]:
    cfg = device_config(port, **kw)
    image = ProcessImage([PointSpec(n, "", cfg.max_age_s) for n in cfg.point_names()])
    return ModbusDevice(cfg, image), image


@contextlib.asynccontextmanager
async def running(device: ModbusDevice) -> AsyncIterator[None]:
    task = asyncio.create_task(device.run())
    try:
        yield
    finally:
        device.stop()  # cancel alone can be swallowed by pymodbus on Python 3.11 (see ModbusDevice.stop)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    srv = TestServer()
    r = srv.registers
    r.set(100, [(-123) & 0xFFFF])  # -12.3 °C
    r.set(102, [0x5678, 0x1234])  # 0x12345678 with the low word first
    r.set(104, list(struct.unpack(">HH", struct.pack(">f", 49.98))))
    r.set(10, [1500], table="input")
    r.set(3000, [7])
    await srv.start()
    yield srv
    await srv.stop()


def value(image: ProcessImage, name: str) -> object:
    return image.latest(f"dev.{name}").value


async def test_reads_every_type_with_scale_word_order_and_tables(server: TestServer) -> None:
    device, image = make_device(server.port)
    async with running(device):
        await eventually(lambda: device.polls >= 1, what="first poll")
    assert value(image, "temp_c") == pytest.approx(-12.3)
    assert value(image, "energy_wh") == 0x12345678
    assert value(image, "freq_hz") == pytest.approx(49.98, abs=1e-4)
    assert value(image, "power_w") == 1500
    assert image.latest("dev.temp_c").unit == "°C"
    assert all(image.latest(n).quality is Quality.GOOD for n in device.names)
    # Points far apart are read in separate requests; neighbours share one.
    assert len(device.blocks) == 4


async def test_exception_reply_marks_only_that_block_bad(server: TestServer) -> None:
    server.registers.holes.add(3000)
    device, image = make_device(server.port)
    async with running(device):
        await eventually(lambda: device.polls >= 2, what="polls")
    far = image.latest("dev.far_away")
    assert far.quality is Quality.BAD and far.reason == "exception 2 (illegal data address)"
    assert image.latest("dev.temp_c").quality is Quality.GOOD
    assert device.online


async def test_device_failure_exception_keeps_the_link_up(server: TestServer) -> None:
    device, image = make_device(server.port)
    async with running(device):
        await eventually(lambda: device.polls >= 1)
        server.registers.failure = True
        polls = device.polls
        await eventually(lambda: device.polls >= polls + 2)
        assert image.latest("dev.temp_c").reason == "exception 4 (server device failure)"
        assert device.online and device.link.restarts == 0


async def test_nan_and_sentinel_values_are_bad(server: TestServer) -> None:
    server.registers.set(104, [0x7FC0, 0x0000])  # float32 NaN
    device, image = make_device(server.port)
    async with running(device):
        await eventually(lambda: device.polls >= 1)
    freq = image.latest("dev.freq_hz")
    assert freq.quality is Quality.BAD and freq.value is None and "number" in freq.reason


async def test_slow_replies_time_out_go_stale_then_reconnect(server: TestServer) -> None:
    device, image = make_device(server.port, timeout_ms=100)
    async with running(device):
        await eventually(lambda: device.polls >= 1)
        server.registers.delay_s = 0.5
        await eventually(lambda: not device.online, what="link down after timeouts")
        assert image.latest("dev.temp_c").quality is Quality.STALE
        server.registers.delay_s = 0.0
        await eventually(lambda: device.online, timeout_s=8, what="recovery")
        polls = device.polls
        await eventually(lambda: device.polls > polls)
        assert image.latest("dev.temp_c").quality is Quality.GOOD


async def test_a_device_that_never_answers_is_offline_with_a_reason() -> None:
    silent = SilentServer()
    await silent.start()
    device, image = make_device(silent.port, timeout_ms=100)
    try:
        async with running(device):
            await eventually(lambda: device.link.restarts >= 1, what="first failed session")
            assert not device.online
            assert "timed out" in device.link.reason
            sample = image.latest("dev.temp_c")
            assert sample.quality is Quality.STALE and "timed out" in sample.reason
    finally:
        await silent.stop()


async def test_server_restart_stale_then_reconnect_without_restarting_us(server: TestServer) -> None:
    device, image = make_device(server.port)
    async with running(device):
        await eventually(lambda: device.online and device.polls >= 1)
        await server.stop()
        await eventually(lambda: image.latest("dev.temp_c").quality is Quality.STALE, what="stale")
        assert not device.online
        server.registers.set(100, [250])
        await server.start()
        await eventually(lambda: value(image, "temp_c") == pytest.approx(25.0), timeout_s=8, what="fresh value")
        assert device.online and device.link.restarts >= 1


async def test_refused_connection_is_reported_once_and_retried(server: TestServer) -> None:
    await server.stop()
    device, image = make_device(server.port)
    async with running(device):
        await eventually(lambda: device.link.restarts >= 2, timeout_s=5)
        assert "cannot connect" in device.link.reason
        assert "cannot connect" in image.latest("dev.temp_c").reason
        await server.start()
        await eventually(lambda: device.online, timeout_s=8)


async def test_write_is_scaled_encoded_and_read_back(server: TestServer) -> None:
    device, image = make_device(server.port)
    async with running(device):
        await eventually(lambda: device.polls >= 1)
        device.submit(Command("dev", "setpoint_w", -25000.0, "test", "bench"))
        await eventually(lambda: value(image, "setpoint_w") == -25000.0, what="read back")
    # int32, scale 10: raw -2500 = 0xFFFFF63C, high word first.
    assert (200, [0xFFFF, 0xF63C]) in server.registers.writes
    record = device.writes[-1]
    assert record.ok and record.origin == "test" and record.value == -25000.0


async def test_write_to_read_only_point_is_refused_and_recorded(server: TestServer) -> None:
    device, _ = make_device(server.port)
    async with running(device):
        await eventually(lambda: device.polls >= 1)
        device.submit(Command("dev", "temp_c", 1.0, "test"))
        await eventually(lambda: len(device.writes) == 1)
    assert not device.writes[0].ok and "not a writable point" in device.writes[0].error
    assert server.registers.writes == []


async def test_out_of_range_write_is_refused(server: TestServer) -> None:
    device, _ = make_device(server.port)
    async with running(device):
        await eventually(lambda: device.polls >= 1)
        device.submit(Command("dev", "setpoint_w", math.inf, "test"))
        await eventually(lambda: len(device.writes) == 1)
    assert not device.writes[0].ok
    assert server.registers.writes == []


async def test_minimum_gap_between_requests_is_kept(server: TestServer) -> None:
    device, _ = make_device(server.port, min_gap_ms=80, poll_ms=10)
    async with running(device):
        await eventually(lambda: server.registers.reads >= 8, what="eight requests")
    times = server.registers.read_times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.075, gaps
