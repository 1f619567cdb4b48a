"""Real bundles from tools/make-bundle (network to build, ~1 min): run with EDGEAGENT_SLOW_TESTS=1.

The bundle for this machine is installed into a --root tree with its real dependencies and checks a
config with the installed program; the one for the other CPU is refused here by the installer.
Bundles are cached in the temp dir, keyed by the sources they are built from.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.install.bundle_helpers import REPO, install

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the installer needs root (it creates users and chowns)"),
    pytest.mark.skipif(platform.machine() not in ("x86_64", "aarch64"), reason="bundles exist for x86_64/aarch64"),
]


def sources_key() -> str:
    digest = hashlib.sha256()
    paths = [REPO / "pyproject.toml", REPO / "tools/make-bundle", *sorted((REPO / "systemd").glob("*")),
             *sorted((REPO / "edgeagent").rglob("*.py")), *sorted((REPO / "edgeagent").rglob("*.toml"))]
    for path in paths:
        digest.update(path.as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def bundle_for(machine: str) -> Path:
    out = Path(tempfile.gettempdir()) / "edgeagent-test-bundles" / sources_key()
    found = sorted(out.glob(f"edgeagent-*-{machine}-py311.tar.gz"))
    if found:
        return found[0]
    proc = subprocess.run([sys.executable, str(REPO / "tools/make-bundle"), "--platform", machine, "--python",
                           "3.11", "--out", str(out)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.split()[0])


def test_bundle_for_this_machine_installs_offline_and_runs(tmp_path: Path) -> None:
    archive = bundle_for(platform.machine())
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    top = names[0].split("/")[0]
    for member in ("install.sh", "edgeagent.service", "site.toml", "MANIFEST.txt", "README.txt"):
        assert f"{top}/{member}" in names
    wheels = {n.split("/")[-1].split("-")[0].lower() for n in names if n.endswith(".whl")}
    assert {"edgeagent", "numpy", "onnxruntime", "pymodbus", "pyserial", "asyncua", "paho_mqtt"} <= wheels
    root = tmp_path / "root"
    root.mkdir()
    env_proxy = {k: os.environ.pop(k) for k in [k for k in os.environ if k.lower().endswith("_proxy")]}
    os.environ["PIP_NO_INDEX"] = "1"  # belt and braces: install.sh passes --no-index itself
    try:
        first = install("--root", root, archive)
    finally:
        os.environ.pop("PIP_NO_INDEX")
        os.environ.update(env_proxy)
    assert first.returncode == 0, first.err
    exe = root / "opt/edgeagent/current/bin/edgeagent"
    check = subprocess.run([str(exe), "check-config", str(root / "etc/edgeagent/edgeagent.toml")],
                           capture_output=True, text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    second = install("--root", root, archive)
    assert second.lines[-1] == "nothing changed: everything was already in place"


def test_bundle_for_the_other_cpu_is_refused_here(tmp_path: Path) -> None:
    other = "aarch64" if platform.machine() == "x86_64" else "x86_64"
    archive = bundle_for(other)
    with tarfile.open(archive) as tar:
        wheels = [n.split("/")[-1] for n in tar.getnames() if n.endswith(".whl")]
    numpy = [w for w in wheels if w.startswith("numpy-")]
    assert len(numpy) == 1 and numpy[0].endswith(f"_{other}.whl")
    root = tmp_path / "root"
    root.mkdir()
    run = install("--root", root, archive)
    assert run.returncode == 1
    assert "not for this machine" in run.err
    assert list(root.iterdir()) == []
