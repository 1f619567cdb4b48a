"""The control socket in the running daemon, against pymodbus servers, driven through the real
`edgeagent` command: a latching trip, a refused reset, an accepted one that names who did it,
and `status` showing all of it."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from edgeagent import cli, config
from edgeagent.control import ControlStartError, Peer, Refused
from edgeagent.control_client import call
from edgeagent.control_handlers import refusal_code, reset_trip
from edgeagent.daemon import Daemon
from edgeagent.image import Quality
from edgeagent.notify import Notifier
from edgeagent.safety.interlocks import EVENT_RESET, BadInput, InterlockState
from tests.helpers import eventually
from tests.modbus_server import TestServer
from tests.safety.test_interlocks import Rig, spec
from tests.test_safety_daemon import read_s32, s32

SITE = """
[site]
id = "t"
node = "n"
[scan]
period_ms = 50
[storage]
dir = "{state}"
[devices.meter]
kind = "modbus"
host = "127.0.0.1"
port = {meter_port}
poll_ms = 50
timeout_ms = 200
points = [{{ name = "W", address = 0, type = "int32", unit = "W" }}]
[devices.site]
kind = "modbus"
host = "127.0.0.1"
port = {site_port}
poll_ms = 50
timeout_ms = 200
points = [
  {{ name = "temp_c", address = 10, type = "int16", scale = 0.1, unit = "°C" }},
  {{ name = "soc", address = 11, type = "uint16", unit = "%" }},
  {{ name = "pv_w", address = 12, type = "int32", unit = "W" }},
  {{ name = "bess_w", address = 20, type = "int32", writable = true, unit = "W" }},
  {{ name = "pv_pct", address = 22, type = "uint16", writable = true, unit = "%" }},
]
[[setpoints]]
point = "site.bess_w"
min = -50000
max = 50000
[[setpoints]]
point = "site.pv_pct"
min = 0
max = 100
[[interlocks]]
name = "bess_overtemp"
points = ["site.temp_c"]
condition = "above"
limit = 45
hysteresis = 2
latch = true
safe_action = [{{ point = "site.bess_w", value = 0 }}, {{ point = "site.pv_pct", value = 0 }}]
[[interlocks]]
name = "bess_soc_low"
points = ["site.soc"]
condition = "below"
limit = 5
safe_action = [{{ point = "site.bess_w", value = 0 }}]
[export_limit]
meter = "meter.W"
static_kw = 10
contract_min_kw = 0
contract_max_kw = 20
bess = {{ setpoint = "site.bess_w", soc = "site.soc", max_charge_w = 50000 }}
pv = {{ setpoint = "site.pv_pct", rated_w = 100000, power_point = "site.pv_w" }}
"""

ME = pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """The storage dir, short enough for `<dir>/control.sock` to fit a unix socket path."""
    if len(os.fsencode(tmp_path)) <= 80:
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="ea-ctl-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


Plant = tuple[Daemon, TestServer, Path, list[MutableMapping[str, Any]]]


@pytest.fixture
async def plant(state_dir: Path) -> AsyncIterator[Plant]:
    meter, site = TestServer(), TestServer()
    meter.registers.set(0, s32(2000))  # importing 2 kW: nothing to limit
    site.registers.set(10, [250, 50])  # 25.0 °C, SoC 50 %
    site.registers.set(12, s32(30000))
    await meter.start()
    await site.start()
    cfg_file = state_dir / "site.toml"
    cfg_file.write_text(SITE.format(state=state_dir, meter_port=meter.port, site_port=site.port))
    daemon = Daemon(config.load(cfg_file), Notifier(""))
    with capture_logs() as logs:  # keeps the daemon's log lines out of the command's stdout, too
        task = asyncio.create_task(daemon.run())
        await eventually(lambda: all(d.online for d in daemon.devices.values()), timeout_s=10)
        yield daemon, site, cfg_file, logs
        daemon.request_stop()
        await asyncio.wait_for(task, 10)
    await meter.stop()
    await site.stop()


async def edgeagent(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The real command, in a thread so the daemon in this loop keeps running."""
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_reset_trip_is_refused_while_the_cause_holds_then_lifts_the_safe_action(
        plant: Plant, capsys: pytest.CaptureFixture[str]) -> None:
    daemon, site, cfg_file, logs = plant
    regs = site.registers
    interlocks = daemon.safety.interlocks
    assert interlocks is not None
    assert daemon.control_path == Path(daemon.cfg.state_dir) / "control.sock"
    # Before the first poll every input is unknown, which trips (fail safe); an input outage is
    # not a plant event, so once the inputs show no condition even a latching interlock clears.
    await eventually(lambda: interlocks.state("bess_overtemp") is InterlockState.IDLE and interlocks.reason(
        "bess_overtemp") == "", timeout_s=3, what="the start-up trip cleared without a reset")
    await eventually(lambda: regs.holding[22] == 100, what="controller writes PV 100 % while under the limit")

    regs.set(10, [460])  # 46.0 °C
    await eventually(lambda: read_s32(regs.holding[20:22]) == 0 and regs.holding[22] == 0, timeout_s=3,
                     what="safe setpoints written")
    code, out, _ = await edgeagent(capsys, "status", "-c", str(cfg_file), "--json")
    assert code == 0
    tripped = json.loads(out)
    assert tripped["active_trips"] == ["bess_overtemp"]
    assert {i["name"]: (i["state"], i["latching"]) for i in tripped["interlocks"]} == {
        "bess_overtemp": ("tripped", True), "bess_soc_low": ("idle", False)}
    assert tripped["export_limit"]["limit_kw"] == 10 and tripped["export_limit"]["source"] == "static"
    assert tripped["export_limit"]["state"] == "normal"
    assert tripped["devices"] == {"online": ["meter", "site"], "offline": {}}
    assert tripped["cycles"]["cycles"] > 0 and tripped["health"].startswith("devices 2/2 online")

    code, out, err = await edgeagent(capsys, "reset-trip", "bess_overtemp", "-c", str(cfg_file))
    assert (code, out) == (1, "")
    assert err.strip() == "reset-trip bess_overtemp refused: condition still present"

    regs.set(10, [420])  # 42.0 °C: released, but the latch holds the safe action
    await eventually(lambda: interlocks.state("bess_overtemp") is InterlockState.LATCHED, timeout_s=3,
                     what="latched after the condition cleared")
    await asyncio.sleep(0.3)
    assert regs.holding[22] == 0 and read_s32(regs.holding[20:22]) == 0
    code, out, _ = await edgeagent(capsys, "status", "--socket", str(daemon.control_path))
    assert code == 0
    assert "bess_overtemp: latched (latching)  -> edgeagent reset-trip bess_overtemp" in out
    assert "interlocks: 1 active of 2" in out and "export limit: 10" in out

    writes_before, logs_before = len(regs.writes), len(logs)
    code, out, err = await edgeagent(capsys, "reset-trip", "bess_overtemp", "-c", str(cfg_file))
    assert (code, err) == (0, "")
    assert out.strip() == f"bess_overtemp reset by {ME} (uid {os.getuid()}): its safe action is lifted"
    await eventually(lambda: regs.holding[22] == 100, timeout_s=3, what="the controller owns PV again")
    await asyncio.sleep(0.2)
    pv_writes_after = [values[0] for address, values in regs.writes[writes_before:] if address == 22]
    assert pv_writes_after and 0 not in pv_writes_after  # the safe setpoint is no longer written
    resets = [e for e in logs[logs_before:] if e["event"] == EVENT_RESET]
    assert len(resets) == 1 and resets[0]["interlock"] == "bess_overtemp"
    assert resets[0]["reason"] == f"local reset by {ME} (uid {os.getuid()})"
    assert interlocks.active() == frozenset()

    replies = [await asyncio.to_thread(call, daemon.control_path, "reset-trip", {"name": name})
               for name in ("bess_overtemp", "bess_soc_low", "no_such")]
    assert [(r["ok"], r["code"]) for r in replies] == [(False, "not_tripped"), (False, "not_latched"),
                                                       (False, "unknown")]
    assert replies[2]["error"] == "unknown interlock (configured: bess_overtemp, bess_soc_low)"
    bad = await asyncio.to_thread(call, daemon.control_path, "reset-trip", {"name": 7})
    assert bad["code"] == "bad_args"


