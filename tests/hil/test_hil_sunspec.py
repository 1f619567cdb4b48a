"""The running plant read by pysunspec2's own Modbus client, an independent SunSpec client.

pysunspec2 discovers each device from the SunS marker, walks the model chain and decodes every
point with its own scale-factor handling; the values must match the plant's physics.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from hil.server import Plant
from tests.hil.sunspec_client import read_models

RATING_W = 100_000.0  # sunny-day: 100 kWp PV, 100 kW inverter, 100 kW battery


async def _read(plant: Plant, device: str) -> dict[int, dict[str, Any]]:
    return await asyncio.to_thread(read_models, plant.endpoints[device]["port"])


async def test_each_device_is_discovered_with_its_model_chain(sunny_plant: Plant) -> None:
    expected = {"meter": [1, 203], "inverter": [1, 103, 120, 123], "bess": [1, 802, 803, 704]}
    for device, models in expected.items():
        endpoint = sunny_plant.endpoints[device]
        assert endpoint["host"] == "127.0.0.1" and endpoint["unit_id"] == 1 and endpoint["sunspec_base"] == 40000
        assert endpoint["models"] == models
        read = await _read(sunny_plant, device)
        assert list(read) == models
        common = read[1]
        assert common["Mn"] == "edgeagent-hil"
        assert common["SN"].startswith("HIL-") and common["Md"]


async def test_meter_values_are_plausible_and_match_the_physics(sunny_plant: Plant) -> None:
    meter = (await _read(sunny_plant, "meter"))[203]
    state = sunny_plant.state
    # Late morning on a clear day: PV (~66 kW) exceeds the load (~24 kW), the site exports.
    assert meter["W"] < -20_000.0
    assert meter["W"] == pytest.approx(state.meter_w, abs=0.02 * RATING_W)
    assert meter["W"] == pytest.approx(meter["WphA"] + meter["WphB"] + meter["WphC"], abs=40.0)
    assert meter["VA"] >= abs(meter["W"])
    assert -100.0 <= meter["PF"] <= 0.0  # PF carries the sign of W (export)
    assert meter["PF"] == pytest.approx(100.0 * meter["W"] / meter["VA"], abs=0.5)
    for phase in ("PhVphA", "PhVphB", "PhVphC", "PhV"):
        assert 225.0 < meter[phase] < 240.0  # 230 V nominal, a little high while exporting
    assert meter["PPV"] == pytest.approx(math.sqrt(3) * meter["PhV"], rel=0.01)
    assert 49.9 < meter["Hz"] < 50.1
    amps = abs(meter["VA"]) / meter["PhV"]
    assert meter["A"] == pytest.approx(amps, rel=0.02)
    assert meter["TotWhImp"] > 0 and meter["TotWhExp"] > 0


async def test_devices_are_consistent_with_each_other(sunny_plant: Plant) -> None:
    meter, inverter, bess = await asyncio.gather(
        _read(sunny_plant, "meter"), _read(sunny_plant, "inverter"), _read(sunny_plant, "bess")
    )
    state = sunny_plant.state
    # meter = load - pv - bess (the load itself is not metered; take it from the physics).
    balance = state.load_w - inverter[103]["W"] - bess[802]["W"]
    assert meter[203]["W"] == pytest.approx(balance, abs=0.02 * RATING_W)
    assert inverter[103]["W"] == pytest.approx(state.pv_w, abs=0.02 * RATING_W)
    assert inverter[103]["W"] > 40_000.0
    assert inverter[103]["St"] == 4  # MPPT
    assert inverter[103]["DCW"] > inverter[103]["W"]  # conversion losses
    assert inverter[120]["WRtg"] == RATING_W and inverter[120]["DERTyp"] == 4
    controls = inverter[123]
    assert controls["WMaxLimPct"] == 100.0 and controls["WMaxLim_Ena"] == 0 and controls["Conn"] == 1
    battery, der = bess[802], bess[704]
    assert battery["SoC"] == pytest.approx(50.0, abs=0.1)
    assert battery["W"] == 0.0 and battery["ChaSt"] == 6  # HOLDING
    assert battery["WChaRteMax"] == battery["WDisChaRteMax"] == RATING_W
    assert battery["SoCMin"] == 5.0 and battery["SoCMax"] == 95.0
    assert der["WSetEna"] == 0 and der["WSet"] == 0 and der["WSetRvrtRem"] == 0


async def test_energy_counters_integrate_the_flow(fast_plant: Plant) -> None:
    before = (await _read(fast_plant, "meter"))[203]
    t0 = fast_plant.state.t_s
    await asyncio.sleep(0.5)
    after = (await _read(fast_plant, "meter"))[203]
    elapsed_h = (fast_plant.state.t_s - t0) / 3600.0
    exported_wh = after["TotWhExp"] - before["TotWhExp"]
    assert after["TotWhImp"] == before["TotWhImp"]  # exporting all the time
    assert exported_wh == pytest.approx(-after["W"] * elapsed_h, rel=0.25)
