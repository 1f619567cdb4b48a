"""Physics events: their validation in scenario files, their effect on the physics, the shipped scenarios."""

from __future__ import annotations

import dataclasses
import math

import pytest

from hil import physics
from hil.events import BessHeat, LoadStep
from hil.faults import FaultKind, FaultSpec
from hil.physics import Commands, PlantParams, Simulation, SiteParams
from hil.scenario import Scenario, ScenarioError, load_scenario, parse_scenario_text
from hil.server import serve_plant


def _parse(text: str) -> Scenario:
    return parse_scenario_text(text, source="test.toml")


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        _parse(text)
    message = str(info.value)
    assert message.startswith("test.toml: ") and "\n" not in message
    return message


LOAD = '[[events]]\nkind = "load_step"\n'
HEAT = '[[events]]\nkind = "bess_heat"\n'


# -- validation ---------------------------------------------------------------------------


def test_events_and_duration_are_parsed() -> None:
    scenario = _parse(
        "duration_s = 30\n"
        f"{LOAD}at_s = 10\ndelta_kw = -30\n"
        f"{LOAD}at_s = 2.5\ndelta_kw = 5.5\nduration_s = 4\n"
        f"{HEAT}at_s = 10\nduration_s = 8\nrise_c = 30\n"
    )
    assert scenario.duration_s == 30.0
    assert scenario.events == (
        LoadStep(at_s=10.0, delta_kw=-30.0),
        LoadStep(at_s=2.5, delta_kw=5.5, duration_s=4.0),
        BessHeat(at_s=10.0, duration_s=8.0, rise_c=30.0),
    )
    assert scenario.params.events == scenario.events
    assert [e.as_dict() for e in scenario.events] == [
        {"kind": "load_step", "at_s": 10.0, "duration_s": None, "delta_kw": -30.0},
        {"kind": "load_step", "at_s": 2.5, "duration_s": 4.0, "delta_kw": 5.5},
        {"kind": "bess_heat", "at_s": 10.0, "duration_s": 8.0, "rise_c": 30.0},
    ]
    assert _parse("").duration_s is None and _parse("").events == ()


def test_unknown_event_key_has_a_did_you_mean() -> None:
    assert "unknown key 'events[0].delta_k' (did you mean 'events[0].delta_kw'?)" in _error(
        f"{LOAD}at_s = 1\ndelta_k = -3"
    )
    assert "unknown key 'events[0].colour'; known keys: kind, at_s" in _error(f"{LOAD}colour = 1")


def test_event_kind_is_required_and_checked() -> None:
    assert "events[0].kind: missing" in _error("[[events]]\nat_s = 1\ndelta_kw = -3")
    message = _error('[[events]]\nkind = "earthquake"\nat_s = 1')
    assert "events[0].kind: unknown event kind 'earthquake'; expected one of load_step, bess_heat" in message
    assert "events[0].kind: expected a string, got integer 3" in _error("[[events]]\nkind = 3")


def test_missing_event_keys_are_named_with_the_kind() -> None:
    assert "events[0].delta_kw: missing (required for kind 'load_step')" in _error(f"{LOAD}at_s = 1")
    assert "events[0].at_s: missing (required for kind 'load_step')" in _error(f"{LOAD}delta_kw = 1")
    assert "events[1].duration_s: missing (required for kind 'bess_heat')" in _error(
        f"{LOAD}at_s = 1\ndelta_kw = 1\n{HEAT}at_s = 1\nrise_c = 5"
    )
    assert "events[0].rise_c: missing (required for kind 'bess_heat')" in _error(f"{HEAT}at_s = 1\nduration_s = 5")


def test_a_key_of_the_other_kind_is_refused() -> None:
    message = _error(f"{LOAD}at_s = 1\ndelta_kw = -3\nrise_c = 4")
    assert "events[0].rise_c: only allowed for kind 'bess_heat', not 'load_step'" in message
    message = _error(f"{HEAT}at_s = 1\nduration_s = 2\nrise_c = 4\ndelta_kw = 1")
    assert "events[0].delta_kw: only allowed for kind 'load_step', not 'bess_heat'" in message


