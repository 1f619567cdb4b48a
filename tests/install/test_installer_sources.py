"""install.sh from a .tar.gz bundle onto a box that already has a config (fake bundle, --root mode)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.install.bundle_helpers import fake_bundle, install

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the installer needs root (it creates users and chowns)"),
    pytest.mark.skipif(shutil.which("useradd") is None, reason="useradd is absent (Debian package: passwd)"),
]


def test_tarball_bundle_installs_and_keeps_the_existing_config(tmp_path: Path) -> None:
    bundle = fake_bundle(tmp_path / "b", "0.3.0")
    archive = shutil.make_archive(str(tmp_path / "edgeagent-0.3.0-test"), "gztar", bundle.parent, bundle.name)
    root = tmp_path / "root"
    (root / "etc/edgeagent").mkdir(parents=True)
    mine = root / "etc/edgeagent/edgeagent.toml"
    mine.write_text("# the technician's own config\n")
    run = install("--root", root, archive)
    assert run.returncode == 0, run.err
    assert os.readlink(root / "opt/edgeagent/current") == "0.3.0"
    assert f"kept existing {mine}" in run.lines
    assert mine.read_text() == "# the technician's own config\n"
