"""Presets: every entry against the value of its cited source, unit conversion, and lookups."""

from __future__ import annotations

import pytest

from edgeagent.safety.interlocks import Condition, InterlockSpec, SafeSetpoint
from edgeagent.safety.presets import PRESETS, get_preset, resolve_preset

A, B = Condition.ABOVE, Condition.BELOW

# name: (condition, limit, pickup_s, unit, text the source must cite)
EXPECTED: dict[str, tuple[Condition, float, float, str, str]] = {
    # IEEE 1547-2018 Table 11 (Category I)
    "ieee1547/cat1/OV2": (A, 1.20, 0.16, "pu", "Table 11"),
    "ieee1547/cat1/OV1": (A, 1.10, 2.0, "pu", "Table 11"),
    "ieee1547/cat1/UV1": (B, 0.70, 2.0, "pu", "Table 11"),
    "ieee1547/cat1/UV2": (B, 0.45, 0.16, "pu", "Table 11"),
    # IEEE 1547-2018 Table 12 (Category II)
    "ieee1547/cat2/OV2": (A, 1.20, 0.16, "pu", "Table 12"),
    "ieee1547/cat2/OV1": (A, 1.10, 2.0, "pu", "Table 12"),
    "ieee1547/cat2/UV1": (B, 0.70, 10.0, "pu", "Table 12"),
    "ieee1547/cat2/UV2": (B, 0.45, 0.16, "pu", "Table 12"),
    # IEEE 1547-2018 Table 13 (Category III)
    "ieee1547/cat3/OV2": (A, 1.20, 0.16, "pu", "Table 13"),
    "ieee1547/cat3/OV1": (A, 1.10, 13.0, "pu", "Table 13"),
    "ieee1547/cat3/UV1": (B, 0.88, 21.0, "pu", "Table 13"),
    "ieee1547/cat3/UV2": (B, 0.50, 2.0, "pu", "Table 13"),
    # IEEE 1547-2018 Table 14 (frequency, all categories)
    **{f"ieee1547/cat{c}/{fn}": (cond, hz, t, "Hz", "Table 14")
       for c in (1, 2, 3)
       for fn, cond, hz, t in (("OF2", A, 62.0, 0.16), ("OF1", A, 61.2, 300.0),
                               ("UF1", B, 58.5, 300.0), ("UF2", B, 56.5, 0.16))},
    # typical cell datasheet windows
    "battery/lfp/cell_temp_min": (B, -20.0, 0.0, "°C", "datasheet"),
    "battery/lfp/cell_temp_max": (A, 60.0, 0.0, "°C", "datasheet"),
    "battery/lfp/charge_temp_min": (B, 0.0, 0.0, "°C", "datasheet"),
    "battery/lfp/charge_temp_max": (A, 45.0, 0.0, "°C", "datasheet"),
    "battery/lfp/soc_min": (B, 5.0, 0.0, "%", "datasheet"),
    "battery/lfp/soc_max": (A, 95.0, 0.0, "%", "datasheet"),
    "battery/nmc/cell_temp_min": (B, -20.0, 0.0, "°C", "datasheet"),
    "battery/nmc/cell_temp_max": (A, 60.0, 0.0, "°C", "datasheet"),
    "battery/nmc/charge_temp_min": (B, 0.0, 0.0, "°C", "datasheet"),
    "battery/nmc/charge_temp_max": (A, 45.0, 0.0, "°C", "datasheet"),
    "battery/nmc/soc_min": (B, 10.0, 0.0, "%", "datasheet"),
    "battery/nmc/soc_max": (A, 90.0, 0.0, "%", "datasheet"),
    "battery/sodium_ion/cell_temp_min": (B, -30.0, 0.0, "°C", "datasheet"),
    "battery/sodium_ion/cell_temp_max": (A, 60.0, 0.0, "°C", "datasheet"),
    "battery/sodium_ion/charge_temp_min": (B, -10.0, 0.0, "°C", "datasheet"),
    "battery/sodium_ion/charge_temp_max": (A, 45.0, 0.0, "°C", "datasheet"),
    "battery/sodium_ion/soc_min": (B, 0.0, 0.0, "%", "datasheet"),
    "battery/sodium_ion/soc_max": (A, 100.0, 0.0, "%", "datasheet"),
    # IEEE C57.91-2011 Table 7
    "transformer/c57_91/hot_spot/normal": (A, 120.0, 0.0, "°C", "C57.91-2011 Table 7"),
    "transformer/c57_91/top_oil/normal": (A, 105.0, 0.0, "°C", "C57.91-2011 Table 7"),
    "transformer/c57_91/hot_spot/planned_overload": (A, 130.0, 0.0, "°C", "C57.91-2011 Table 7"),
    "transformer/c57_91/top_oil/planned_overload": (A, 110.0, 0.0, "°C", "C57.91-2011 Table 7"),
    "transformer/c57_91/hot_spot/long_time_emergency": (A, 140.0, 0.0, "°C", "C57.91-2011 Table 7"),
    "transformer/c57_91/top_oil/long_time_emergency": (A, 110.0, 0.0, "°C", "C57.91-2011 Table 7"),
    "transformer/c57_91/hot_spot/short_time_emergency": (A, 180.0, 0.0, "°C", "C57.91-2011 Table 7"),
    "transformer/c57_91/top_oil/short_time_emergency": (A, 110.0, 0.0, "°C", "C57.91-2011 Table 7"),
    # IEC 60076-7:2018 Table 2
    "transformer/iec60076_7/hot_spot/normal_cyclic": (A, 120.0, 0.0, "°C", "60076-7:2018 Table 2"),
    "transformer/iec60076_7/top_oil/normal_cyclic": (A, 105.0, 0.0, "°C", "60076-7:2018 Table 2"),
    "transformer/iec60076_7/hot_spot/long_time_emergency": (A, 140.0, 0.0, "°C", "60076-7:2018 Table 2"),
    "transformer/iec60076_7/top_oil/long_time_emergency": (A, 115.0, 0.0, "°C", "60076-7:2018 Table 2"),
    "transformer/iec60076_7/hot_spot/short_time_emergency": (A, 160.0, 0.0, "°C", "60076-7:2018 Table 2"),
    "transformer/iec60076_7/top_oil/short_time_emergency": (A, 115.0, 0.0, "°C", "60076-7:2018 Table 2"),
}


