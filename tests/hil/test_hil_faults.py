"""Fault injection, seen from the network: offline, frozen, garbage and slow devices."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from hil.faults import GARBAGE_SENTINELS
from hil.scenario import load_scenario
from hil.server import Plant, serve_plant
from tests.hil.modbus_raw import RawModbusClient
from tests.hil.sunspec_client import read_models


async def _read_map(plant: Plant, device: str) -> list[int]:
    """Every register of the device's SunSpec map, over a fresh connection."""
    size = plant.servers[device].device.image.size
    async with RawModbusClient("127.0.0.1", plant.endpoints[device]["port"]) as client:
        return await client.read(40000, size)


async def _refused(port: int) -> bool:
    try:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


async def test_offline_device_refuses_connections_and_comes_back_on_the_same_port(sunny_plant: Plant) -> None:
    port = sunny_plant.endpoints["meter"]["port"]
    client = await RawModbusClient("127.0.0.1", port).connect()
    assert (await client.read(40000, 2)) == [0x5375, 0x6E53]
    t_before = sunny_plant.state.t_s

    await sunny_plant.set_offline("meter", True)
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await client.read(40000, 2)  # the open connection was dropped
    await client.close()
    assert await _refused(port)
    assert sunny_plant.endpoints["meter"]["port"] == port
    # The other devices and the physics carry on.
    assert (await _read_map(sunny_plant, "inverter"))[:2] == [0x5375, 0x6E53]
    await asyncio.sleep(0.3)
    assert sunny_plant.state.t_s > t_before

    await sunny_plant.set_offline("meter", False)
    regs = await _read_map(sunny_plant, "meter")
    assert regs[:3] == [0x5375, 0x6E53, 1]


async def test_frozen_registers_stay_identical_while_the_physics_moves(fast_plant: Plant) -> None:
    await fast_plant.set_frozen("meter", True)
    first = await _read_map(fast_plant, "meter")
    state_before = fast_plant.state
    await asyncio.sleep(0.5)  # 20 plant seconds
    second = await _read_map(fast_plant, "meter")
    assert second == first
    assert fast_plant.state.t_s > state_before.t_s + 10.0
    assert fast_plant.state.meter_w != state_before.meter_w
    assert fast_plant.state.export_wh > state_before.export_wh
    # The other devices keep updating (the battery heartbeat counts plant seconds).
    hb_address = fast_plant.devices[2].image.point(802, "Hb").address - 40000
    bess_1 = await _read_map(fast_plant, "bess")
    await asyncio.sleep(0.2)
    assert (await _read_map(fast_plant, "bess"))[hb_address] != bess_1[hb_address]

    await fast_plant.set_frozen("meter", False)
    await asyncio.sleep(0.25)
    assert (await _read_map(fast_plant, "meter")) != first


async def test_garbage_keeps_discovery_intact_but_not_the_data(sunny_plant: Plant) -> None:
    image = sunny_plant.devices[0].image
    healthy = await _read_map(sunny_plant, "meter")
    await sunny_plant.set_garbage("meter", True)
    garbage = await _read_map(sunny_plant, "meter")
    header = image.header_offsets()
    assert [garbage[i] for i in sorted(header)] == [healthy[i] for i in sorted(header)]
    data = [garbage[i] for i in range(len(garbage)) if i not in header]
    assert sum(v in GARBAGE_SENTINELS for v in data) > len(data) // 4
    assert sum(v not in GARBAGE_SENTINELS for v in data) > len(data) // 4
    assert sum(a != b for a, b in zip(garbage, healthy, strict=True)) > len(data) // 2
    # pysunspec2 still walks the model chain; the values are nonsense.
    models = await asyncio.to_thread(read_models, sunny_plant.endpoints["meter"]["port"], strict=False)
    assert list(models) == [1, 203]
    assert models[1]["Mn"] != "edgeagent-hil"
    assert models[203]["W"] != pytest.approx(sunny_plant.state.meter_w, abs=2000.0)

    await sunny_plant.set_garbage("meter", False)
    models = await asyncio.to_thread(read_models, sunny_plant.endpoints["meter"]["port"])
    assert models[1]["Mn"] == "edgeagent-hil"
    assert models[203]["W"] == pytest.approx(sunny_plant.state.meter_w, abs=2000.0)


async def _latency(plant: Plant, device: str) -> float:
    async with RawModbusClient("127.0.0.1", plant.endpoints[device]["port"]) as client:
        await client.read(40000, 2)  # connection set up outside the measurement
        started = time.perf_counter()
        await client.read(40002, 10)
        return time.perf_counter() - started


async def test_slow_device_delays_every_reply(sunny_plant: Plant) -> None:
    assert await _latency(sunny_plant, "bess") < 0.15
    await sunny_plant.set_slow("bess", 300.0)
    assert await _latency(sunny_plant, "bess") >= 0.3
    assert await _latency(sunny_plant, "meter") < 0.15  # only the bess is slow
    await sunny_plant.set_slow("bess", 0.0)
    assert await _latency(sunny_plant, "bess") < 0.15


async def test_faults_scheduled_by_the_scenario(tmp_path: Path) -> None:
    path = tmp_path / "faulty.toml"
    path.write_text(
        """
        name = "faulty"
        [[faults]]
        device = "meter"
        kind = "offline"
        at_s = 0.9
        duration_s = 0.8
        [[faults]]
        device = "inverter"
        kind = "slow"
        at_s = 0.0
        duration_s = 0.8
        delay_ms = 200
        """
    )
    # Fault states are applied on the plant's 0.1 s ticks: check well inside each window.
    async with serve_plant(load_scenario(path), speed=1.0) as plant:
        port = plant.endpoints["meter"]["port"]
        assert not await _refused(port)
        assert await _latency(plant, "inverter") >= 0.2
        assert plant.fault_state("inverter").describe() == "slow(200 ms)"
        await asyncio.sleep(max(0.0, 1.2 - plant.elapsed_s))
        assert await _refused(port)
        assert plant.fault_state("meter").offline
        assert await _latency(plant, "inverter") < 0.15  # the slow fault ended at 0.8 s
        await asyncio.sleep(max(0.0, 2.0 - plant.elapsed_s))
        assert (await _read_map(plant, "meter"))[:2] == [0x5375, 0x6E53]
        assert plant.fault_state("meter").describe() == "healthy"


async def test_manual_fault_control_rejects_unknown_devices(sunny_plant: Plant) -> None:
    with pytest.raises(ValueError, match="unknown device 'pump'"):
        await sunny_plant.set_offline("pump", True)
    with pytest.raises(ValueError, match="delay_ms"):
        await sunny_plant.set_slow("meter", -1.0)
