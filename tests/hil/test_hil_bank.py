"""Model 803 (lithium-ion bank) on the battery: the repeating group in the image, the module
temperatures on the wire, and edgeagent's own SunSpec reader resolving ``803.ModTmpMax``."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sunspec2.device as ss_device
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from edgeagent import config
from edgeagent.field.modbus import ModbusDevice
from edgeagent.image import PointSpec, ProcessImage
from hil.devices import BessDevice
from hil.server import Plant, serve_plant
from hil.sunspec_image import ImageError, SunSpecImage
from tests.helpers import eventually
from tests.hil.modbus_raw import RawModbusClient

OVERTEMP_SPEED = 20.0  # the heat event (10 s .. 18 s plant) is at 0.5 s .. 0.9 s wall


def _int16(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def _bess(plant: Plant) -> BessDevice:
    return next(d for d in plant.devices if isinstance(d, BessDevice))


# -- the image ----------------------------------------------------------------------------


def test_a_repeating_group_is_laid_out_sized_by_its_count_and_decoded_by_pysunspec2() -> None:
    image = SunSpecImage([803], group_counts={803: {"NStr": 2}})
    assert image.raw(803, "NStr") == 2
    fixed = 26  # registers of the fixed block after ID and L
    string_len = image.point(803, "string[2].StrNMod").address - image.point(803, "string[1].StrNMod").address
    assert string_len == 32
    assert image.raw(803, "L") == fixed + 2 * string_len
    image.set_raw(803, "ModTmp_SF", -1)
    image.set_raw(803, "SoC_SF", 0)
    image.set(803, "ModTmpMax", 31.5)
    image.set(803, "string[1].StrModTmpMax", 30.2)
    image.set(803, "string[2].StrModTmpMax", 31.5)
    image.set(803, "string[2].StrSoC", 61.0)
    regs = image.render()
    assert len(regs) == image.size == 2 + 2 + fixed + 2 * string_len + 2
    words = regs[2:-2]  # the model: ID, L, then its points
    model = ss_device.Model(model_id=803, model_len=words[1], data=struct.pack(f">{len(words)}H", *words))
    assert not model.error_info
    assert model.points["ModTmpMax"].cvalue == pytest.approx(31.5)
    strings = model.groups["string"]
    assert [s.points["StrModTmpMax"].cvalue for s in strings] == pytest.approx([30.2, 31.5])
    assert strings[1].points["StrSoC"].cvalue == 61


def test_repeating_group_counts_are_required_and_fixed() -> None:
    with pytest.raises(ImageError, match=r"model 803: Count field NStr .* group_counts"):
        SunSpecImage([803])
    with pytest.raises(ImageError, match=r"NStrCon do\(es\) not count a repeating group"):
        SunSpecImage([803], group_counts={803: {"NStr": 1, "NStrCon": 1}})
    with pytest.raises(ImageError, match="not in the image"):
        SunSpecImage([802], group_counts={803: {"NStr": 1}})
    image = SunSpecImage([803], group_counts={803: {"NStr": 1}})
    with pytest.raises(ImageError, match=r"803\.NStr counts a repeating group: it is fixed at 1"):
        image.set_raw(803, "NStr", 2)
    with pytest.raises(ImageError, match=r"no point 803\.string\[2\]\.StrSoC"):
        image.point(803, "string[2].StrSoC")


# -- on the wire ----------------------------------------------------------------------------


def _read_bank(port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Model 803 through pysunspec2's client: (top-level points, the one string's points)."""
    device = SunSpecModbusClientDeviceTCP(slave_id=1, ipaddr="127.0.0.1", ipport=port, timeout=5.0)
    try:
        device.scan()
        (model,) = device.models[803]
        assert not model.error_info
        (string,) = model.groups["string"]
        top = {name: point.cvalue for name, point in model.points.items()}
        return top, {name: point.cvalue for name, point in string.points.items()}
    finally:
        device.disconnect()


async def test_the_bank_model_shows_the_physics(sunny_plant: Plant) -> None:
    top, string = await asyncio.to_thread(_read_bank, sunny_plant.endpoints["bess"]["port"])
    state = sunny_plant.state
    assert (top["NStr"], top["NStrCon"]) == (1, 1)
    assert top["ModTmpAvg"] == pytest.approx(state.bess_temp_c, abs=0.05)
    assert top["ModTmpMax"] == pytest.approx(top["ModTmpAvg"] + 1.5, abs=0.11)
    assert top["ModTmpMin"] == pytest.approx(top["ModTmpAvg"] - 1.5, abs=0.11)
    assert top["ModTmpMaxStr"] == top["ModTmpMinStr"] == 1 and top["ModTmpMaxMod"] != top["ModTmpMinMod"]
    assert 680.0 <= top["StrVMin"] == top["StrVAvg"] == top["StrVMax"] <= 820.0
    assert string["StrSoC"] == pytest.approx(state.soc_pct, abs=0.1)
    assert string["StrModTmpMax"] == top["ModTmpMax"] and string["StrModTmpAvg"] == top["ModTmpAvg"]
    assert string["StrNMod"] == 16 and string["StrSt"] == 0b11 and string["StrEvt1"] == 0
    assert string["StrCellVMin"] < string["StrCellVAvg"] < string["StrCellVMax"]
    assert string["StrA"] == top["StrAAvg"] == 0.0  # the battery is idle


