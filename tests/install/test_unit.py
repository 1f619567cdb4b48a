"""The systemd unit: tools/check-unit (verify + exposure), and agreement with the daemon and config."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeagent import config

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edgeagent.service"
CHECK_UNIT = REPO / "tools" / "check-unit"

needs_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                   reason="systemd-analyze is absent (Debian package: systemd)")


def check_unit(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(CHECK_UNIT), *map(str, args)], capture_output=True, text=True,
                          timeout=60, check=False)


def settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


@needs_analyze
def test_unit_passes_check_unit_with_exposure_at_most_2() -> None:
    proc = check_unit()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    m = re.search(r"exposure (\d+\.\d)", proc.stdout)
    assert m is not None, proc.stdout
    assert float(m[1]) <= 2.0
    assert "verify ok" in proc.stdout


@needs_analyze
def test_check_unit_fails_when_verify_complains(tmp_path: Path) -> None:
    bad = tmp_path / "edgeagent.service"
    bad.write_text(UNIT.read_text().replace("[Service]\n", "[Service]\nRestartSecs=5\n"))
    proc = check_unit(bad)
    assert proc.returncode == 1
    assert "RestartSecs" in proc.stderr


@needs_analyze
def test_check_unit_fails_when_hardening_is_dropped(tmp_path: Path) -> None:
    weak = tmp_path / "edgeagent.service"
    dropped = ("Protect", "Private", "Restrict", "SystemCall", "CapabilityBoundingSet", "NoNewPrivileges")
    weak.write_text("".join(line for line in UNIT.read_text().splitlines(keepends=True)
                            if not line.startswith(dropped)))
    proc = check_unit(weak)
    assert proc.returncode == 1
    assert "is above 2.0" in proc.stderr


def test_unit_matches_the_daemon_and_the_installer() -> None:
    unit = settings(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    # Exit status 2 (bad config) is the one that restarting cannot fix.
    assert unit["RestartPreventExitStatus"] == [str(config.EXIT_CONFIG)]
    assert unit["Restart"] == ["on-failure"]
    # The cycle pings every min(1 s, WatchdogSec/2): at least two pings must fit in the window.
    watchdog_s = float(unit["WatchdogSec"][0].removesuffix("s"))
    assert watchdog_s >= 2 * 1.0
    assert unit["ExecStart"] == ["/opt/edgeagent/current/bin/edgeagent run -c /etc/edgeagent/edgeagent.toml"]
    assert unit["User"] == ["edgeagent"]
    assert set(unit["SupplementaryGroups"][0].split()) == {"i2c", "dialout"}
    assert unit["StateDirectory"] == ["edgeagent"]
    assert unit["DevicePolicy"] == ["closed"]
    assert {d.split()[0] for d in unit["DeviceAllow"]} >= {"char-i2c", "char-ttyS", "char-ttyUSB", "char-ttyAMA"}
    # PrivateDevices would hide /dev/i2c-* from the daemon.
    assert "PrivateDevices" not in unit


def test_site_template_is_valid_and_keeps_state_in_the_state_directory() -> None:
    cfg = config.load(REPO / "edgeagent" / "examples" / "site.toml")
    unit = settings(UNIT.read_text())
    assert cfg.state_dir == f"/var/lib/{unit['StateDirectory'][0]}"
    assert {d.name for d in cfg.devices} == {"pcc", "pv", "bess"}
    assert cfg.safety.export_limit is not None
