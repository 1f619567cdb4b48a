"""Scenario files: the shipped ones load, and each kind of mistake is rejected by name."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hil.faults import FaultKind, FaultSpec
from hil.physics import SiteParams
from hil.scenario import Scenario, ScenarioError, builtin_scenarios, list_scenarios, load_scenario, parse_scenario_text


def _parse(text: str) -> Scenario:
    return parse_scenario_text(text, source="test.toml")


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        _parse(text)
    message = str(info.value)
    assert message.startswith("test.toml: ")
    assert "\n" not in message
    return message


def test_shipped_scenarios_load() -> None:
    names = {scenario.name for scenario in list_scenarios()}
    assert {"sunny-day", "cloudy-day", "meter-outage"} <= names
    assert set(builtin_scenarios()) == names
    sunny = load_scenario("sunny-day")
    assert sunny.faults == () and sunny.weather.cloud_passes_per_hour == 0.0
    assert 9 <= sunny.start.hour <= 12  # late morning: PV is producing
    assert load_scenario("cloudy-day").weather.cloud_passes_per_hour > 0
    outage = load_scenario("meter-outage")
    assert outage.faults == (FaultSpec("meter", FaultKind.OFFLINE, 20.0, 15.0),)


def test_an_empty_file_is_all_defaults() -> None:
    scenario = _parse("")
    assert scenario.site == SiteParams()
    assert scenario.faults == ()
    assert scenario.speed == 1.0


def test_full_file_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        """
        description = "x"
        seed = 9
        start = "2025-03-01T08:15:00"
        speed = 5
        [site]
        pv_kwp = 250
        inverter_kw = 200.0
        [weather]
        cloud_passes_per_hour = 3
        [[faults]]
        device = "bess"
        kind = "slow"
        at_s = 1
        duration_s = 2.5
        delay_ms = 300
        """
    )
    scenario = load_scenario(path)
    assert scenario.name == "mine"  # defaults to the file name
    assert scenario.start == datetime(2025, 3, 1, 8, 15)
    assert scenario.params.start_hour == pytest.approx(8.25)
    assert scenario.site.pv_kwp == 250.0 and scenario.site.inverter_w == 200_000.0
    assert scenario.faults == (FaultSpec("bess", FaultKind.SLOW, 1.0, 2.5, 300.0),)
    assert load_scenario(str(path)) == scenario


def test_unknown_top_level_key() -> None:
    assert "unknown key 'sed' (did you mean 'seed'?)" in _error("sed = 1")


def test_unknown_key_in_a_table_is_named_with_its_table() -> None:
    assert "unknown key 'site.pv_kw' (did you mean 'site.pv_kwp'?)" in _error("[site]\npv_kw = 5")


def test_unknown_key_without_a_close_match_lists_the_known_keys() -> None:
    message = _error("[weather]\nrain = 1")
    assert "unknown key 'weather.rain'" in message and "cloud_depth" in message


def test_wrong_type_is_named() -> None:
    assert "site.pv_kwp: expected a number, got string '100'" in _error('[site]\npv_kwp = "100"')


def test_boolean_is_not_a_number() -> None:
    assert "site.bess_kw: expected a number, got boolean True" in _error("[site]\nbess_kw = true")


def test_seed_must_be_an_integer() -> None:
    assert "seed: expected an integer, got number 1.5" in _error("seed = 1.5")


def test_table_expected() -> None:
    assert "site: expected a table" in _error("site = 3")


def test_out_of_range_value() -> None:
    assert "site.bess_efficiency: must be within (0, 1], got 1.2" in _error("[site]\nbess_efficiency = 1.2")


def test_speed_out_of_range() -> None:
    assert "speed: must be within (0, 1000]" in _error("speed = 0")


def test_inconsistent_soc_limits() -> None:
    assert "site.soc_min_pct: must be below site.soc_max_pct" in _error("[site]\nsoc_min_pct = 90\nsoc_max_pct = 80")
    assert "site.soc_initial_pct: must be within" in _error("[site]\nsoc_initial_pct = 99")


def test_sunrise_after_sunset() -> None:
    assert "site.sunrise_h: must be before site.sunset_h" in _error("[site]\nsunrise_h = 20\nsunset_h = 6")


def test_bad_start_time() -> None:
    assert "start: not an ISO date-time" in _error('start = "tomorrow"')
    assert "start: expected a date and a time" in _error("start = 2025-06-21")


def test_fault_with_unknown_device() -> None:
    message = _error('[[faults]]\ndevice = "pump"\nkind = "offline"\nat_s = 1\nduration_s = 1')
    assert "faults[0].device: unknown device 'pump'; expected one of meter, inverter, bess" in message


def test_fault_with_unknown_kind() -> None:
    message = _error('[[faults]]\ndevice = "meter"\nkind = "melted"\nat_s = 1\nduration_s = 1')
    assert "faults[0].kind: unknown fault kind 'melted'" in message


def test_fault_missing_a_key() -> None:
    assert "faults[0].duration_s: missing" in _error('[[faults]]\ndevice = "meter"\nkind = "frozen"\nat_s = 1')


def test_slow_fault_needs_a_delay_and_others_must_not_have_one() -> None:
    slow = '[[faults]]\ndevice = "meter"\nkind = "slow"\nat_s = 1\nduration_s = 1'
    assert "faults[0].delay_ms: missing (required for kind 'slow')" in _error(slow)
    garbage = '[[faults]]\ndevice = "meter"\nkind = "garbage"\nat_s = 1\nduration_s = 1\ndelay_ms = 5'
    assert "faults[0].delay_ms: only allowed for kind 'slow'" in _error(garbage)


def test_fault_timing_must_be_sane() -> None:
    fault = '[[faults]]\ndevice = "meter"\nkind = "frozen"\nat_s = {at}\nduration_s = {duration}'
    assert "faults[0].at_s: must be >= 0" in _error(fault.format(at=-1, duration=1))
    assert "faults[0].duration_s: must be > 0" in _error(fault.format(at=1, duration=0))


def test_faults_must_be_an_array_of_tables() -> None:
    assert "faults: expected an array of tables" in _error('faults = "none"')


def test_invalid_toml_syntax() -> None:
    assert "invalid TOML" in _error("[site\npv_kwp = 1")


def test_unknown_scenario_name_lists_the_available_ones() -> None:
    with pytest.raises(ScenarioError, match=r"unknown scenario 'rainy'; available: .*sunny-day"):
        load_scenario("rainy")


def test_missing_file() -> None:
    with pytest.raises(ScenarioError, match="scenario file not found"):
        load_scenario("/nonexistent/nope.toml")
