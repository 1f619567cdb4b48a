"""Config loading: every kind of mistake gives a precise FILE:LINE: key.path line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent import cli, config
from edgeagent.field.points import RegType, Table, WordOrder

GOOD = """\
[site]
id = "plant-7"
node = "edge-01"
timezone = "Europe/Berlin"

[scan]
period_ms = 50

[storage]
dir = "/tmp/edgeagent-test"

[devices.pcc]
kind = "sunspec"
host = "192.0.2.10"
port = 502
unit_id = 3
poll_ms = 250
points = ["203.W", { ref = "203.Hz", name = "grid_hz" }]

[devices.aux]
kind = "modbus"
transport = "rtu"
serial_port = "/dev/ttyUSB0"
baudrate = 19200
parity = "E"

[[devices.aux.points]]
name = "oil_temp_c"
address = 100
type = "int16"
scale = 0.1
unit = "°C"

[[devices.aux.points]]
name = "energy_wh"
address = 200
type = "uint32"
word_order = "little"
table = "input"
"""


def problems(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as info:
        config.parse(text, "site.toml")
    return info.value.problems


def test_good_config_loads_into_typed_frozen_objects() -> None:
    cfg = config.parse(GOOD, "site.toml")
    assert cfg.site.site_id == "plant-7" and cfg.site.timezone == "Europe/Berlin"
    assert cfg.scan.period_s == pytest.approx(0.05)
    pcc, aux = cfg.devices
    assert pcc.link.unit_id == 3 and pcc.poll_s == pytest.approx(0.25)
    assert [r.ref for r in pcc.sunspec_points] == ["203.W", "203.Hz"]
    assert pcc.point_names() == ["pcc.W", "pcc.grid_hz"]
    assert pcc.max_age_s == pytest.approx(3 * 0.25 + 1.0)
    assert aux.link.transport == "rtu" and aux.link.parity == "E"
    oil, energy = aux.registers
    assert (oil.type, oil.scale, oil.unit, oil.table) == (RegType.INT16, 0.1, "°C", Table.HOLDING)
    assert (energy.type, energy.size, energy.word_order, energy.table) == (
        RegType.UINT32, 2, WordOrder.LITTLE, Table.INPUT)
    with pytest.raises(AttributeError):
        cfg.site.site_id = "x"  # type: ignore[misc]


def test_syntax_error_names_the_line() -> None:
    (line,) = problems('[site]\nid = "a"\nnode = \n')
    assert line.startswith("site.toml:3: TOML syntax error")


def test_unknown_key_suggests_the_close_one() -> None:
    text = GOOD.replace('timezone = "Europe/Berlin"', 'timezon = "Europe/Berlin"')
    assert problems(text) == ["site.toml:4: site.timezon: unknown key; did you mean 'timezone'?"]


def test_unknown_key_deep_in_an_array_of_tables() -> None:
    text = GOOD.replace("scale = 0.1", "scael = 0.1")
    assert problems(text) == [
        "site.toml:31: devices.aux.points[0].scael: unknown key; did you mean 'scale'?"]


def test_wrong_type_shows_the_value() -> None:
    text = GOOD.replace("port = 502", 'port = "502"')
    assert problems(text) == ["site.toml:15: devices.pcc.port: must be an integer (got '502')"]


def test_out_of_range() -> None:
    text = GOOD.replace("period_ms = 50", "period_ms = 5")
    assert problems(text) == ["site.toml:7: scan.period_ms: must be at least 10 (got 5)"]


def test_missing_required_key() -> None:
    text = GOOD.replace('node = "edge-01"\n', "")
    assert problems(text) == ["site.toml:1: site.node: is required"]


def test_bad_choice_lists_the_options() -> None:
    text = GOOD.replace('type = "int16"', 'type = "int17"')
    (line,) = problems(text)
    assert line.startswith("site.toml:30: devices.aux.points[0].type: must be one of int16, uint16,")
    assert line.endswith("(got 'int17')")


def test_duplicate_point_names() -> None:
    text = GOOD.replace('name = "grid_hz"', 'name = "W"')
    assert problems(text) == [
        "site.toml:18: devices.pcc.points[1]: point name 'W' is already used by points[0]; "
        "give one a distinct name"]


def test_unknown_time_zone() -> None:
    text = GOOD.replace("Europe/Berlin", "Mars/Olympus")
    (line,) = problems(text)
    assert line.startswith("site.toml:4: site.timezone: unknown time zone")


def test_max_age_shorter_than_poll() -> None:
    text = GOOD.replace("poll_ms = 250", "poll_ms = 250\nmax_age_ms = 100")
    (line,) = problems(text)
    assert "devices.pcc.max_age_ms: must be at least poll_ms" in line


def test_rtu_needs_a_serial_port_and_tcp_a_host() -> None:
    text = GOOD.replace('serial_port = "/dev/ttyUSB0"\n', "").replace('host = "192.0.2.10"\n', "")
    assert problems(text) == ["site.toml:12: devices.pcc.host: is required",
                              "site.toml:19: devices.aux.serial_port: is required"]


def test_every_problem_is_reported_at_once() -> None:
    text = (GOOD.replace("period_ms = 50", "period_ms = -1")
            .replace('kind = "sunspec"', 'kind = "sunspek"')
            .replace("address = 200", "address = 70000"))
    lines = problems(text)
    assert len(lines) == 3
    assert lines[0].startswith("site.toml:7: scan.period_ms")
    assert lines[1].startswith("site.toml:13: devices.pcc.kind: must be one of modbus, sunspec")
    assert lines[2].startswith("site.toml:36: devices.aux.points[1].address: must be at most 65535")


def test_check_config_cli_prints_three_lines_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "site.toml"
    bad.write_text(GOOD.replace("period_ms = 50", "period_ms = -1")
                   .replace("timezone", "tz").replace("port = 502", "port = 0"))
    assert cli.main(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and err[-1].endswith("3 problems found")
    assert all(line.startswith(f"{bad}:") for line in err[:3])


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "site.toml"
    good.write_text(GOOD)
    assert cli.main(["check-config", str(good)]) == 0
    assert "ok (site plant-7, node edge-01, 2 devices, 4 points" in capsys.readouterr().out


def test_missing_file_and_binary_file(tmp_path: Path) -> None:
    with pytest.raises(config.ConfigError) as info:
        config.load(tmp_path / "nope.toml")
    assert "cannot read config" in info.value.problems[0]
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(config.ConfigError) as info:
        config.load(binary)
    assert "not UTF-8" in info.value.problems[0]


def test_bundled_demo_config_is_valid() -> None:
    from importlib import resources
    from string import Template

    text = resources.files("edgeagent").joinpath("examples/demo.toml").read_text()
    cfg = config.parse(Template(text).substitute(state_dir="/tmp/x", meter_port=1, inverter_port=2, bess_port=3))
    assert {d.name for d in cfg.devices} == {"pcc", "pv", "bess"}


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_the_loader(text: str) -> None:
    try:
        config.parse(text, "fuzz.toml")
    except config.ConfigError as exc:
        assert exc.problems and all(p.startswith("fuzz.toml") for p in exc.problems)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["period_ms", "history_len", "perod_ms"]),
                       st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.booleans())))
def test_arbitrary_scan_values_never_crash(scan: dict[str, object]) -> None:
    import tomllib  # noqa: F401 - values are rendered below as TOML literals

    def literal(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return str(v)

    body = "\n".join(f"{k} = {literal(v)}" for k, v in scan.items())
    text = GOOD.replace("[scan]\nperiod_ms = 50", "[scan]\n" + body)
    try:
        cfg = config.parse(text)
        assert 0.01 <= cfg.scan.period_s <= 10
    except config.ConfigError as exc:
        assert exc.problems


UPLINK = GOOD + """
[uplink]
broker = "mqtts://broker.example.net"
ca_file = "/etc/edgeagent/ca.pem"
username = "edge-01"
password_file = "/etc/edgeagent/mqtt.pass"