def test_registry_is_exactly_the_reviewed_table() -> None:
    assert set(PRESETS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_preset_matches_cited_source(name: str) -> None:
    cond, limit, pickup_s, unit, cite = EXPECTED[name]
    preset = PRESETS[name]
    assert (preset.condition, preset.limit, preset.pickup_s, preset.unit) == (cond, limit, pickup_s, unit)
    assert cite in preset.source
    if name.startswith("ieee1547/"):
        assert "default" in preset.source and "adjustable" in preset.source
    if name.startswith("battery/"):
        assert "check against" in preset.source


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_preset_builds_a_valid_interlock(name: str) -> None:
    cond, limit, pickup_s = resolve_preset(name, nominal_v=230.0)
    spec = InterlockSpec(name=name, points=("p",), condition=cond, limit=limit, pickup_s=pickup_s,
                         safe_action=(SafeSetpoint("bess", "WSet", 0.0),))
    assert spec.limit == limit


def test_voltage_in_volts_or_pu() -> None:
    cond, limit, pickup_s = resolve_preset("ieee1547/cat2/OV2", nominal_v=230.0)
    assert (cond, pickup_s) == (A, 0.16) and limit == pytest.approx(276.0)
    cond, limit, pickup_s = resolve_preset("ieee1547/cat3/UV1", nominal_v=480.0)
    assert (cond, pickup_s) == (B, 21.0) and limit == pytest.approx(422.4)
    assert resolve_preset("ieee1547/cat2/UV2", nominal_v=None) == (B, 0.45, 0.16)
    with pytest.raises(ValueError, match="nominal_v"):
        resolve_preset("ieee1547/cat2/UV2", nominal_v=0.0)


def test_frequency_scaled_per_unit_for_50_hz() -> None:
    assert resolve_preset("ieee1547/cat2/OF2", nominal_v=None) == (A, 62.0, 0.16)
    assert resolve_preset("ieee1547/cat2/OF2", nominal_v=None, nominal_hz=50.0)[1] == pytest.approx(51.6667, abs=1e-4)
    assert resolve_preset("ieee1547/cat1/UF2", nominal_v=None, nominal_hz=50.0)[1] == pytest.approx(47.0833, abs=1e-4)
    assert resolve_preset("ieee1547/cat1/UF1", nominal_v=230.0, nominal_hz=50.0)[1] == pytest.approx(48.75)
    with pytest.raises(ValueError, match="nominal_hz"):
        resolve_preset("ieee1547/cat1/UF1", nominal_v=None, nominal_hz=-50.0)


def test_non_electrical_presets_are_not_scaled() -> None:
    assert resolve_preset("battery/lfp/cell_temp_max", nominal_v=230.0, nominal_hz=50.0) == (A, 60.0, 0.0)


def test_unknown_preset_suggests_close_names() -> None:
    with pytest.raises(KeyError, match=r"did you mean .*'ieee1547/cat2/OV2'"):
        resolve_preset("ieee1547/cat2/0V2", nominal_v=None)
    with pytest.raises(KeyError, match="long_time_emergency"):
        get_preset("transformer/c57_91/hot_spot/emergency")
    with pytest.raises(KeyError, match=r"unknown interlock preset 'zzz'") as info:
        get_preset("zzz")
    assert "did you mean" not in str(info.value)