async def _temperature_course(plant: Plant, until_plant_s: float) -> list[tuple[float, float]]:
    """(plant time, 803.ModTmpMax) read as raw registers every 20 ms.

    A sample is kept only if the plant did not step during the read, so its time is exact
    (at speed 20 one publication covers 2 plant seconds).
    """
    image = _bess(plant).image
    value_at = image.point(803, "ModTmpMax").address
    course: list[tuple[float, float]] = []
    async with RawModbusClient("127.0.0.1", plant.endpoints["bess"]["port"]) as client:
        (sf,) = await client.read(image.point(803, "ModTmp_SF").address, 1)
        while plant.state.t_s < until_plant_s:
            t_s = plant.state.t_s
            (raw,) = await client.read(value_at, 1)
            if plant.state.t_s == t_s:
                course.append((t_s, _int16(raw) * 10.0 ** _int16(sf)))
            await asyncio.sleep(0.02)
    return course


async def test_the_heat_event_shows_on_model_803() -> None:
    async with serve_plant("overtemp", speed=OVERTEMP_SPEED) as plant:
        course = await _temperature_course(plant, 26.0)
    assert course[0][1] == pytest.approx(26.5, abs=0.1)
    assert all(value == pytest.approx(26.5, abs=0.1) for t, value in course if t < 9.5)
    peak = max(value for _t, value in course)
    assert 53.0 < peak < 56.1  # 56.0 in the physics, sampled every ~0.4 plant s
    assert any(value > 45.0 for t, value in course if 11.0 < t < 18.5)
    assert all(value < 40.0 for t, value in course if t > 21.0)


# -- edgeagent's reader ----------------------------------------------------------------


def _edgeagent_device(port: int) -> tuple[ModbusDevice, ProcessImage]:
    text = f"""
[site]
id = "t"
node = "n"
[devices.bess]
kind = "sunspec"
host = "127.0.0.1"
port = {port}
poll_ms = 20
timeout_ms = 500
points = ["803.ModTmpMax", "803.ModTmpAvg", "802.SoC"]
"""
    cfg = config.parse(text).devices[0]
    image = ProcessImage([PointSpec(n, "", cfg.max_age_s) for n in cfg.point_names()])
    return ModbusDevice(cfg, image), image


@contextlib.asynccontextmanager
async def _running(device: ModbusDevice) -> AsyncIterator[None]:
    task = asyncio.create_task(device.run())
    try:
        yield
    finally:
        device.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def test_edgeagent_resolves_803_mod_tmp_max_against_the_plant() -> None:
    async with serve_plant("overtemp", speed=OVERTEMP_SPEED) as plant:
        device, image = _edgeagent_device(plant.endpoints["bess"]["port"])
        async with _running(device):
            await eventually(lambda: image.snapshot().value("bess.ModTmpMax") is not None, 5.0, "ModTmpMax good")
            assert device.unresolved == {}
            bess_image = _bess(plant).image
            resolved = {p.name: p for p in device.points}
            assert resolved["ModTmpMax"].address == bess_image.point(803, "ModTmpMax").address
            assert resolved["ModTmpMax"].sf_address == bess_image.point(803, "ModTmp_SF").address
            assert resolved["ModTmpMax"].unit == "C"
            seen: list[tuple[float, float]] = []
            deadline = time.monotonic() + 5.0
            while plant.state.t_s < 24.0 and time.monotonic() < deadline:
                snapshot = image.snapshot()
                tmp_max, tmp_avg = snapshot.value("bess.ModTmpMax"), snapshot.value("bess.ModTmpAvg")
                if tmp_max is not None and tmp_avg is not None:
                    seen.append((plant.state.t_s, tmp_max))
                    assert tmp_max == pytest.approx(tmp_avg + 1.5, abs=0.11)  # read in one block: the same step
                await asyncio.sleep(0.02)
            assert image.snapshot().value("bess.SoC") == pytest.approx(50.0, abs=0.1)
    before = [value for t, value in seen if t < 9.0]
    assert before and all(value == pytest.approx(26.5, abs=0.1) for value in before)
    assert max(value for _t, value in seen) > 45.0
    assert seen[-1][1] < 40.0
