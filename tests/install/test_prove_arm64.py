"""tools/prove-arm64's fast subset: the static check of an aarch64 bundle, on fake bundles (seconds).

The full proof (debootstrap + qemu, minutes) is run by hand and its result goes in the issue note;
`prove-arm64 --fast` for real (builds the bundle, network) runs only with EDGEAGENT_SLOW_TESTS=1.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest

from tests.install.bundle_helpers import REPO, fake_bundle

PROVE = REPO / "tools" / "prove-arm64"

# Names as pip downloads them for aarch64 / CPython 3.11; the check reads only the names.
SOUND_WHEELS = (
    "numpy-2.4.0-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
    "cryptography-50.0.0-cp311-abi3-manylinux_2_34_aarch64.whl",
    "onnxruntime-1.32.0-cp311-cp311-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",
    "pyserial-3.5-py2.py3-none-any.whl",
)


def seal(top: Path) -> None:
    """Rewrite MANIFEST.txt as make-bundle does: the sha256 of every other file."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(top).as_posix()}"
             for p in sorted(top.rglob("*")) if p.is_file() and p.name != "MANIFEST.txt"]
    (top / "MANIFEST.txt").write_text("\n".join(lines) + "\n")


def pack(top: Path) -> Path:
    archive = top.parent / f"{top.name}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(top, arcname=top.name)
    return archive


def aarch64_bundle(tmp_path: Path, extra_wheels: tuple[str, ...] = ()) -> Path:
    top = fake_bundle(tmp_path, "9.1.0")
    (top / "README.txt").write_text("edgeagent 9.1.0 for aarch64\n")
    for name in (*SOUND_WHEELS, *extra_wheels):
        (top / "wheels" / name).write_bytes(name.encode())
    seal(top)
    return top


def check(archive: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(PROVE), "--check-bundle", str(archive)], capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_sound_aarch64_bundle_passes_with_its_wheel_and_file_counts(tmp_path: Path) -> None:
    top = aarch64_bundle(tmp_path)
    wheels = len(list((top / "wheels").glob("*.whl")))
    sealed = len([p for p in top.rglob("*") if p.is_file()]) - 1
    assert wheels == len(SOUND_WHEELS) + 1  # and edgeagent's own
    run = check(pack(top))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (f"bundle ok: {wheels} wheels fit aarch64 / CPython 3.11 / glibc 2.36; "
                                  f"MANIFEST.txt matches {sealed} files")


@pytest.mark.parametrize("wheel", [
    "numpy-2.4.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",   # another CPU
    "numpy-2.4.0-cp312-cp312-manylinux_2_27_aarch64.manylinux_2_28_aarch64.whl",  # another Python
    "numpy-2.4.0-cp311-cp311-manylinux_2_39_aarch64.whl",                         # newer glibc than bookworm's
    "numpy-2.4.0-cp311-cp311-musllinux_1_2_aarch64.whl",                          # another C library
    "cryptography-50.0.0-cp312-abi3-manylinux_2_34_aarch64.whl",                  # abi3 from a later Python
])
def test_a_wheel_that_does_not_fit_bookworm_arm64_is_named(tmp_path: Path, wheel: str) -> None:
    run = check(pack(aarch64_bundle(tmp_path, extra_wheels=(wheel,))))
    assert run.returncode == 1
    assert f"wheels/{wheel} does not fit aarch64 / CPython 3.11 / glibc 2.36" in run.stderr
    assert run.stderr.count("does not fit") == 1


def test_a_file_changed_after_sealing_is_named(tmp_path: Path) -> None:
    top = aarch64_bundle(tmp_path)
    (top / "site.toml").write_text((top / "site.toml").read_text() + "# edited\n")
    run = check(pack(top))
    assert run.returncode == 1
    assert "site.toml does not match its sha256 in MANIFEST.txt" in run.stderr


def test_unlisted_missing_and_phantom_files_are_each_named(tmp_path: Path) -> None:
    top = aarch64_bundle(tmp_path)
    (top / "install.sh").unlink()
    (top / "stray.txt").write_text("not sealed\n")
    run = check(pack(top))
    assert run.returncode == 1
    assert "install.sh is missing" in run.stderr
    assert "stray.txt is not in MANIFEST.txt" in run.stderr
    assert "MANIFEST.txt lists install.sh, which is not in the bundle" in run.stderr


def test_a_bundle_without_the_edgeagent_wheel_is_refused(tmp_path: Path) -> None:
    top = aarch64_bundle(tmp_path)
    for whl in (top / "wheels").glob("edgeagent-*.whl"):
        whl.unlink()
    seal(top)
    run = check(pack(top))
    assert run.returncode == 1
    assert "no edgeagent wheel in wheels/" in run.stderr


def test_a_file_that_is_not_an_archive_gets_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "bundle.tar.gz"
    bogus.write_text("not a tarball")
    run = check(bogus)
    assert run.returncode == 1
    assert "is not a readable .tar.gz" in run.stderr
    assert "Traceback" not in run.stderr


def test_the_cache_dir_may_not_be_inside_the_repo() -> None:
    inside = REPO / "prove-arm64-cache-should-not-exist"
    run = subprocess.run(["bash", str(PROVE), "--fast", "--cache", str(inside)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 1
    assert "is inside the repo" in run.stderr
    assert not inside.exists()


def test_bad_demo_arguments_are_refused_before_anything_runs() -> None:
    run = subprocess.run(["bash", str(PROVE), "--duration", "twenty"], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 1
    assert "--duration must be a number of seconds, got twenty" in run.stderr


@pytest.mark.slow
def test_fast_mode_builds_the_real_aarch64_bundle_and_passes_its_check(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    run = subprocess.run(["bash", str(PROVE), "--fast", "--cache", str(tmp_path / "cache")], capture_output=True,
                         text=True, timeout=600, check=False, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert any(line.startswith("bundle ok: ") and "fit aarch64 / CPython 3.11" in line for line in lines)
    assert lines[-1].startswith("prove-arm64: PASS (fast): aarch64 bundle built")
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    built = sorted(p.name for p in (tmp_path / "cache" / "bundle").iterdir())
    assert built == [f"edgeagent-{version}-aarch64-py311.tar.gz"]
