"""`kind = "opcua"` in the site config: a good section parses, each kind of mistake is reported
with its file, line and key path, and node references parse as NodeIds or browse paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeagent import config
from edgeagent.field.opcua_config import SecurityMode, parse_node_ref

HEAD = """[site]
id = "t"
node = "n"
"""

GOOD = HEAD + """
[devices.tx1]
kind = "opcua"
url = "opc.tcp://127.0.0.1:4840/edge"
publishing_ms = 500
timeout_ms = 1500

[[devices.tx1.nodes]]
name = "top_oil_c"
node = "ns=2;s=Transformer.TopOil"
unit = "°C"

[[devices.tx1.nodes]]
name = "fan_cmd"
node = "0:Objects/2:Transformer/2:FanCommand"
writable = true
"""


def problems(text: str) -> list[str]:
    with pytest.raises(config.ConfigError) as info:
        config.parse(text, "site.toml")
    return info.value.problems


def test_a_good_section_parses_into_points_named_device_dot_name() -> None:
    cfg = config.parse(GOOD)
    (dev,) = cfg.opcua_devices
    assert cfg.devices == () and dev.url == "opc.tcp://127.0.0.1:4840/edge"
    assert dev.publishing_s == 0.5 and dev.timeout_s == 1.5 and dev.retry_s == 5.0
    assert dev.point_names() == ["tx1.top_oil_c", "tx1.fan_cmd"]
    top, fan = dev.nodes
    assert top.ref.node_id == "ns=2;s=Transformer.TopOil" and top.unit == "°C" and not top.writable
    assert fan.ref.path == ((0, "Objects"), (2, "Transformer"), (2, "FanCommand")) and fan.writable
    assert dev.security.mode is SecurityMode.NONE
    assert dev.max_age_s == pytest.approx(2 * 1.0 + 1.5 + 0.5)  # keep-alive is at least 1 s


def test_opcua_points_can_be_interlock_inputs_and_telemetry_deadbands() -> None:
    text = GOOD + """
[[setpoints]]
point = "tx1.fan_cmd"
min = 0
max = 1
[[interlocks]]
name = "hot"
points = ["tx1.top_oil_c"]
condition = "above"
limit = 95
safe_action = [{ point = "tx1.fan_cmd", value = 1 }]
"""
    cfg = config.parse(text)
    assert cfg.safety.interlocks[0].points == ("tx1.top_oil_c",)
    assert "interlocks[0].points" in "\n".join(problems(text.replace('["tx1.top_oil_c"]', '["tx1.top_oil"]')))


@pytest.mark.parametrize(("change", "expect"), [
    (('url = "opc.tcp://127.0.0.1:4840/edge"', 'url = "http://127.0.0.1:4840"'),
     "site.toml:7: devices.tx1.url: url 'http://127.0.0.1:4840' must be opc.tcp://HOST[:PORT][/PATH]"),
    (('url = "opc.tcp://127.0.0.1:4840/edge"', 'url = "opc.tcp://10.0.0.20:4840"'),
     "site.toml:7: devices.tx1.url: refusing security policy None to 10.0.0.20"),
    (('publishing_ms = 500', 'publishing_ms = 0'), "site.toml:8: devices.tx1.publishing_ms: must be at least 10"),
    (('publishing_ms = 500', 'publish_ms = 500'), "site.toml:8: devices.tx1.publish_ms: unknown key; did you mean"),
    (('node = "ns=2;s=Transformer.TopOil"', 'node = "ns=2;x=Transformer.TopOil"'),
     "site.toml:13: devices.tx1.nodes[0].node: node 'ns=2;x=Transformer.TopOil' is neither a NodeId"),
    (('node = "0:Objects/2:Transformer/2:FanCommand"', 'node = "Objects/Transformer"'),
     "site.toml:18: devices.tx1.nodes[1].node: node 'Objects/Transformer' is neither a NodeId"),
    (('name = "fan_cmd"', 'name = "top_oil_c"'),
     "site.toml:17: devices.tx1.nodes[1].name: point name 'top_oil_c' is already used by nodes[0]"),
    (('name = "fan_cmd"', 'name = "fan.cmd"'), "site.toml:17: devices.tx1.nodes[1].name: must match"),
    (('writable = true', 'writable = "yes"'), "site.toml:19: devices.tx1.nodes[1].writable: must be true or false"),
    (('unit = "°C"\n', 'unit = "°C"\nscale = 2\n'), "site.toml:15: devices.tx1.nodes[0].scale: unknown key"),
])
def test_each_mistake_names_file_line_and_key(change: tuple[str, str], expect: str) -> None:
    old, new = change
    assert old in GOOD
    found = problems(GOOD.replace(old, new, 1))
    assert any(p.startswith(expect) for p in found), found


def test_no_nodes_is_an_error() -> None:
    text = GOOD[: GOOD.index("[[devices.tx1.nodes]]")]
    assert problems(text) == ["site.toml:5: devices.tx1.nodes: must be a non-empty list of [[devices.NAME.nodes]] "
                              "with name and node (got None)"]


def security(tmp_path: Path, body: str) -> str:
    for name in ("client.der", "client-key.pem", "server.der", "password"):
        (tmp_path / name).write_text("x")
    return GOOD.replace('url = "opc.tcp://127.0.0.1:4840/edge"', 'url = "opc.tcp://plc.example:4840"').replace(
        "timeout_ms = 1500\n", "timeout_ms = 1500\n\n[devices.tx1.security]\n" + body.format(d=tmp_path) + "\n")


FULL = """policy = "Basic256Sha256"
mode = "Sign"
certificate = "{d}/client.der"
private_key = "{d}/client-key.pem"
server_certificate = "{d}/server.der"
username = "edge"
password_file = "{d}/password\""""