def test_event_types_are_checked() -> None:
    assert "events[0].at_s: expected a number, got string '10'" in _error(f'{LOAD}at_s = "10"\ndelta_kw = 1')
    assert "events[0].delta_kw: expected a number, got boolean True" in _error(f"{LOAD}at_s = 1\ndelta_kw = true")
    assert "events[0]: expected a table" in _error("events = [1]")
    assert "events: expected an array of tables ([[events]])" in _error('events = "none"')
    assert "duration_s: expected a number, got string '30'" in _error('duration_s = "30"')


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"{LOAD}at_s = -1\ndelta_kw = 1", "events[0].at_s: must be >= 0 and finite, got -1"),
        (f"{LOAD}at_s = inf\ndelta_kw = 1", "events[0].at_s: must be >= 0 and finite, got inf"),
        (f"{LOAD}at_s = 1\ndelta_kw = 0", "events[0].delta_kw: must be non-zero"),
        (f"{LOAD}at_s = 1\ndelta_kw = nan", "events[0].delta_kw: must be non-zero and within -1e6..1e6, got nan"),
        (f"{LOAD}at_s = 1\ndelta_kw = 1\nduration_s = 0", "events[0].duration_s: must be > 0 and finite, got 0"),
        (f"{HEAT}at_s = 1\nduration_s = 2\nrise_c = 0", "events[0].rise_c: must be within (0, 500], got 0"),
        (f"{HEAT}at_s = 1\nduration_s = 2\nrise_c = -5", "events[0].rise_c: must be within (0, 500], got -5"),
        ("duration_s = 0", "duration_s: must be > 0 and finite, got 0"),
        ("duration_s = inf", "duration_s: must be > 0 and finite, got inf"),
        ("[site]\nbess_dead_time_s = -0.1", "site.bess_dead_time_s: must be within 0..60"),
        ("[site]\nbess_tau_s = 1e9", "site.bess_tau_s: must be within 0..3600"),
        ("[site]\nbess_thermal_tau_s = -1", "site.bess_thermal_tau_s: must be within 0..86400"),
        ("[site]\nambient_c = 200", "site.ambient_c: must be within -60..70"),
        ("[site]\nbess_heating_c = -1", "site.bess_heating_c: must be within 0..200"),
    ],
)
def test_event_and_dynamics_ranges(body: str, message: str) -> None:
    assert message in _error(body)


# -- physics ------------------------------------------------------------------------------


def _pair(*events: LoadStep | BessHeat, **site: float) -> tuple[Simulation, Simulation]:
    """Two simulations with the same seed, one with the events and one without."""
    params = PlantParams(site=dataclasses.replace(SiteParams(), step_s=0.1, **site), start_hour=13.0, seed=9)
    return Simulation(dataclasses.replace(params, events=events)), Simulation(params)


def test_a_load_step_changes_the_load_from_its_time_and_ends_after_its_duration() -> None:
    with_event, without = _pair(LoadStep(at_s=1.0, delta_kw=-10.0, duration_s=2.0))
    for _ in range(50):
        a, b = with_event.advance(Commands()), without.advance(Commands())
        # The step takes its share of the load noise with it (same seed, same draws).
        expected = 10_000.0 * (1.0 + physics.LOAD_NOISE_REL * b.load_noise) if 1.0 <= a.t_s + 1e-9 < 3.0 else 0.0
        assert b.load_w - a.load_w == pytest.approx(expected, abs=1e-6), a.t_s
        assert a.meter_w == pytest.approx(a.load_w - a.pv_w - a.bess_w, abs=1e-9)
        assert b.meter_w - a.meter_w == pytest.approx(expected, abs=1e-6)


def test_a_load_step_without_duration_stays_and_load_never_goes_negative() -> None:
    with_event, _ = _pair(LoadStep(at_s=0.5, delta_kw=-1e5))
    states = [with_event.advance(Commands()) for _ in range(100)]
    assert all(s.load_w > 0.0 for s in states if s.t_s < 0.5 - 1e-9)
    after = [s for s in states if s.t_s >= 0.5 - 1e-9]
    assert len(after) == 96 and all(s.load_w == 0.0 and s.load_var == 0.0 for s in after)
    assert all(s.meter_w == pytest.approx(-s.pv_w - s.bess_w) for s in after)


def test_an_event_at_zero_is_in_the_initial_state() -> None:
    params = PlantParams(site=SiteParams(), start_hour=13.0, events=(LoadStep(0.0, 7.0), BessHeat(0.0, 5.0, 12.0)))
    plain = Simulation(dataclasses.replace(params, events=())).state
    state = Simulation(params).state
    assert state.load_w - plain.load_w == pytest.approx(7000.0)
    assert state.bess_temp_c == pytest.approx(SiteParams().ambient_c + 12.0)


