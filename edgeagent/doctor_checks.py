"""`edgeagent doctor`: what a check reports, and the checks that only look at this machine's files.

A check returns `Finding`s, one line each: PASS, WARN (works, but will bite: a certificate about to
expire, a state folder not created yet) or FAIL (the daemon will not work as configured). Every
WARN and FAIL carries the fix in words, for a technician on site who should never need the source.
The network and hardware checks live in `doctor_checks_modbus`, `doctor_checks_broker` and
`doctor_checks_i2c`; the clock in `doctor_checks_clock`.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import os
import pwd
import re
import shutil
import stat
import tempfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeagent.config import Config

WARN_FREE_FACTOR = 2.0
"""Free disk below this many times what the outbox and audit log may still grow by is a WARN."""
_HASH_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")


class Status(enum.StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the doctor's report: `STATUS  what: detail -> fix`."""

    status: Status
    what: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{self.status.value}  {self.what}: {self.detail}"
        return f"{text} -> {self.fix}" if self.fix else text

    def as_dict(self) -> dict[str, str]:
        return {"status": self.status.value.lower(), "what": self.what, "detail": self.detail, "fix": self.fix}


def passed(what: str, detail: str) -> Finding:
    return Finding(Status.PASS, what, detail)


def warn(what: str, detail: str, fix: str) -> Finding:
    return Finding(Status.WARN, what, detail, fix)


def fail(what: str, detail: str, fix: str) -> Finding:
    return Finding(Status.FAIL, what, detail, fix)


