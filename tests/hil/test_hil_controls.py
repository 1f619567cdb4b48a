"""Controls written over Modbus: the inverter's power limit and the battery's setpoint, with reverts.

The plant runs at 40x (the fast_plant fixture): the inverter's 2 s time constant takes 50 ms of wall
time and a 20 s revert timer 0.5 s.  Revert times are counted in plant seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from hil.server import Plant
from tests.hil.modbus_raw import ModbusExceptionReply, RawModbusClient
from tests.hil.sunspec_client import read_models, write_points

ILLEGAL_ADDRESS = 2
ILLEGAL_VALUE = 3
GATEWAY_NO_RESPONSE = 11


def _address(plant: Plant, device: str, model_id: int, point: str) -> int:
    return plant.devices[list(plant.servers).index(device)].image.point(model_id, point).address


async def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.02)


async def _model(plant: Plant, device: str, model_id: int) -> dict[str, float]:
    models = await asyncio.to_thread(read_models, plant.endpoints[device]["port"])
    return models[model_id]


async def test_wmaxlimpct_written_over_modbus_limits_the_inverter(fast_plant: Plant) -> None:
    port = fast_plant.endpoints["inverter"]["port"]
    assert fast_plant.state.pv_available_w > 50_000.0
    await asyncio.to_thread(write_points, port, 123, {"WMaxLimPct": 30.0, "WMaxLim_Ena": 1})
    written_at = fast_plant.state.t_s
    # Five time constants (2 s each) of plant time later the output sits at 30 % of WRtg.
    await _wait_for(lambda: fast_plant.state.t_s - written_at >= 10.0, 2.0, "five time constants")
    measured = await _model(fast_plant, "inverter", 103)
    assert measured["W"] == pytest.approx(30_000.0, rel=0.02)
    assert measured["St"] == 5  # THROTTLED
    controls = await _model(fast_plant, "inverter", 123)
    assert controls["WMaxLimPct"] == 30.0 and controls["WMaxLim_Ena"] == 1
    # The export at the meter drops accordingly: meter = load - 30 kW.
    meter = await _model(fast_plant, "meter", 203)
    assert meter["W"] == pytest.approx(fast_plant.state.load_w - 30_000.0, abs=2_000.0)


async def test_disabled_limit_is_not_applied(fast_plant: Plant) -> None:
    port = fast_plant.endpoints["inverter"]["port"]
    await asyncio.to_thread(write_points, port, 123, {"WMaxLimPct": 10.0})
    await asyncio.sleep(10.0 / fast_plant.speed)
    assert fast_plant.state.pv_w > 50_000.0  # WMaxLim_Ena is still 0


async def test_limit_reverts_after_rvrt_tms_without_refresh(fast_plant: Plant) -> None:
    # 60 plant seconds = 1.5 s wall at 40x: a refresh every 5 plant seconds stays far inside it
    # even when a loaded CI machine delays this loop.
    revert_s = 60
    async with RawModbusClient("127.0.0.1", fast_plant.endpoints["inverter"]["port"]) as client:
        pct_address = _address(fast_plant, "inverter", 123, "WMaxLimPct")
        await client.write_single(_address(fast_plant, "inverter", 123, "WMaxLimPct_RvrtTms"), revert_s)
        await client.write_single(pct_address, 400)  # 40.0 % (WMaxLimPct_SF = -1)
        await client.write_single(_address(fast_plant, "inverter", 123, "WMaxLim_Ena"), 1)
        # Refreshing the limit every 5 plant seconds keeps it in force well past RvrtTms.
        refresh_until = fast_plant.state.t_s + 2 * revert_s
        last_refresh = fast_plant.state.t_s
        while fast_plant.state.t_s < refresh_until:
            await client.write_single(pct_address, 400)
            last_refresh = fast_plant.state.t_s  # plant time of the latest refresh, not of the loop's end
            await asyncio.sleep(5.0 / fast_plant.speed)
            assert fast_plant.devices[1].image.raw(123, "WMaxLim_Ena") == 1
        assert fast_plant.state.pv_w == pytest.approx(40_000.0, rel=0.02)
    # Without refresh it reverts to 100 % and disabled after RvrtTms ...
    await _wait_for(lambda: fast_plant.devices[1].image.raw(123, "WMaxLim_Ena") == 0, 6.0, "the revert")
    assert fast_plant.state.t_s - last_refresh >= revert_s - 0.2
    controls = await _model(fast_plant, "inverter", 123)
    assert controls["WMaxLimPct"] == 100.0 and controls["WMaxLim_Ena"] == 0
    # ... and the output recovers to what the array gives.
    reverted_at = fast_plant.state.t_s
    await _wait_for(lambda: fast_plant.state.t_s - reverted_at >= 10.0, 2.0, "recovery")
    assert fast_plant.state.pv_w == pytest.approx(fast_plant.state.pv_available_w, rel=0.02)


async def test_battery_follows_wset_with_its_ramp_limit(fast_plant: Plant) -> None:
    async with RawModbusClient("127.0.0.1", fast_plant.endpoints["bess"]["port"]) as client:
        await client.write_single(_address(fast_plant, "bess", 704, "WSetEna"), 1)
        # WSet is an int32 (WSet_SF = 0): -50 kW = charge at 50 kW.
        await client.write(_address(fast_plant, "bess", 704, "WSet"), [0xFFFF, (-50_000) & 0xFFFF])
        written_at = fast_plant.state.t_s
    await _wait_for(lambda: fast_plant.state.bess_w <= -49_999.0, 2.0, "the battery to reach -50 kW")
    # 50 kW at 20 kW/s takes 2.5 plant seconds.
    assert fast_plant.state.t_s - written_at >= 2.5 - 0.11
    soc_before = fast_plant.state.soc_pct
    await asyncio.sleep(0.3)
    battery = await _model(fast_plant, "bess", 802)
    assert battery["W"] == -50_000.0
    assert battery["ChaSt"] == 4  # CHARGING
    assert battery["SoC"] > soc_before
    assert battery["A"] == pytest.approx(-50_000.0 / battery["V"], abs=0.2)
    meter = await _model(fast_plant, "meter", 203)
    state = fast_plant.state
    assert meter["W"] == pytest.approx(state.load_w - state.pv_w + 50_000.0, abs=2_000.0)


async def test_wset_is_clamped_to_the_rating_and_percent_mode_works(fast_plant: Plant) -> None:
    port = fast_plant.endpoints["bess"]["port"]
    await asyncio.to_thread(write_points, port, 704, {"WSetEna": 1, "WSet": 400_000})
    await _wait_for(lambda: fast_plant.state.bess_w >= 100_000.0 - 1e-6, 2.0, "full discharge")
    await asyncio.sleep(0.1)
    assert fast_plant.state.bess_w == pytest.approx(100_000.0)  # WDisChaRteMax
    await asyncio.to_thread(write_points, port, 704, {"WSetMod": 0, "WSetPct": -25})
    await _wait_for(lambda: abs(fast_plant.state.bess_w + 25_000.0) < 1.0, 2.0, "-25 % of the rating")


async def test_wset_reverts_after_rvrt_tms_and_counts_down(fast_plant: Plant) -> None:
    port = fast_plant.endpoints["bess"]["port"]
    revert_s = 30  # plant seconds = 0.75 s wall
    await asyncio.to_thread(
        write_points, port, 704, {"WSetRvrtTms": revert_s, "WSetRvrt": -10_000, "WSetEna": 1, "WSet": 40_000}
    )
    await _wait_for(lambda: fast_plant.state.bess_w >= 39_999.0, 2.0, "discharge at 40 kW")
    first = (await _model(fast_plant, "bess", 704))["WSetRvrtRem"]
    await asyncio.sleep(0.2)
    second = (await _model(fast_plant, "bess", 704))["WSetRvrtRem"]
    assert 0 < second < first <= revert_s
    await _wait_for(lambda: fast_plant.devices[2].image.raw(704, "WSet") == -10_000, 3.0, "the revert")
    await _wait_for(lambda: abs(fast_plant.state.bess_w + 10_000.0) < 1.0, 2.0, "the revert power")
    der = await _model(fast_plant, "bess", 704)
    assert der["WSet"] == -10_000 and der["WSetRvrtRem"] == 0 and der["WSetEna"] == 1


async def test_invalid_writes_are_rejected_with_modbus_exceptions(fast_plant: Plant) -> None:
    async with RawModbusClient("127.0.0.1", fast_plant.endpoints["inverter"]["port"]) as client:
        pct = _address(fast_plant, "inverter", 123, "WMaxLimPct")
        for address, value, code in (
            (pct, 1500, ILLEGAL_VALUE),  # 150 %
            (_address(fast_plant, "inverter", 123, "WMaxLim_Ena"), 7, ILLEGAL_VALUE),
            (_address(fast_plant, "inverter", 103, "W"), 0, ILLEGAL_ADDRESS),  # a measurement
            (_address(fast_plant, "inverter", 1, "Mn"), 0x4142, ILLEGAL_ADDRESS),
            (39_000, 1, ILLEGAL_ADDRESS),  # outside the map
        ):
            with pytest.raises(ModbusExceptionReply) as info:
                await client.write_single(address, value)
            assert info.value.code == code, f"write {value} to {address}"
        assert (await client.read(pct, 1)) == [1000]  # unchanged: 100.0 %
        with pytest.raises(ModbusExceptionReply) as info:
            await client.read(40_000, 1000)  # past the end model
        assert info.value.code == ILLEGAL_ADDRESS


async def test_only_unit_id_1_answers(sunny_plant: Plant) -> None:
    async with RawModbusClient("127.0.0.1", sunny_plant.endpoints["meter"]["port"], unit_id=7) as client:
        with pytest.raises(ModbusExceptionReply) as info:
            await client.read(40000, 2)
        assert info.value.code == GATEWAY_NO_RESPONSE