[uplink.telemetry]
interval_ms = 500
integrity_s = 600

[uplink.telemetry.deadbands]
"pcc.W" = 100
"""


def test_uplink_section_loads() -> None:
    up = config.parse(UPLINK).uplink
    assert up is not None
    assert (up.host, up.port, up.tls, up.username) == ("broker.example.net", 8883, True, "edge-01")
    assert up.client_id == "edgeagent-plant-7-edge-01"
    assert up.telemetry.interval_s == 0.5 and up.telemetry.deadbands == {"pcc.W": 100.0}
    assert config.parse(GOOD).uplink is None


@pytest.mark.parametrize(("change", "expected"), [
    (('broker = "mqtts://broker.example.net"', 'broker = "mqtt://broker.example.net"'),
     "uplink.broker: refusing plaintext MQTT to a non-loopback broker"),
    (('broker = "mqtts://broker.example.net"', 'broker = "http://broker"'),
     "uplink.broker: must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"),
    (('"pcc.W" = 100', '"pcc.WW" = 100'), "uplink.telemetry.deadbands.pcc.WW: no such point; did you mean 'pcc.W'?"),
    (('username = "edge-01"\n', ""), "uplink.password_file: a password needs a username"),
    (('ca_file = "/etc/edgeagent/ca.pem"', 'cert_file = "/etc/edgeagent/c.pem"'),
     "uplink.key_file: cert_file and key_file go together"),
])
def test_uplink_mistakes(change: tuple[str, str], expected: str) -> None:
    lines = problems(UPLINK.replace(*change))
    assert any(expected in line for line in lines), lines
    assert all(line.startswith("site.toml:") for line in lines)


def test_plaintext_to_loopback_is_fine_and_insecure_needs_a_flag() -> None:
    local = config.parse(UPLINK.replace("mqtts://broker.example.net", "mqtt://127.0.0.1:1884")
                         .replace('ca_file = "/etc/edgeagent/ca.pem"\n', ""))
    assert local.uplink is not None and local.uplink.port == 1884 and not local.uplink.tls
    remote = config.parse(UPLINK.replace("mqtts://broker.example.net", "mqtt://10.0.0.5")
                          .replace('ca_file = "/etc/edgeagent/ca.pem"', "allow_insecure = true"))
    assert remote.uplink is not None and remote.uplink.allow_insecure
