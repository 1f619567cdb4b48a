"""The doctor's broker lines against a real Mosquitto: reachable, login, and the TLS certificate
(valid, expiring soon, expired, issued for another host, from an untrusted CA)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.mosquitto import Mosquitto, Pki, free_port, make_pki
from tests.test_doctor_helpers import Run, doctor, plant_in_thread, site_config


@pytest.fixture(scope="module")
def meter_port() -> Iterator[int]:
    """A real device, so that the only failures in these runs are the broker's."""
    with plant_in_thread() as p:
        yield p.port("meter")


@pytest.fixture
def run(tmp_path: Path, meter_port: int) -> Callable[..., Run]:
    def go(broker: str, *extra: str, **kwargs: Any) -> Run:
        body = (f'[devices.pcc]\nkind = "sunspec"\nhost = "127.0.0.1"\nport = {meter_port}\npoints = ["203.W"]\n'
                f'\n[uplink]\nbroker = "{broker}"\nclient_id = "edge-1"\n' + "".join(f"{e}\n" for e in extra))
        return doctor(site_config(tmp_path, body), **kwargs)

    return go


def _pki(directory: Path, *, days: float, names: tuple[str, ...] = ("127.0.0.1", "localhost")) -> Pki:
    """A CA and a server certificate valid from `days` - 10 days ago... to `days` from now (negative:
    expired). make_pki's certificates live one day; these tests need other lifetimes."""
    import ipaddress

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "doctor test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(days=400)).not_valid_after(now + dt.timedelta(days=400))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now + dt.timedelta(days=min(days, 0) - 10))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = directory / "ca.crt", directory / "server.crt", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return Pki(str(ca_file), str(cert_file), str(key_file), str(cert_file), str(key_file))


def test_plaintext_broker_with_password(tmp_path: Path, run: Callable[..., Run]) -> None:
    (tmp_path / "password").write_text("secret\n")
    (tmp_path / "password").chmod(0o600)
    with Mosquitto(tmp_path / "broker", passwords={"edge": "secret"}) as broker:
        result = run(f"mqtt://127.0.0.1:{broker.port}", 'username = "edge"',
                     f'password_file = "{tmp_path / "password"}"')
        assert result.code == 0, result.text
        assert result.line("broker").status == "PASS"
        assert result.line("broker").detail.startswith(f"mqtt://127.0.0.1:{broker.port}: TCP connection accepted")
        login = result.line("broker login")
        assert login.status == "PASS" and "as edge" in login.detail and "edge-1-doctor" in login.detail
        assert "edge-1-doctor" in broker.log()  # it really logged in, under its own client id
        (tmp_path / "password").write_text("wrong\n")
        result = run(f"mqtt://127.0.0.1:{broker.port}", 'username = "edge"',
                     f'password_file = "{tmp_path / "password"}"')
    assert result.code == 1
    login = result.line("broker login")
    assert login.status == "FAIL" and "not authorised" in login.detail and "password_file" in login.fix


def test_broker_down(tmp_path: Path, run: Callable[..., Run]) -> None:
    port = free_port()
    started = time.monotonic()
    result = run(f"mqtt://127.0.0.1:{port}")
    assert time.monotonic() - started < 3
    line = result.line("broker")
    assert line.status == "FAIL" and f"127.0.0.1:{port}" in line.fix
    assert f"mqtt://127.0.0.1:{port}: cannot connect: connection refused" in line.detail
    assert "broker login" not in result.statuses()
    assert result.code == 1


def test_tls_certificate_valid_for_long_passes(tmp_path: Path, run: Callable[..., Run]) -> None:
    pki = _pki(tmp_path / "pki", days=365)
    with Mosquitto(tmp_path / "broker", tls=pki) as broker:
        result = run(f"mqtts://127.0.0.1:{broker.port}", f'ca_file = "{pki.ca_file}"')
    cert = result.line("broker certificate")
    assert cert.status == "PASS", result.text
    assert "valid for localhost, 127.0.0.1" in cert.detail and "in 365 days" in cert.detail
    assert result.line("broker login").status == "PASS" and result.code == 0


def test_tls_certificate_expiring_soon_warns(tmp_path: Path, run: Callable[..., Run]) -> None:
    pki = make_pki(tmp_path / "pki")  # one day left
    with Mosquitto(tmp_path / "broker", tls=pki) as broker:
        result = run(f"mqtts://127.0.0.1:{broker.port}", f'ca_file = "{pki.ca_file}"')
        later = run(f"mqtts://127.0.0.1:{broker.port}", f'ca_file = "{pki.ca_file}"',
                    now=lambda: time.time() + 3 * 86400)
    cert = result.line("broker certificate")
    assert cert.status == "WARN" and "in 1.0 days" in cert.detail and "renew the broker's certificate" in cert.fix
    assert result.code == 0  # a warning is not a failure
    assert later.line("broker certificate").status == "FAIL"  # the same certificate, seen 3 days on
    assert "expired" in later.line("broker certificate").detail


def test_tls_certificate_expired(tmp_path: Path, run: Callable[..., Run]) -> None:
    pki = _pki(tmp_path / "pki", days=-3)
    with Mosquitto(tmp_path / "broker", tls=pki) as broker:
        result = run(f"mqtts://127.0.0.1:{broker.port}", f'ca_file = "{pki.ca_file}"')
    cert = result.line("broker certificate")
    assert cert.status == "FAIL" and "expired on" in cert.detail and "3 days ago" in cert.detail
    assert "renew" in cert.fix
    assert "broker login" not in result.statuses()  # no credentials over a link that failed verification
    assert result.code == 1


def test_tls_certificate_for_another_host(tmp_path: Path, run: Callable[..., Run]) -> None:
    pki = make_pki(tmp_path / "pki", server_names=("broker.example.net",))
    with Mosquitto(tmp_path / "broker", tls=pki) as broker:
        result = run(f"mqtts://127.0.0.1:{broker.port}", f'ca_file = "{pki.ca_file}"')
    cert = result.line("broker certificate")
    assert cert.status == "FAIL"
    assert "the certificate is for broker.example.net, not 127.0.0.1" in cert.detail
    assert "uplink.broker" in cert.fix


def test_tls_certificate_from_an_untrusted_ca(tmp_path: Path, run: Callable[..., Run]) -> None:
    pki = make_pki(tmp_path / "pki", name="real")
    other = make_pki(tmp_path / "other", name="other")
    with Mosquitto(tmp_path / "broker", tls=pki) as broker:
        result = run(f"mqtts://127.0.0.1:{broker.port}", f'ca_file = "{other.ca_file}"')
    cert = result.line("broker certificate")
    assert cert.status == "FAIL"
    assert f"not signed by a CA in {other.ca_file}" in cert.detail and "issued by CN=real CA" in cert.detail
    assert "uplink.ca_file" in cert.fix


def test_client_certificate_required_and_its_expiry(tmp_path: Path, run: Callable[..., Run]) -> None:
    pki = make_pki(tmp_path / "pki")
    with Mosquitto(tmp_path / "broker", tls=pki, require_certificate=True) as broker:
        url = f"mqtts://127.0.0.1:{broker.port}"
        without = run(url, f'ca_file = "{pki.ca_file}"')
        with_cert = run(url, f'ca_file = "{pki.ca_file}"', f'cert_file = "{pki.client_cert}"',
                        f'key_file = "{pki.client_key}"')
    assert without.line("broker login").status == "FAIL"
    assert with_cert.line("broker login").status == "PASS", with_cert.text
    client = with_cert.line("uplink client certificate")
    assert client.status == "WARN" and "CN=test-edge" in client.detail  # make_pki's: one day left
