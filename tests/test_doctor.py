"""`edgeagent doctor` against the HIL plant, and its checks of local files: one line per check, the
right status and fix for each kind of failure, the exit status, and never a traceback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeagent import doctor as doctor_module
from edgeagent.doctor import main_doctor
from edgeagent.doctor_checks import Status, check_key_files, check_state_dir
from edgeagent.doctor_checks_clock import (
    ClockSync,
    check_clock,
    clock_sync,
    from_adjtimex,
    from_timedatectl,
    from_timesync_flag,
)
from tests.test_doctor_helpers import LINE, ThreadPlant, doctor, plant_devices, plant_in_thread, site_config


@pytest.fixture(scope="module")
def plant() -> Iterator[ThreadPlant]:
    with plant_in_thread() as p:
        yield p


# --- against the plant ------------------------------------------------------------------------------


def test_good_site_passes_every_check_in_order(plant: ThreadPlant, tmp_path: Path) -> None:
    run = doctor(site_config(tmp_path, plant_devices(plant)))
    assert run.code == 0, run.text
    body = [ln for ln in run.text.splitlines() if not ln.startswith("doctor:")]
    assert all(LINE.match(ln) for ln in body), run.text  # nothing but check lines
    assert [ln.what for ln in run.lines] == [
        "config", "modbus pcc", "sunspec pcc", "modbus pv", "sunspec pv", "modbus raw", "modbus raw points",
        "broker", "clock", "disk", "state dir", "models", "key files"]
    assert set(run.statuses().values()) == {"PASS"}, run.text
    assert "models 1, 203" in run.line("sunspec pcc").detail
    assert "Hz=" in run.line("sunspec pcc").detail
    # The raw register map reads the SunS marker the plant serves at 40000: the words "Su" "nS".
    assert "suns_hi=21365, suns_lo=28243" in run.line("modbus raw points").detail
    assert run.text.rstrip().endswith("doctor: all 13 checks passed")


def test_device_offline_fails_with_its_address(plant: ThreadPlant, tmp_path: Path) -> None:
    plant.call(plant.plant.set_offline("meter", True))
    try:
        run = doctor(site_config(tmp_path, plant_devices(plant)))
    finally:
        plant.call(plant.plant.set_offline("meter", False))
    assert run.code == 1
    line = run.line("modbus pcc")
    assert line.status == "FAIL"
    assert f"127.0.0.1:{plant.port('meter')}: connection refused" in line.detail
    assert "devices.pcc.host" in line.fix
    assert "sunspec pcc" not in run.statuses()  # one problem, one line
    assert run.statuses()["sunspec pv"] == "PASS"  # the other devices are still checked


def test_closed_port_and_wrong_unit_id(plant: ThreadPlant, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    body = f"""
[devices.nobody]
kind = "modbus"
host = "127.0.0.1"
port = {closed}
points = [{{ name = "x", address = 0 }}]

