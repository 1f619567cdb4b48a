"""The [transformer] table and the transformer events in scenario files; the shipped transformer scenarios."""

from __future__ import annotations

import dataclasses

import pytest

from hil.physics import Commands, Simulation
from hil.scenario import Scenario, ScenarioError, load_scenario, parse_scenario_text
from hil.transformer import Cooling, TransformerModel, TransformerSimulation
from hil.transformer_events import FanFailure, HeatWave, SensorDrift

TRANSFORMER = "[transformer]\nrating_kva = 160.0\n"
HEAT = '[[events]]\nkind = "heat_wave"\n'
FAN = '[[events]]\nkind = "fan_failure"\n'
DRIFT = '[[events]]\nkind = "sensor_drift"\n'


def _parse(text: str) -> Scenario:
    return parse_scenario_text(text, source="test.toml")


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        _parse(text)
    return str(info.value)


def test_a_transformer_table_and_its_events_are_parsed() -> None:
    scenario = _parse(
        f'{TRANSFORMER}cooling = "ONAF"\ntau_oil_h = 2.5\nn_onan = 0.9\n'
        f"{HEAT}at_s = 10\nduration_s = 100\nambient_rise_c = 8\n"
        f"{FAN}at_s = 20\nduration_s = 30\n"
        f"{DRIFT}at_s = 5\nrate_c_per_h = -0.5\n"
        '[[events]]\nkind = "load_step"\nat_s = 1\ndelta_kw = -3\n'
    )
    assert scenario.transformer is not None
    assert (scenario.transformer.rating_kva, scenario.transformer.tau_oil_h) == (160.0, 2.5)
    assert scenario.transformer.cooling is Cooling.ONAF and scenario.transformer.oil_exponent == 0.9
    assert scenario.transformer_events == (
        HeatWave(at_s=10.0, duration_s=100.0, ambient_rise_c=8.0, ramp_s=25.0),
        FanFailure(at_s=20.0, duration_s=30.0),
        SensorDrift(at_s=5.0, rate_c_per_h=-0.5, duration_s=None),
    )
    assert len(scenario.events) == 1 and scenario.params.events == scenario.events  # the PV/battery physics' own


def test_no_table_no_transformer_and_onan_takes_its_own_exponent() -> None:
    assert _parse("").transformer is None
    onan = _parse(f'{TRANSFORMER}cooling = "ONAN"\n').transformer
    assert onan is not None and onan.cooling is Cooling.ONAN and onan.oil_exponent == 0.8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{TRANSFORMER}rating_kv = 1", "unknown key 'transformer.rating_kv' (did you mean 'transformer.rating_kva'?)"),
        (f'{TRANSFORMER}cooling = "OFAF"', "transformer.cooling: unknown cooling 'OFAF'; expected one of ONAN, ONAF"),
        (f"{TRANSFORMER}cooling = 1", "transformer.cooling: expected a string, got integer 1"),
        (f"{TRANSFORMER}tau_oil_h = 0", "transformer.tau_oil_h: must be within (0, 24], got 0"),
        (f'{TRANSFORMER}n = "x"', "transformer.n: expected a number, got string 'x'"),
        (f"{TRANSFORMER}onan_rating_pu = 1.0", "transformer.onan_rating_pu: must be within [0.3, 1), got 1"),
        (
            f"{TRANSFORMER}fan_on_top_oil_c = 60\nfan_off_top_oil_c = 60",
            "transformer.fan_off_top_oil_c: must be below fan_on_top_oil_c (60)",
        ),
        (
            f'{TRANSFORMER}cooling = "ONAN"\nfan_on_top_oil_c = 70',
            "transformer.fan_on_top_oil_c: only allowed with cooling = 'ONAF'",
        ),
        ('transformer = "big"', "transformer: expected a table ([transformer]), got string 'big'"),
    ],
)
def test_mistakes_in_the_transformer_table_are_named(text: str, expected: str) -> None:
    assert expected in _error(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{FAN}at_s = 1\nduration_s = 2", "events[0].kind: 'fan_failure' needs a [transformer] table"),
        (
            f'{TRANSFORMER}cooling = "ONAN"\n{FAN}at_s = 1\nduration_s = 2',
            "events[0].kind: 'fan_failure' needs transformer.cooling = 'ONAF'",
        ),
        (
            f"{TRANSFORMER}{HEAT}at_s = 1\nduration_s = 2",
            "events[0].ambient_rise_c: missing (required for kind 'heat_wave')",
        ),
        (
            f"{TRANSFORMER}{HEAT}at_s = 1\nduration_s = 10\nambient_rise_c = 5\nramp_s = 6",
            "events[0].ramp_s: must be at most half of duration_s (10), got 6",
        ),
        (
            f"{TRANSFORMER}{HEAT}at_s = 1\nduration_s = 10\nambient_rise_c = 0",
            "events[0].ambient_rise_c: must be within (0, 40]",
        ),
        (f"{TRANSFORMER}{DRIFT}at_s = 1\nrate_c_per_h = 0", "events[0].rate_c_per_h: must be non-zero"),
        (
            f"{TRANSFORMER}{DRIFT}at_s = 1\nrate_c_per_h = 1\nrise_c = 3",
            "events[0].rise_c: only allowed for kind 'bess_heat', not 'sensor_drift'",
        ),
        (
            f'{TRANSFORMER}[[events]]\nkind = "load_step"\nat_s = 1\ndelta_kw = 1\nramp_s = 2',
            "events[0].ramp_s: only allowed for kind 'heat_wave', not 'load_step'",
        ),
        ('[[events]]\nkind = "blizzard"', "expected one of load_step, bess_heat, heat_wave, fan_failure, sensor_drift"),
    ],
)
def test_mistakes_in_transformer_events_are_named(text: str, expected: str) -> None:
    assert expected in _error(text)