def user_name() -> str:
    """The name of the user running the doctor (its uid when it has no passwd entry)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def os_reason(exc: OSError) -> str:
    """"permission denied" for EACCES, and so on: reads well after a colon."""
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


# --- storage --------------------------------------------------------------------------------------


def _existing_ancestor(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def check_state_dir(cfg: Config) -> list[Finding]:
    """storage.dir must be a folder this user can create files in (the outbox, audit log, socket)."""
    what = "state dir"
    path = Path(cfg.state_dir)
    user = user_name()
    fix_owner = f"give the service's user the folder: chown -R <service user> {path} (checked as {user})"
    if path.exists() and not path.is_dir():
        return [fail(what, f"{path} exists but is not a folder", "remove it or set storage.dir to a folder")]
    if not path.exists():
        parent = _existing_ancestor(path)
        if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return [warn(what, f"{path} does not exist yet; {parent} is writable, so it can be created",
                         f"the daemon creates it at start; or create it now: install -d -m 700 {path}")]
        return [fail(what, f"{path} does not exist and {user} cannot create it in {parent}",
                     f"create it for the service's user: install -d -m 700 -o <service user> {path}")]
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return [fail(what, f"{user} cannot create files in {path}: {os_reason(exc)}", fix_owner)]
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o002:
        return [fail(what, f"{path} is writable by every user (mode {mode:04o}): anyone could edit the audit "
                     "log's files or the outbox", f"chmod o-w {path}")]
    return [passed(what, f"{path} is writable by {user}")]


def _outbox_on_disk(state_dir: Path) -> int:
    total = 0
    for name in ("outbox.sqlite", "outbox.sqlite-wal"):
        with contextlib.suppress(OSError):
            total += (state_dir / name).stat().st_size
    return total


def check_disk(cfg: Config) -> list[Finding]:
    """Free space where the outbox lives against what it may still grow to: its budget, minus what
    it already holds, plus room for the audit log to rotate (one more file of audit_max_bytes)."""
    what = "disk"
    state_dir = Path(cfg.state_dir)
    where = _existing_ancestor(state_dir)
    free = shutil.disk_usage(where).free
    audit = cfg.decisions.audit_max_bytes
    if cfg.uplink is not None:
        budget = cfg.uplink.budget_bytes
        need = max(0, budget - _outbox_on_disk(state_dir)) + audit
        basis = f"the outbox budget ({_mib(budget)}) and the audit log ({_mib(audit)})"
    else:
        need = audit
        basis = f"the audit log ({_mib(audit)}; no uplink, so no outbox)"
    detail = f"{_mib(free)} free at {where}; {basis} may need {_mib(need)} more"
    if free < need:
        return [fail(what, detail, f"free space on {where}, or lower uplink.budget_mb; with a full disk the "
                     "outbox cannot keep events and the audit log cannot record decisions")]
    if free < WARN_FREE_FACTOR * need:
        return [warn(what, detail, f"free space on {where} (less than {WARN_FREE_FACTOR:g}x what is needed)")]
    return [passed(what, detail)]


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.1f} GiB"


# --- models ---------------------------------------------------------------------------------------


def models_dir(cfg: Config) -> Path:
    """`models_dir` of the config once it has one; until then `models/` next to the config file."""
    configured = getattr(cfg, "models_dir", None)
    if configured:
        return Path(configured)
    return Path(cfg.path).parent / "models"


def check_models(cfg: Config) -> list[Finding]:
    """Every `*.manifest.json` names a `file` (relative to the manifest) and its `sha256`: the daemon
    refuses a model that does not match, so a mismatch found now saves a surprise later."""
    folder = models_dir(cfg)
    manifests = sorted(folder.glob("*.manifest.json")) if folder.is_dir() else []
    if not manifests:
        return [passed("models", f"no models configured (no *.manifest.json in {folder})")]
    return [_check_manifest(m) for m in manifests]


def _check_manifest(manifest: Path) -> Finding:
    what = f"model {manifest.name.removesuffix('.manifest.json')}"
    reinstall = "reinstall the model and its manifest from the release bundle"
    try:
        doc: Any = json.loads(manifest.read_text(encoding="utf-8"))
    except OSError as exc:
        return fail(what, f"cannot read {manifest}: {os_reason(exc)}", f"make it readable, or {reinstall}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return fail(what, f"{manifest} is not valid JSON ({exc})", reinstall)
    if not isinstance(doc, dict):
        return fail(what, f"{manifest} is not a JSON object", reinstall)
    file_name, expected = doc.get("file"), doc.get("sha256")
    if not isinstance(file_name, str) or not file_name:
        return fail(what, f"{manifest} has no \"file\" naming the model file", reinstall)
    if not isinstance(expected, str) or not _SHA256_RE.fullmatch(expected):
        return fail(what, f"{manifest} has no \"sha256\" of 64 hex digits (got {expected!r})", reinstall)
    label = what + (f" {doc['version']}" if isinstance(doc.get("version"), str | int) else "")
    path = manifest.parent / file_name
    try:
        actual = _sha256(path)
    except OSError as exc:
        return fail(label, f"cannot read {path}: {os_reason(exc)}", f"copy the model file there, or {reinstall}")
    if actual != expected.lower():
        return fail(label, f"sha256 of {path} is {actual[:16]}…, its manifest says {expected.lower()[:16]}…: the "
                    "file is damaged or not the one the manifest describes; the daemon will refuse it", reinstall)
    return passed(label, f"{path.name} matches its manifest (sha256 {actual[:16]}…)")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- key files ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyFile:
    key: str  # where the config names it, e.g. "uplink.key_file"
    path: Path
    secret: bool


def key_files(cfg: Config) -> Iterator[KeyFile]:
    """The files with keys or secrets the config names. Trust keys' paths are not kept in `Config`
    (only the loaded keys are), so they are read from the file again, relative to its folder."""
    up = cfg.uplink
    if up is not None:
        for key, secret in (("key_file", True), ("password_file", True), ("cert_file", False), ("ca_file", False)):
            value = getattr(up, key)
            if value:
                yield KeyFile(f"uplink.{key}", Path(value).expanduser(), secret)
    try:
        doc = tomllib.loads(Path(cfg.path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return
    trust = doc.get("trust")
    entries = trust.get("keys") if isinstance(trust, dict) else None
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        value = entry.get("public_key_file") if isinstance(entry, dict) else None
        if isinstance(value, str) and value:
            path = Path(value).expanduser()
            yield KeyFile(f"trust.keys[{i}].public_key_file", path if path.is_absolute() else
                          Path(cfg.path).parent / path, False)


def check_key_files(cfg: Config) -> list[Finding]:
    files = list(key_files(cfg))
    if not files:
        return [passed("key files", "none configured")]
    return [_check_key_file(f) for f in files]


def _check_key_file(f: KeyFile) -> Finding:
    what = f"key file {f.key}"
    try:
        st = f.path.stat()
        with f.path.open("rb"):
            pass
    except OSError as exc:
        return fail(what, f"{user_name()} cannot read {f.path}: {os_reason(exc)}",
                    "the daemon must read it: fix the path in the config or the file's owner and mode")
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        return fail(what, f"{f.path} is not a regular file", "point the config at the file itself")
    if f.secret and mode & 0o077:
        return fail(what, f"{f.path} is a secret but has mode {mode:04o}: other users on this box can read or "
                    "change it", f"chmod 600 {f.path} (owned by the service's user)")
    if not f.secret and mode & 0o022:
        who = "every user" if mode & 0o002 else "its group"
        consequence = ("could put their own key in and sign commands" if f.key.startswith("trust.")
                       else "could swap it for another")
        return fail(what, f"{f.path} has mode {mode:04o}: {who} {consequence}", f"chmod go-w {f.path}")
    return passed(what, f"{f.path} mode {mode:04o}, owner {_owner(st.st_uid)}")


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