async def test_a_second_daemon_on_the_same_state_dir_is_refused_and_the_socket_goes_at_stop(
        state_dir: Path) -> None:
    server = TestServer()
    await server.start()
    text = SITE.format(state=state_dir, meter_port=server.port, site_port=server.port)
    first, second = Daemon(config.parse(text), Notifier("")), Daemon(config.parse(text), Notifier(""))
    task = asyncio.create_task(first.run())
    try:
        await eventually(lambda: first.control_path.exists(), what="control socket")
        with pytest.raises(ControlStartError, match=f"another edgeagent is running on {first.control_path}"):
            await second.run()
        reply = await asyncio.to_thread(call, first.control_path, "status")
        assert reply["ok"] is True and reply["site"] == "t"
    finally:
        first.request_stop()
        await asyncio.wait_for(task, 10)
        await server.stop()
    assert not first.control_path.exists()


async def test_the_command_without_a_daemon_or_with_a_bad_config(
        state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = state_dir / "control.sock"
    proc = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "edgeagent", "reset-trip", "x",
                                                   "--socket", str(missing)], capture_output=True, text=True,
                                   timeout=60)
    assert proc.returncode == 3 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (f"edgeagent: no edgeagent daemon is listening on {missing}: is it running? "
                                   "(systemctl status edgeagent)")
    bad = state_dir / "bad.toml"
    bad.write_text("[site]\nid = 1\n")
    code, out, err = await edgeagent(capsys, "status", "-c", str(bad))
    assert code == 2 and out == "" and "site.id" in err
    with pytest.raises(SystemExit) as usage:  # -c and --socket are exclusive, and one is needed
        cli.main(["status"])
    assert usage.value.code == 2