# -- the shipped scenarios ---------------------------------------------------------------------------


def _run(scenario: Scenario, hours: float, step_s: float = 10.0) -> list[tuple[float, float, float, bool]]:
    """(t_h, top oil, hot spot, fans on) per step, with the battery idle; coarse steps keep it fast."""
    scenario = dataclasses.replace(scenario, site=dataclasses.replace(scenario.site, step_s=step_s))
    assert scenario.transformer is not None
    plant = Simulation(scenario.params)
    model = TransformerModel(scenario.transformer, scenario.transformer_events, scenario.params.start_hour)
    transformer = TransformerSimulation(model, plant.state)
    rows = []
    for _ in range(round(hours * 3600.0 / step_s)):
        state = transformer.advance(plant.advance(Commands()))
        rows.append((state.t_s / 3600.0, state.top_oil_c, state.hot_spot_c, state.fans_on))
    return rows


def test_heatwave_passes_72_simulated_hours_in_minutes_and_crosses_110_c_only_on_day_3() -> None:
    scenario = load_scenario("heatwave")
    assert scenario.duration_s == 72 * 3600.0
    assert scenario.duration_s / scenario.speed < 5 * 60.0  # wall seconds
    rows = _run(scenario, 72.0)
    daily_max = [max(hot for t, _, hot, _ in rows if day * 24 <= t < (day + 1) * 24) for day in range(3)]
    assert daily_max[0] < daily_max[1] < 110.0 < daily_max[2]
    first_over = next(t for t, _, hot, _ in rows if hot > 110.0)
    heat_wave = scenario.transformer_events[0]
    assert isinstance(heat_wave, HeatWave)
    assert first_over - heat_wave.at_s / 3600.0 > 24.0  # room for a forecast a day ahead


def test_fan_failure_scenario_holds_the_fans_off_and_runs_hotter_than_with_working_fans() -> None:
    scenario = load_scenario("fan-failure")
    failure = scenario.transformer_events[0]
    assert isinstance(failure, FanFailure)
    with_failure = _run(scenario, 8.0)
    healthy = _run(dataclasses.replace(scenario, transformer_events=()), 8.0)
    during = [fans for t, _, _, fans in with_failure if failure.active(t * 3600.0)]
    assert during and not any(during)
    assert any(fans for t, _, _, fans in healthy if failure.active(t * 3600.0))
    assert max(top for _, top, _, _ in with_failure) > max(top for _, top, _, _ in healthy) + 4.0
