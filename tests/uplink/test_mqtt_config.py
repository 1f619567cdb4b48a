"""BrokerConfig checks made at construction, before any traffic: plaintext, contradictions, topics."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from structlog.testing import capture_logs

from edgeagent.uplink.mqtt import BrokerConfig, InsecureBroker, MqttLink
from edgeagent.uplink.mqtt_config import is_loopback


@pytest.mark.parametrize("host", ["192.0.2.1", "broker.example.net", "2001:db8::1", "10.0.0.5"])
def test_plaintext_to_a_remote_host_is_refused_with_the_fix(host: str) -> None:
    with pytest.raises(InsecureBroker) as info:
        MqttLink(BrokerConfig(host, 1883, username="edge", password_file="/etc/edgeagent/mqtt.pw"))
    assert str(info.value) == (
        f"refusing to send credentials and plant data in plaintext to {host}: "
        "set uplink.tls or uplink.allow_insecure = true"
    )
    assert isinstance(info.value, ValueError)


def test_plaintext_to_a_remote_host_is_allowed_when_asked_for_and_said_once() -> None:
    with capture_logs() as logs:
        link = MqttLink(BrokerConfig("192.0.2.1", 1883, allow_insecure=True))
    assert not link.connected
    assert [e["event"] for e in logs] == ["mqtt.insecure"]
    assert logs[0]["log_level"] == "warning"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "LocalHost.", "::ffff:127.0.0.1"])
def test_loopback_may_be_plaintext(host: str) -> None:
    assert is_loopback(host)
    with capture_logs() as logs:
        MqttLink(BrokerConfig(host, 1883))
    assert logs == []


@pytest.mark.parametrize("host", ["128.0.0.1", "::2", "localhost.example.net", "0.0.0.0"])
def test_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_tls_to_a_remote_host_needs_nothing_else() -> None:
    link = MqttLink(BrokerConfig("192.0.2.1", 8883, tls=True, ca_file="/etc/edgeagent/ca.pem"))
    assert link.cfg.endpoint == "mqtts://192.0.2.1:8883"


@pytest.mark.parametrize(("overrides", "message"), [
    ({"protocol": "4"}, "protocol must be one of auto, 5, 3.1.1 (got '4')"),
    ({"inflight_max": 0}, "inflight_max must be 1-65535 (got 0)"),
    ({"port": 0}, "port must be 1-65535 (got 0)"),
    ({"connect_timeout_s": 0}, "connect_timeout_s must be > 0 (got 0)"),
    ({"ca_file": "/ca.pem"}, "ca_file is set but tls is false: set tls = true to use it"),
    ({"tls": True, "key_file": "/k.pem"}, "key_file is set without cert_file"),
    ({"password_file": "/pw"}, "password_file is set without username"),
])
def test_contradictions_are_named(overrides: dict[str, Any], message: str) -> None:
    cfg = dataclasses.replace(BrokerConfig("127.0.0.1", 1883), **overrides)
    with pytest.raises(ValueError, match="MQTT broker") as info:
        MqttLink(cfg)
    assert message in str(info.value)


def test_bad_topics_are_refused_at_construction() -> None:
    cfg = BrokerConfig("127.0.0.1", 1883)
    with pytest.raises(ValueError, match="will: wildcards"):
        MqttLink(cfg, will=("node/+/state", b"dead", True))
    with pytest.raises(ValueError, match=r"subscription 'cmd/#/x': '#' must be the whole last level"):
        MqttLink(cfg, subscriptions=["cmd/#/x"])
    with pytest.raises(ValueError, match=r"'\+' must be a whole level"):
        MqttLink(cfg, subscriptions=["cmd/a+"])
    MqttLink(cfg, will=("node/state", b"dead", True), subscriptions=["cmd/+/run", "#"])
