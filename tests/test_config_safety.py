"""Safety config: envelope, interlocks (by hand and by preset), export limit; precise errors."""

from __future__ import annotations

import pytest

from edgeagent import config
from edgeagent.safety.interlocks import BadInput, Condition

BASE = """\
[site]
id = "plant-7"
node = "edge-01"
timezone = "America/Chicago"

[devices.pcc]
kind = "sunspec"
host = "127.0.0.1"
points = ["203.W", "203.PhVphA"]

[devices.bess]
kind = "sunspec"
host = "127.0.0.1"
port = 503
points = ["802.SoC", "704.WSet", { ref = "802.CellVMax", name = "cell_v_max" }]

[devices.pv]
kind = "sunspec"
host = "127.0.0.1"
port = 504
points = ["103.W", "120.WRtg", "123.WMaxLimPct", "123.WMaxLim_Ena"]

[[setpoints]]
point = "bess.WSet"
min = -100000
max = 100000

[[setpoints]]
point = "pv.WMaxLimPct"
min = 0
max = 100
activate = [{ point = "pv.WMaxLim_Ena", value = 1 }]

[[interlocks]]
name = "grid_ov2"
points = ["pcc.PhVphA"]
preset = "ieee1547/cat2/OV2"
nominal_v = 240
safe_action = [{ point = "pv.WMaxLimPct", value = 0 }, { point = "bess.WSet", value = 0 }]

[[interlocks]]
name = "cell_overvoltage"
points = ["bess.cell_v_max"]
condition = "above"
limit = 3.65
hysteresis = 0.05
pickup_ms = 500
latch = true
on_bad_input = "hold"
safe_action = [{ point = "bess.WSet", value = 0 }]

[export_limit]
meter = "pcc.W"
default_kw = 50
contract_min_kw = 0
contract_max_kw = 80
margin_kw = 2
bess = { setpoint = "bess.WSet", soc = "bess.SoC", max_charge_w = 50000 }
pv = { setpoint = "pv.WMaxLimPct", rated_point = "pv.WRtg", power_point = "pv.W" }

[[export_limit.schedule]]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "10:00"
end = "16:00"
limit_kw = 20
"""


def problems(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as info:
        config.parse(text, "site.toml")
    return info.value.problems


def test_safety_sections_load() -> None:
    safety = config.parse(BASE).safety
    assert [(b.device, b.point, b.minimum, b.maximum) for b in safety.setpoints] == [
        ("bess", "WSet", -100000, 100000), ("pv", "WMaxLimPct", 0, 100)]
    assert safety.setpoints[1].activate == (("WMaxLim_Ena", 1.0),)
    ov2, cell = safety.interlocks
    assert ov2.condition is Condition.ABOVE and ov2.limit == pytest.approx(288.0) and ov2.pickup_s == 0.16
    assert [(a.device, a.point, a.value) for a in ov2.safe_action] == [("pv", "WMaxLimPct", 0), ("bess", "WSet", 0)]
    assert cell.latch and cell.on_bad_input is BadInput.HOLD and cell.pickup_s == 0.5
    limit = safety.export_limit
    assert limit is not None and limit.schedule is not None and limit.bess is not None
    assert limit.schedule.limit_at(1_790_000_000.0) in (20.0, 50.0)
    assert config.parse(BASE.split("[[setpoints]]")[0]).safety.interlocks == ()


@pytest.mark.parametrize(("change", "expected"), [
    (('start = "10:00"\nend = "16:00"\nlimit_kw = 20\n',
      'start = "10:00"\nend = "16:00"\nlimit_kw = 20\n\n[[export_limit.schedule]]\ndays = ["fri"]\n'
      'start = "15:00"\nend = "18:00"\nlimit_kw = 10\n'), "export_limit.schedule: "),
    (("limit_kw = 20", "limit_kw = 95"), "export_limit: "),
    (('safe_action = [{ point = "bess.WSet", value = 0 }]', 'safe_action = [{ point = "bess.WSett", value = 0 }]'),
     "interlocks[1].safe_action[0].point: unknown setpoint (declare it in [[setpoints]]); did you mean 'bess.WSet'?"),
    (('preset = "ieee1547/cat2/OV2"', 'preset = "ieee1547/cat2/OV3"'), "interlocks[0].preset: "),
    (('points = ["bess.cell_v_max"]', 'points = ["bess.cell_v"]'), "interlocks[1].points[0]: unknown point"),
    (('name = "cell_overvoltage"', 'name = "grid_ov2"'), "interlocks[1].name: another interlock has this name"),
    (("max = 100\n", "max = -5\n"), "setpoints[1]: pv.WMaxLimPct: bounds must be finite with minimum <= maximum"),
    (('condition = "above"', 'condition = "abuve"'), "interlocks[1].condition: must be one of above"),
    (('{ point = "pv.WMaxLim_Ena", value = 1 }', '{ point = "bess.SoC", value = 1 }'),
     "setpoints[1].activate[0].point: must be a point of device 'pv', like the setpoint"),
])
def test_each_safety_mistake_is_reported_precisely(change: tuple[str, str], expected: str) -> None:
    lines = problems(BASE.replace(*change))
    assert any(expected in line for line in lines), lines
    assert all(line.startswith("site.toml:") for line in lines)


def test_overlap_and_contract_messages_name_the_problem() -> None:
    overlap = problems(BASE.replace('days = ["mon", "tue", "wed", "thu", "fri"]', 'days = ["mon", "mon"]')
                       + '\n[[export_limit.schedule]]\ndays = ["mon"]\nstart = "12:00"\nend = "13:00"\nlimit_kw = 5\n')
    assert any("overlap" in line for line in overlap), overlap
    assert not any("exactly one" in line for line in overlap), overlap  # no cascade
    above = problems(BASE.replace("limit_kw = 20", "limit_kw = 95"))
    assert any("95" in line and "contract" in line for line in above), above


HOT = """
[[interlocks]]
name = "too_hot_to_charge"
points = ["bess.cell_v_max"]
condition = "above"
limit = 3.6
safe_bounds = [{ point = "bess.WSet", min = 0 }]
"""


def test_safe_bounds_load_without_a_safe_action() -> None:
    spec = config.parse(BASE + HOT).safety.interlocks[-1]
    assert spec.safe_action == ()
    assert [(b.device, b.point, b.minimum, b.maximum) for b in spec.safe_bounds] == [
        ("bess", "WSet", 0.0, float("inf"))]


@pytest.mark.parametrize(("change", "expected"), [
    (("min = 0 }", "min = 5, max = 1 }"), "interlocks[2].safe_bounds[0]: safe bound bess.WSet: needs min <= max"),
    ((", min = 0 }", " }"), "interlocks[2].safe_bounds[0]: safe bound bess.WSet: give min, max or both"),
    (('point = "bess.WSet", min', 'point = "bess.SoC", min'),
     "interlocks[2].safe_bounds[0].point: unknown setpoint (declare it in [[setpoints]])"),
    (("min = 0 }", "minimum = 0 }"), "interlocks[2].safe_bounds[0].minimum: unknown key"),
    (('safe_bounds = [{ point = "bess.WSet", min = 0 }]', "safe_bounds = []"), "interlocks[2].safe_bounds: must be"),
    (('safe_bounds = [{ point = "bess.WSet", min = 0 }]', ""), "interlocks[2].safe_action: must be a list"),
])
def test_safe_bound_mistakes_are_reported_precisely(change: tuple[str, str], expected: str) -> None:
    lines = problems(BASE + HOT.replace(*change))
    assert any(expected in line for line in lines), lines
