"""systemd/install.sh in --root mode with fake bundles: install twice, upgrade, rollback, uninstall, purge.

Needs root (it chowns to the service user) and useradd (Debian's passwd package), as on CI.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.install.bundle_helpers import REPO, account, fake_bundle, install, listing

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the installer needs root (it creates users and chowns)"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd is absent (Debian package: passwd)"),
]


def link(path: Path) -> str:
    return os.readlink(path)


def edgeagent_version(root: Path) -> str:
    out = subprocess.run([str(root / "opt/edgeagent/current/bin/edgeagent"), "--version"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    return out.split()[1]


def test_install_twice_upgrade_rollback_uninstall_purge(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    v1 = fake_bundle(tmp_path / "b1", "0.1.0")
    v2 = fake_bundle(tmp_path / "b2", "0.2.0")
    opt = root / "opt/edgeagent"
    cfg = root / "etc/edgeagent/edgeagent.toml"
    state = root / "var/lib/edgeagent"
    unit = root / "etc/systemd/system/edgeagent.service"

    # -- first install --------------------------------------------------------------------------
    first = install("--root", root, v1)
    assert first.returncode == 0, first.err
    assert "created user edgeagent" in first.lines
    assert any(line.startswith("skipped (--root): systemctl") for line in first.lines)
    user = account(root, "passwd", "edgeagent")
    assert user is not None
    uid, gid = int(user[2]), int(user[3])
    for group in ("i2c", "dialout"):
        fields = account(root, "group", group)
        assert fields is not None and "edgeagent" in fields[3].split(",")
    assert link(opt / "current") == "0.1.0"
    assert edgeagent_version(root) == "0.1.0"
    st = cfg.stat()
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o640", 0, gid)
    assert cfg.read_bytes() == (REPO / "edgeagent/examples/site.toml").read_bytes()
    st = state.stat()
    assert (oct(st.st_mode & 0o7777), st.st_uid, st.st_gid) == ("0o750", uid, gid)
    assert unit.read_bytes() == (REPO / "systemd/edgeagent.service").read_bytes()
    assert link(root / "usr/local/bin/edgeagent") == "/opt/edgeagent/current/bin/edgeagent"

    # -- second run: nothing changes, and it says so --------------------------------------------
    before = listing(root)
    second = install("--root", root, v1)
    assert second.returncode == 0, second.err
    assert second.lines[-1] == "nothing changed: everything was already in place"
    assert f"kept existing {cfg}" in second.lines
    assert not any(line.startswith(("created", "installed", "linked", "updated")) for line in second.lines)
    assert listing(root) == before

    # -- a different version without --upgrade is refused ----------------------------------------
    refused = install("--root", root, v2)
    assert refused.returncode == 1
    assert "edgeagent 0.1.0 is installed" in refused.err and "--upgrade" in refused.err
    assert listing(root) == before

    # -- upgrade: new version next to the old one, config and state untouched --------------------
    cfg.write_text(cfg.read_text() + "# edited on site\n")
    (state / "outbox.sqlite").write_bytes(b"records")
    edited = cfg.read_bytes()
    upgraded = install("--root", root, "--upgrade", v2)
    assert upgraded.returncode == 0, upgraded.err
    assert f"linked {opt}/current -> 0.2.0 (upgraded from 0.1.0)" in upgraded.lines
    assert (link(opt / "current"), link(opt / "previous")) == ("0.2.0", "0.1.0")
    assert edgeagent_version(root) == "0.2.0"
    assert (opt / "0.1.0/bin/edgeagent").exists()
    assert cfg.read_bytes() == edited
    assert (state / "outbox.sqlite").read_bytes() == b"records"

    # -- rollback, and again -----------------------------------------------------------------------
    rolled = install("--root", root, "--rollback")
    assert rolled.returncode == 0, rolled.err
    assert (link(opt / "current"), link(opt / "previous")) == ("0.1.0", "0.2.0")
    assert edgeagent_version(root) == "0.1.0"
    assert install("--root", root, "--rollback").returncode == 0
    assert (link(opt / "current"), link(opt / "previous")) == ("0.2.0", "0.1.0")
    assert cfg.read_bytes() == edited

    # -- uninstall keeps config and state ----------------------------------------------------------
    removed = install("--root", root, "--uninstall")
    assert removed.returncode == 0, removed.err
    assert not opt.exists() and not unit.exists()
    assert not (root / "usr/local/bin/edgeagent").is_symlink()
    assert not (root / "etc/udev/rules.d/60-edgeagent-i2c.rules").exists()
    assert cfg.read_bytes() == edited
    assert (state / "outbox.sqlite").exists()
    assert account(root, "passwd", "edgeagent") is not None
    again = install("--root", root, "--uninstall")
    assert again.returncode == 0 and again.lines[-1].startswith("nothing changed")

    # -- purge removes config, state and the user, keeps the device groups ------------------------
    purged = install("--root", root, "--uninstall", "--purge")
    assert purged.returncode == 0, purged.err
    assert not cfg.parent.exists() and not state.exists()
    assert account(root, "passwd", "edgeagent") is None
    assert account(root, "group", "i2c") is not None and account(root, "group", "dialout") is not None


def test_bundle_for_another_machine_is_refused_before_anything_changes(tmp_path: Path) -> None:
    other = "aarch64" if platform.machine() != "aarch64" else "x86_64"
    bundle = fake_bundle(tmp_path, "0.1.0", foreign_wheel=f"numpy-2.4.0-cp311-cp311-manylinux_2_28_{other}.whl")
    root = tmp_path / "root"
    root.mkdir()
    run = install("--root", root, bundle)
    assert run.returncode == 1
    assert "not for this machine" in run.err and f"manylinux_2_28_{other}" in run.err
    assert list(root.iterdir()) == []


def test_damaged_bundle_is_refused(tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path, "0.1.0")
    (bundle / "site.toml").write_text("[site]\n")
    root = tmp_path / "root"
    root.mkdir()
    run = install("--root", root, bundle)
    assert run.returncode == 1
    assert "MANIFEST.txt" in run.err
    assert list(root.iterdir()) == []


@pytest.mark.parametrize(("args", "message"), [
    (["--rollback"], "not installed"),
    (["--purge"], "--purge only goes with --uninstall"),
    (["--frobnicate"], "unknown option --frobnicate"),
    (["--upgrade", "--from-repo", "/nonexistent"], "no pyproject.toml"),
])
def test_usage_errors_are_clear(tmp_path: Path, args: list[str], message: str) -> None:
    run = install("--root", tmp_path, *args)
    assert run.returncode == 1
    assert message in run.err
