"""Fake bundles for the installer's fast tests, and a listing of a root tree to compare steps.

A fake bundle has the real unit, rules, installer and site template, and a tiny `edgeagent` wheel
with no dependencies whose `edgeagent --version` prints its version: the installer's logic (users,
venv, links, config, upgrade, rollback) runs for real, in seconds instead of a minute of numpy.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTALL_SH = REPO / "systemd" / "install.sh"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def fake_wheel(out_dir: Path, version: str, extra_name: str | None = None) -> Path:
    """A py3-none-any wheel of `edgeagent` VERSION; `extra_name` names a second (foreign) wheel file."""
    files = {
        "edgeagent/__init__.py": f'__version__ = "{version}"\n',
        "edgeagent/cli.py": "import sys\n\nfrom edgeagent import __version__\n\n\ndef main() -> int:\n"
                            "    print(f'edgeagent {__version__}', sys.argv[1:])\n    return 0\n",
        f"edgeagent-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: edgeagent\nVersion: {version}\n",
        f"edgeagent-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                                "Tag: py3-none-any\n",
        f"edgeagent-{version}.dist-info/entry_points.txt": "[console_scripts]\nedgeagent = edgeagent.cli:main\n",
    }
    record_name = f"edgeagent-{version}.dist-info/RECORD"
    lines = [_record_line(name, text.encode()) for name, text in files.items()] + [f"{record_name},,"]
    files[record_name] = "\n".join(lines) + "\n"
    path = out_dir / (extra_name or f"edgeagent-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def fake_bundle(parent: Path, version: str, foreign_wheel: str | None = None) -> Path:
    top = parent / f"edgeagent-{version}-test"
    (top / "wheels").mkdir(parents=True)
    fake_wheel(top / "wheels", version)
    if foreign_wheel is not None:
        fake_wheel(top / "wheels", version, extra_name=foreign_wheel)
    shutil.copy2(REPO / "systemd" / "edgeagent.service", top / "edgeagent.service")
    shutil.copy2(REPO / "systemd" / "60-edgeagent-i2c.rules", top / "60-edgeagent-i2c.rules")
    shutil.copy2(INSTALL_SH, top / "install.sh")
    shutil.copy2(REPO / "edgeagent" / "examples" / "site.toml", top / "site.toml")
    manifest = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(top).as_posix()}"
                for p in sorted(top.rglob("*")) if p.is_file()]
    (top / "MANIFEST.txt").write_text("\n".join(manifest) + "\n")
    return top


@dataclass(frozen=True)
class Run:
    returncode: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


def install(*args: str | Path) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    proc = subprocess.run(["bash", str(INSTALL_SH), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def listing(root: Path) -> list[tuple[str, str, str, int, int, str]]:
    """Every path under root: (path, type, mode, uid, gid, link target or content sha256)."""
    rows = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                kind, what = "l", os.readlink(path)
            elif stat.S_ISDIR(st.st_mode):
                kind, what = "d", ""
            else:
                kind, what = "f", hashlib.sha256(path.read_bytes()).hexdigest()
            rows.append((str(path.relative_to(root)), kind, oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, what))
    return sorted(rows)


def account(root: Path, table: str, name: str) -> list[str] | None:
    """The fields of NAME's line in ROOT/etc/passwd or group, or None."""
    path = root / "etc" / table
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields
    return None