# -- the handler's mapping of Interlocks.reset ---------------------------------------------------------

ALICE = Peer(pid=4242, uid=1000, gid=1000, user="alice")


def test_every_reset_refusal_has_its_code_and_a_reset_names_the_person() -> None:
    rig = Rig(spec(name="ov", latch=True, on_bad_input=BadInput.HOLD), spec(name="plain"))

    def code_of(name: str) -> str:
        with pytest.raises(Refused) as refused:
            reset_trip(rig.ph, name, ALICE)
        return refused.value.code

    assert code_of("nope") == "unknown" and code_of("plain") == "not_latched" and code_of("ov") == "not_tripped"
    rig.step(0.0, pcc_V=110.0)
    assert code_of("ov") == "condition_present"
    rig.step(1.0, pcc_V=50.0)
    rig.step(2.0, Quality.STALE, "offline", pcc_V=50.0)
    assert code_of("ov") == "input_bad"
    rig.step(3.0, pcc_V=50.0)
    rig.ph.drain_events()
    assert reset_trip(rig.ph, "ov", ALICE) == {"reset": "ov", "by": "alice (uid 1000)"}
    assert [(e.name, e.reason) for e in rig.ph.drain_events()] == [(EVENT_RESET, "local reset by alice (uid 1000)")]
    assert refusal_code("a reason nobody wrote yet") == "refused"
    with pytest.raises(Refused) as none_configured:
        reset_trip(None, "ov", ALICE)
    assert none_configured.value.code == "unknown" and "no interlocks are configured" in none_configured.value.message


def test_a_reset_without_a_name_stays_a_plain_local_reset() -> None:
    rig = Rig(spec(latch=True))
    rig.step(0.0, pcc_V=110.0)
    rig.step(1.0, pcc_V=50.0)
    rig.ph.drain_events()
    assert rig.ph.reset("ov") is None
    assert [e.reason for e in rig.ph.drain_events()] == ["local reset"]