def test_a_heat_event_raises_the_temperature_with_the_thermal_time_constant_and_it_cools_after() -> None:
    tau = 2.0
    with_event, _ = _pair(BessHeat(at_s=1.0, duration_s=8.0, rise_c=30.0), bess_thermal_tau_s=tau, ambient_c=20.0)
    temps = {round(s.t_s, 1): s.bess_temp_c for s in (with_event.advance(Commands()) for _ in range(200))}
    assert temps[0.9] == 20.0
    assert temps[1.0] > 20.0  # active from its start time
    assert temps[3.0] - 20.0 == pytest.approx(30.0 * (1.0 - math.exp(-(3.0 - 0.9) / tau)), rel=1e-6)
    peak = 30.0 * (1.0 - math.exp(-(8.9 - 0.9) / tau))
    assert max(temps.values()) == pytest.approx(20.0 + peak)
    assert temps[8.9] == pytest.approx(20.0 + peak)  # ends at 9.0: cooling from there
    assert temps[9.0 + tau - 0.1] - 20.0 == pytest.approx(peak * math.exp(-1.0), rel=1e-6)
    assert temps[19.9] - 20.0 == pytest.approx(peak * math.exp(-(19.9 - 8.9) / tau), rel=1e-6) and temps[19.9] < 20.2


# -- shipped scenarios -------------------------------------------------------------------


def _run(name: str, seconds: float, commands: Commands | None = None) -> list[physics.PlantState]:
    sim = Simulation(load_scenario(name).params)
    return [sim.state] + [sim.advance(commands or Commands()) for _ in range(round(seconds / 0.1))]


def test_export_step_exports_20_to_25_kw_then_well_over_30() -> None:
    scenario = load_scenario("export-step")
    site = scenario.site
    assert (scenario.duration_s, site.pv_kwp, site.inverter_w, site.bess_kwh, site.bess_kw) == (
        30.0, 100.0, 100_000.0, 200.0, 100.0
    )
    assert (site.bess_dead_time_s, site.bess_tau_s, site.inverter_tau_s) == (0.1, 0.2, 1.0)
    assert site.bess_ramp_w_per_s >= 1e6 and scenario.weather.cloud_passes_per_hour == 0.0
    (step,) = scenario.events
    assert step == LoadStep(at_s=10.0, delta_kw=-0.3 * site.load_peak_kw)
    states = _run("export-step", 30.0)
    before = [-s.meter_w for s in states if s.t_s < 10.0 - 1e-6]
    after = [-s.meter_w for s in states if s.t_s >= 10.0 - 1e-6]
    assert min(before) >= 20_000.0 and max(before) <= 25_000.0
    assert min(after) > 70_000.0


def test_export_step_full_leaves_only_curtailment() -> None:
    scenario = load_scenario("export-step-full")
    assert scenario.site.soc_initial_pct == scenario.site.soc_max_pct == 95.0
    assert scenario.events == load_scenario("export-step").events
    states = _run("export-step-full", 20.0, Commands(bess_setpoint_w=-100_000.0))
    assert all(s.bess_w == 0.0 for s in states)  # a full battery cannot charge
    assert min(-s.meter_w for s in states if s.t_s > 10.0) > 70_000.0


def test_meter_loss_is_a_network_fault_on_a_steady_export() -> None:
    scenario = load_scenario("meter-loss")
    assert scenario.events == () and scenario.duration_s == 30.0
    assert scenario.faults == (FaultSpec("meter", FaultKind.OFFLINE, 10.0, 10.0),)
    assert scenario.site == load_scenario("export-step").site


def test_overtemp_drives_the_module_max_through_45_and_back_below_40() -> None:
    scenario = load_scenario("overtemp")
    assert scenario.site.bess_thermal_tau_s == 2.0 and scenario.duration_s == 35.0
    assert scenario.events == (BessHeat(at_s=10.0, duration_s=8.0, rise_c=30.0),
                               LoadStep(at_s=3.0, delta_kw=-52.5))  # the battery has work to do
    mod_tmp_max = {round(s.t_s, 1): s.bess_temp_c + 1.5 for s in _run("overtemp", 35.0)}
    assert mod_tmp_max[0.0] == pytest.approx(26.5)
    over = [t for t, c in mod_tmp_max.items() if c > 45.0]
    assert 11.0 < min(over) < 13.0 and max(over) < 21.0
    assert 54.0 < max(mod_tmp_max.values()) < 57.0
    assert all(c < 40.0 for t, c in mod_tmp_max.items() if t >= 25.0)


async def test_the_ready_event_carries_the_duration_and_the_events() -> None:
    async with serve_plant("export-step", speed=1.0) as plant:
        ready = plant.ready_event()
    assert ready["duration_s"] == 30.0
    assert ready["events"] == [{"kind": "load_step", "at_s": 10.0, "duration_s": None, "delta_kw": -52.5}]
    assert ready["devices"]["bess"]["models"] == [1, 802, 803, 704]
