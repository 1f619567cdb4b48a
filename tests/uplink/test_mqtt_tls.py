"""MqttLink over TLS with client certificates and a password file, against a real Mosquitto.

The broker requires a client certificate from our test CA and a user/password from its
`mosquitto_passwd` file. Each refusal must become link state with a precise reason, retried with
backoff and logged once, never a crash.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edgeagent.supervise import Backoff
from edgeagent.uplink.mqtt import BrokerConfig, MqttLink
from tests.helpers import eventually
from tests.mosquitto import Mosquitto, PahoProbe, Pki, make_pki, running

FAST = Backoff(initial_s=0.05, maximum_s=0.2)


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Pki, Pki]:
    """Our CA and an unrelated one ("rogue"), each with server and client certificates."""
    directory = tmp_path_factory.mktemp("pki")
    return make_pki(directory, "ours"), make_pki(directory, "rogue")


@pytest.fixture
def broker(tmp_path: Path, pkis: tuple[Pki, Pki]) -> Iterator[Mosquitto]:
    with Mosquitto(tmp_path / "broker", tls=pkis[0], require_certificate=True, passwords={"edge": "s3cret"}) as b:
        yield b


@pytest.fixture
def good(broker: Mosquitto, pkis: tuple[Pki, Pki], tmp_path: Path) -> BrokerConfig:
    ours = pkis[0]
    password_file = tmp_path / "password"
    password_file.write_text("s3cret\n")  # as an operator's editor leaves it: the newline is not the password
    return BrokerConfig(
        "127.0.0.1", broker.port, tls=True, ca_file=ours.ca_file, cert_file=ours.client_cert,
        key_file=ours.client_key, username="edge", password_file=str(password_file), connect_timeout_s=2.0,
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_the_right_certificate_and_password_connect(
    broker: Mosquitto, good: BrokerConfig, pkis: tuple[Pki, Pki], host: str,
) -> None:
    link = MqttLink(dataclasses.replace(good, host=host))
    ours = pkis[0]
    with PahoProbe(broker, ["tls/#"], username="edge", password="s3cret",
                   client_cert=(ours.client_cert, ours.client_key)) as probe:
        async with running(link):
            assert await link.wait_connected(5)
            await asyncio.wait_for(link.publish("tls/a", b"secret plant data"), 3)
            assert (await probe.wait_for(lambda m: m.topic == "tls/a")).payload == b"secret plant data"


def _wrong(good: BrokerConfig, pkis: tuple[Pki, Pki], tmp_path: Path, case: str) -> BrokerConfig:
    rogue = pkis[1]
    if case == "client certificate from another CA":
        return dataclasses.replace(good, cert_file=rogue.client_cert, key_file=rogue.client_key)
    if case == "no client certificate":
        return dataclasses.replace(good, cert_file=None, key_file=None)
    if case == "wrong password":
        (tmp_path / "wrong").write_text("guess\n")
        return dataclasses.replace(good, password_file=str(tmp_path / "wrong"))
    if case == "wrong password, MQTT 3.1.1":
        (tmp_path / "wrong").write_text("guess\n")
        return dataclasses.replace(good, password_file=str(tmp_path / "wrong"), protocol="3.1.1")
    if case == "server certificate from another CA":
        return dataclasses.replace(good, ca_file=rogue.ca_file)
    raise AssertionError(case)


# The TLS details after the prefix ("tlsv1 alert unknown ca", "self-signed certificate in certificate
# chain") are OpenSSL's words and vary between its versions; the prefix is ours.
@pytest.mark.parametrize(("case", "reason"), [
    ("client certificate from another CA", "broker rejected our client certificate (tlsv1 alert unknown ca)"),
    ("no client certificate", "broker rejected our client certificate ("),
    ("wrong password", "broker refused the connection: not authorised"),
    ("wrong password, MQTT 3.1.1", "broker refused the connection: not authorised"),
    ("server certificate from another CA", "certificate verify failed: self"),
])
async def test_refusals_are_precise_retried_and_logged_once(
    good: BrokerConfig, pkis: tuple[Pki, Pki], tmp_path: Path, case: str, reason: str,
) -> None:
    link = MqttLink(_wrong(good, pkis, tmp_path, case), backoff=FAST)
    with capture_logs() as logs:
        async with running(link) as task:
            await eventually(lambda: link.link.restarts >= 3, what="three attempts")
            assert not task.done()  # still trying, not crashed
            assert not link.connected
    assert link.link.reason.startswith(reason)
    offline = [e for e in logs if e["event"] == "mqtt.offline"]
    assert [e["reason"] for e in offline] == [link.link.reason]  # once, not per retry
    assert all(e["log_level"] == "debug" for e in logs if e["event"] == "mqtt.retry")


async def test_a_missing_password_file_is_a_state_that_clears_once_the_file_appears(
    good: BrokerConfig, tmp_path: Path,
) -> None:
    later = tmp_path / "provisioned-later"
    link = MqttLink(dataclasses.replace(good, password_file=str(later)), backoff=FAST)
    with capture_logs() as logs:
        async with running(link):
            await eventually(lambda: link.link.restarts >= 2, what="two attempts")
            assert link.link.reason == f"cannot read password file {later}: no such file or directory"
            await asyncio.to_thread(later.write_text, "s3cret\n")
            assert await link.wait_connected(5)
    assert [e["event"] for e in logs if e["event"] in ("mqtt.offline", "mqtt.connected")] == [
        "mqtt.offline", "mqtt.connected",
    ]
    assert not any("s3cret" in repr(e) for e in logs)  # the password is never logged


async def test_the_server_certificate_must_name_the_host(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", "elsewhere", server_names=("broker.example.net",))
    with Mosquitto(tmp_path / "broker", tls=pki) as broker:
        cfg = BrokerConfig("127.0.0.1", broker.port, tls=True, ca_file=pki.ca_file, connect_timeout_s=2.0)
        link = MqttLink(cfg, backoff=FAST)
        async with running(link):
            await eventually(lambda: link.link.restarts >= 1, what="an attempt")
        assert link.link.reason.startswith("certificate verify failed: ")
        assert "mismatch" in link.link.reason and "127.0.0.1" in link.link.reason