[devices.wrongunit]
kind = "sunspec"
host = "127.0.0.1"
port = {plant.port("meter")}
unit_id = 7
timeout_ms = 500
points = ["203.W"]
"""
    run = doctor(site_config(tmp_path, body))
    assert run.code == 1
    assert run.line("modbus nobody").status == "FAIL"
    assert "connection refused" in run.line("modbus nobody").detail
    assert run.line("modbus wrongunit").status == "PASS"  # TCP is fine ...
    unit = run.line("sunspec wrongunit")  # ... but nothing answers for unit 7 behind it
    assert unit.status == "FAIL"
    assert "unit 7" in unit.detail and "devices.wrongunit.unit_id" in unit.fix


def test_sunspec_point_that_does_not_exist_is_named(plant: ThreadPlant, tmp_path: Path) -> None:
    points = '"203.W", "203.Wrong", "160.DCW", "203.Hz"'
    run = doctor(site_config(tmp_path, plant_devices(plant, meter_points=points)))
    assert run.code == 1
    line = run.line("sunspec pcc")
    assert line.status == "FAIL"
    assert "not on this device: 203.Wrong" in line.detail
    assert "160.DCW (model 160 not found on this device; it has models 1, 203)" in line.detail
    assert "203.W " not in line.detail and "203.Hz" not in line.detail  # the good ones are not listed
    assert "devices.pcc.points" in line.fix


def test_garbage_replies_fail_naming_the_unreadable_points(plant: ThreadPlant, tmp_path: Path) -> None:
    body = plant_devices(plant, meter_points='"203.W", "203.Hz", "203.PhVphA", "203.VA", "203.VAR", "203.PF"')
    plant.call(plant.plant.set_garbage("meter", True))
    try:
        run = doctor(site_config(tmp_path, body))
    finally:
        plant.call(plant.plant.set_garbage("meter", False))
    line = run.line("sunspec pcc")
    assert line.status == "FAIL" and run.code == 1
    assert "points unreadable" in line.detail
    assert "not implemented" in line.detail or "scale factor" in line.detail
    assert run.line("modbus pcc").status == "PASS"  # reachable, discovery works: the data is the problem


def test_slow_device_times_out_within_the_doctors_limit(plant: ThreadPlant, tmp_path: Path) -> None:
    plant.call(plant.plant.set_slow("inverter", 800))
    try:
        started = time.monotonic()
        run = doctor(site_config(tmp_path, plant_devices(plant)), timeout_s=0.3)
        took = time.monotonic() - started
    finally:
        plant.call(plant.plant.set_slow("inverter", 0))
    line = run.line("sunspec pv")
    assert line.status == "FAIL" and "no answer" in line.detail
    assert took < 4 * 0.3 + 1.0


def test_i2c_devices_from_the_config_are_checked_in_place(plant: ThreadPlant, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Until config.py has an [i2c] section the doctor reads `cfg.i2c_devices` when present."""
    from edgeagent.field.i2c_adapter import I2cDeviceConfig, Ina226ChipConfig
    from edgeagent.field.ina226 import Ina226Config
    from hil.i2c.bus import EmulatedBus
    from hil.i2c.ina226 import Ina226Chip

    bus = EmulatedBus()
    bus.attach(0x40, Ina226Chip(lambda t: (48.0, 3.0), 0.002, bus.clock.now))
    dev = I2cDeviceConfig("battery", 1, (Ina226ChipConfig("dc", Ina226Config(0.002, 20.0)),))
    monkeypatch.setattr(doctor_module, "i2c_devices", lambda cfg: (dev,))
    run = doctor(site_config(tmp_path, plant_devices(plant)), i2c_bus_factory=lambda n: bus.reopen())
    whats = [ln.what for ln in run.lines]
    assert whats.index("modbus raw points") < whats.index("i2c battery bus") < whats.index("broker")
    assert run.line("i2c battery.dc").status == "PASS" and run.code == 0


# --- config ---------------------------------------------------------------------------------------------


def test_bad_config_prints_its_problems_and_exits_2(tmp_path: Path) -> None:
    path = site_config(tmp_path, '[devices.pcc]\nkind = "sunspec"\nhost = "127.0.0.1"\nport = 99999\npoints = []\n')
    run = doctor(path)
    assert run.code == 2
    assert f"{path}:11: devices.pcc.port: must be at most 65535 (got 99999)" in run.text
    assert [ln.what for ln in run.lines] == ["config"]  # and nothing else is checked
    assert run.line("config").status == "FAIL" and "check-config" in run.line("config").fix


def test_missing_config_file(tmp_path: Path) -> None:
    run = doctor(tmp_path / "nope.toml")
    assert run.code == 2 and "cannot read config" in run.text


def test_main_doctor_json_has_every_check(plant: ThreadPlant, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor_module, "clock_sync", lambda: ClockSync(None, "test: unknown"))
    path = site_config(tmp_path, plant_devices(plant))
    plant.call(plant.plant.set_offline("bess", True))
    try:
        code = main_doctor(["-c", str(path), "--timeout", "1", "--json"])
    finally:
        plant.call(plant.plant.set_offline("bess", False))
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert code == 1 == doc["exit_code"]
    assert list(doc)[-1] == "checks"
    checks = {c["what"]: c for c in doc["checks"]}
    assert checks["modbus raw"]["status"] == "fail" and checks["modbus raw"]["fix"]
    assert checks["clock"]["status"] == "warn"
    assert doc["counts"] == {"pass": 10, "warn": 1, "fail": 1}