def test_a_secure_section_parses(tmp_path: Path) -> None:
    (dev,) = config.parse(security(tmp_path, FULL)).opcua_devices
    sec = dev.security
    assert sec.policy == "Basic256Sha256" and sec.mode is SecurityMode.SIGN and sec.username == "edge"
    assert sec.certificate == f"{tmp_path}/client.der" and sec.password_file == f"{tmp_path}/password"


@pytest.mark.parametrize(("edit", "expect"), [
    (lambda s: s.replace('mode = "Sign"', 'mode = "None"'),
     "devices.tx1.security: policy Basic256Sha256 needs mode Sign or SignAndEncrypt"),
    (lambda s: s.replace('server_certificate = "{d}/server.der"\n', ""),
     "devices.tx1.security: policy Basic256Sha256 needs server_certificate"),
    (lambda s: s.replace("server.der", "srv.der"), "devices.tx1.security.server_certificate: no such file"),
    (lambda s: s.replace('username = "edge"\n', ""), "devices.tx1.security: a password_file needs a username"),
    (lambda s: s.replace("Basic256Sha256", "Basic128Rsa15"), "devices.tx1.security.policy: must be one of None"),
    (lambda s: 'policy = "None"\nmode = "Sign"',
     "devices.tx1.security: security mode Sign needs policy Basic256Sha256"),
    (lambda s: 'policy = "None"', "devices.tx1.url: refusing security policy None to plc.example"),
    (lambda s: s + "\nverify = false", "devices.tx1.security.verify: unknown key"),
])
def test_security_mistakes(tmp_path: Path, edit: object, expect: str) -> None:
    assert callable(edit)
    found = problems(security(tmp_path, edit(FULL)))
    assert any(expect in p and p.startswith("site.toml:") for p in found), found


def test_allow_insecure_permits_policy_none_to_a_remote_server(tmp_path: Path) -> None:
    (dev,) = config.parse(security(tmp_path, 'policy = "None"\nallow_insecure = true')).opcua_devices
    assert dev.security.allow_insecure and dev.host == "plc.example"


def test_node_references() -> None:
    assert parse_node_ref("i=2258").node_id == "i=2258"
    assert parse_node_ref("ns=3;i=1001").node_id == "ns=3;i=1001"
    assert parse_node_ref("ns=2;s=A/B.C").node_id == "ns=2;s=A/B.C"  # a string id may hold slashes
    assert parse_node_ref("/0:Objects/3:Line 1/3:T.1").path == ((0, "Objects"), (3, "Line 1"), (3, "T.1"))
    for bad in ("", "ns=x;s=A", "0:Objects//2:A", "Objects"):
        with pytest.raises(ValueError, match="node"):
            parse_node_ref(bad)