def test_main_doctor_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_doctor(["--timeout", "0"]) == 2
    assert main_doctor(["-c", "x.toml", "--timeout", "-1"]) == 2
    assert "must be more than 0 s" in capsys.readouterr().err


def test_a_crashing_check_becomes_a_fail_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(cfg: object) -> list[object]:
        raise KeyError("boom")

    monkeypatch.setattr(doctor_module, "check_models", broken)
    run = doctor(site_config(tmp_path, '[devices.x]\nkind = "modbus"\nhost = "127.0.0.1"\nport = 1\n'
                                       'points = [{ name = "a", address = 0 }]\n'))
    line = run.line("models")
    assert line.status == "FAIL" and "the check itself failed: KeyError" in line.detail
    assert "Traceback" not in run.text
    assert run.line("key files").status == "PASS"  # the checks after it still ran


# --- local checks ---------------------------------------------------------------------------------------

_ONE_DEVICE = '[devices.x]\nkind = "modbus"\nhost = "127.0.0.1"\nport = 1\npoints = [{ name = "a", address = 0 }]\n'


def test_state_dir_not_writable(tmp_path: Path) -> None:
    from edgeagent import config

    if os.geteuid() == 0:
        state = Path("/sys")  # root writes everywhere else; sysfs refuses new files even to root
    else:
        state = tmp_path / "ro"
        state.mkdir(mode=0o500)
    cfg = config.load(site_config(tmp_path, _ONE_DEVICE, state_dir=state))
    [finding] = check_state_dir(cfg)
    assert finding.status is Status.FAIL
    assert "cannot create files in" in finding.detail and "chown" in finding.fix


def test_state_dir_that_is_a_file_or_missing(tmp_path: Path) -> None:
    from edgeagent import config

    (tmp_path / "afile").write_text("x")
    path = site_config(tmp_path, _ONE_DEVICE, state_dir=tmp_path / "later")
    text = path.read_text()
    path.write_text(text.replace(str(tmp_path / "later"), str(tmp_path / "afile")))
    [finding] = check_state_dir(config.load(path))
    assert finding.status is Status.FAIL and "not a folder" in finding.detail
    path.write_text(text.replace(str(tmp_path / "later"), str(tmp_path / "new" / "state")))
    [finding] = check_state_dir(config.load(path))
    assert finding.status is Status.WARN and "does not exist yet" in finding.detail


def test_key_file_modes(tmp_path: Path) -> None:
    from edgeagent import config
    from edgeagent.decisions.keys_cli import keygen

    keygen(tmp_path / "keys", "alice")
    for name in ("client.key", "client.crt", "ca.crt", "password"):
        (tmp_path / name).write_text("x")
    (tmp_path / "client.key").chmod(0o644)
    (tmp_path / "password").chmod(0o600)
    (tmp_path / "keys" / "alice.pub").chmod(0o666)
    body = _ONE_DEVICE + f"""
[uplink]
broker = "mqtts://127.0.0.1:8883"
ca_file = "{tmp_path / 'ca.crt'}"
cert_file = "{tmp_path / 'client.crt'}"
key_file = "{tmp_path / 'client.key'}"
username = "edge"
password_file = "{tmp_path / 'password'}"

[[trust.keys]]
id = "alice"
name = "Alice"
roles = ["operator"]
public_key_file = "keys/alice.pub"
"""
    findings = {f.what: f for f in check_key_files(config.load(site_config(tmp_path, body)))}
    assert findings["key file uplink.key_file"].status is Status.FAIL
    assert "mode 0644" in findings["key file uplink.key_file"].detail
    key_fix = findings["key file uplink.key_file"].fix
    assert key_fix == f"chmod 600 {tmp_path / 'client.key'} (owned by the service's user)"
    assert findings["key file uplink.password_file"].status is Status.PASS
    assert findings["key file uplink.cert_file"].status is Status.PASS
    trust = findings["key file trust.keys[0].public_key_file"]
    assert trust.status is Status.FAIL and "sign commands" in trust.detail
    (tmp_path / "client.key").chmod(0o600)
    (tmp_path / "keys" / "alice.pub").chmod(0o644)
    findings = {f.what: f for f in check_key_files(config.load(site_config(tmp_path, body)))}
    assert {f.status for f in findings.values()} == {Status.PASS}


def test_model_manifest_mismatch(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "load.onnx").write_bytes(b"model bytes")
    good = hashlib.sha256(b"model bytes").hexdigest()
    (models / "load.manifest.json").write_text(json.dumps({"file": "load.onnx", "sha256": good, "version": "1.2"}))
    (models / "thermal.onnx").write_bytes(b"tampered")
    (models / "thermal.manifest.json").write_text(json.dumps({"file": "thermal.onnx", "sha256": good}))
    (models / "pq.manifest.json").write_text(json.dumps({"file": "pq.onnx", "sha256": good}))
    (models / "bad.manifest.json").write_text("{not json")
    run = doctor(site_config(tmp_path, _ONE_DEVICE))
    assert run.line("model load 1.2").status == "PASS"
    thermal = run.line("model thermal")
    assert thermal.status == "FAIL" and "its manifest says" in thermal.detail and "reinstall" in thermal.fix
    assert run.line("model pq").status == "FAIL" and "cannot read" in run.line("model pq").detail
    assert run.line("model bad").status == "FAIL" and "not valid JSON" in run.line("model bad").detail


def test_disk_check_against_the_outbox_budget(tmp_path: Path) -> None:
    from edgeagent import config
    from edgeagent.doctor_checks import check_disk

    body = _ONE_DEVICE + '[uplink]\nbroker = "mqtt://127.0.0.1"\nbudget_mb = MB\n'
    [ok] = check_disk(config.load(site_config(tmp_path, body.replace("MB", "1"))))
    assert ok.status is Status.PASS and "outbox budget (1.0 MiB)" in ok.detail
    [full] = check_disk(config.load(site_config(tmp_path, body.replace("MB", "1000000"))))
    assert full.status is Status.FAIL and "budget_mb" in full.fix


# --- the clock ------------------------------------------------------------------------------------------


def test_clock_sources_in_order(tmp_path: Path) -> None:
    assert from_timedatectl(lambda argv: "NTPSynchronized=yes\n") == ClockSync(True, "timedatectl: NTPSynchronized=yes")
    assert from_timedatectl(lambda argv: "NTPSynchronized=no\n").synchronised is False  # type: ignore[union-attr]
    assert from_timedatectl(lambda argv: None) is None  # no systemd: ask the next source
    assert from_timesync_flag(tmp_path / "synchronized") is None
    (tmp_path / "synchronized").touch()
    assert from_timesync_flag(tmp_path / "synchronized").synchronised is True  # type: ignore[union-attr]
    assert from_adjtimex(lambda: 5).synchronised is False  # type: ignore[union-attr]
    assert from_adjtimex(lambda: 0).synchronised is True  # type: ignore[union-attr]
    assert from_adjtimex(lambda: -1) is None
    assert clock_sync().source  # the real machine answers something, never raises


def test_clock_statuses() -> None:
    [bad] = check_clock(lambda: ClockSync(False, "kernel"))
    assert bad.status is Status.FAIL and "signed commands" in bad.detail and "NTP" in bad.fix
    [unknown] = check_clock(lambda: ClockSync(None, "nothing"))
    assert unknown.status is Status.WARN
    [good] = check_clock(lambda: ClockSync(True, "timedatectl"))
    assert good.status is Status.PASS


def test_run_doctor_writes_to_the_given_stream(tmp_path: Path) -> None:
    out = io.StringIO()
    code = doctor_module.run_doctor(site_config(tmp_path, _ONE_DEVICE), out=out, timeout_s=0.5,
                                    clock_probe=lambda: ClockSync(False, "test"))
    assert code == 1
    assert "FAIL  clock: not synchronised" in out.getvalue()
