"""`edgeagent keygen` and `edgeagent sign`: the operator's side of signed commands.

`keygen` writes `KEY_ID.key` (the private key, PKCS#8 PEM, mode 0600) and `KEY_ID.pub` (base64 of the raw
public key) and never overwrites either. `sign` builds a command with a fresh random nonce, issued now and
expiring after `lifetime_s`, and signs it; scripts may call `sign_command` directly. The private key never
goes near the node: the node's config holds only the public half, in `[[trust.keys]]`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edgeagent.decisions.signed import KEY_ID_RE, MAX_LIFETIME_S, VERSION, Action, ArgValue, format_time, sign
from edgeagent.decisions.trust import Role

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
_MAX_KEY_FILE_BYTES = 64 * 1024
_NUMBER_RE = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")


class KeyToolError(Exception):
    """A key file that cannot be written or read; the message names the file and the problem."""


def keygen(out_dir: Path, key_id: str) -> tuple[Path, str]:
    """Make a key pair in `out_dir`; (path of the private key, base64 of the raw public key).
    ValueError for a bad key id; KeyToolError when a file exists or cannot be written."""
    if not KEY_ID_RE.fullmatch(key_id):
        raise ValueError(f"key id {key_id!r} must be 1-64 letters, digits, . _ : @ or -, starting with a "
                         "letter or digit")
    private_path, public_path = out_dir / f"{key_id}.key", out_dir / f"{key_id}.pub"
    for existing in (private_path, public_path):
        if existing.exists() or existing.is_symlink():
            raise KeyToolError(f"{existing} already exists: not overwriting a key (choose another --id or --out)")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public_raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    public_b64 = base64.b64encode(public_raw).decode("ascii")
    try:
        out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_new(private_path, pem, 0o600)
        try:
            _write_new(public_path, (public_b64 + "\n").encode("ascii"), 0o644)
        except OSError:
            private_path.unlink()  # half a key pair would block the next try for no use
            raise
    except OSError as exc:
        raise KeyToolError(f"cannot write the key pair in {out_dir}: {exc.strerror or exc}") from None
    return private_path, public_b64


def trust_snippet(key_id: str, public_b64: str, name: str) -> str:
    """The `[[trust.keys]]` entry for a node's config (roles to be set by whoever grants them)."""
    roles = ", ".join(r.value for r in Role)
    return (f"[[trust.keys]]\n"
            f"id = {json.dumps(key_id)}\n"
            f"name = {json.dumps(name, ensure_ascii=False)}\n"
            f'roles = ["operator"]  # grant what this person does: {roles}\n'
            f"public_key = {json.dumps(public_b64)}\n")


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted Ed25519 private key from a PKCS#8 PEM or OpenSSH file; KeyToolError saying why not."""
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise KeyToolError(f"cannot read the key {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise KeyToolError(f"{path} is larger than {_MAX_KEY_FILE_BYTES} bytes: not a private key")
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            key: object = serialization.load_ssh_private_key(data, password=None)
        else:
            key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyToolError(f"{path} is encrypted: decrypt it to a temporary file first") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyToolError(f"{path} is not a PEM or OpenSSH private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyToolError(f"{path} holds a key of type {type(key).__name__.lstrip('_')}, not an Ed25519 private key")
    return key


def sign_command(key_file: Path, node: str, action: str, target: str, args: Mapping[str, ArgValue],
                 lifetime_s: float, key_id: str, *, now: dt.datetime | None = None,
                 nonce: str | None = None) -> bytes:
    """A signed command message, ready to send. ValueError for a bad field (the message says which);
    KeyToolError for an unusable key file."""
    if action not in {a.value for a in Action}:
        raise ValueError(f"unknown action {action!r}: one of {', '.join(Action)}")
    if not (math.isfinite(lifetime_s) and 0 < lifetime_s <= MAX_LIFETIME_S):
        raise ValueError(f"lifetime must be more than 0 and at most {MAX_LIFETIME_S:g} s, got {lifetime_s:g}")
    key = load_private_key(key_file)
    issued = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    fields = {
        "v": VERSION,
        "node": node,
        "action": action,
        "target": target,
        "args": dict(args),
        "key_id": key_id,
        "issued_at": format_time(issued),
        "expires_at": format_time(issued + dt.timedelta(seconds=lifetime_s)),
        "nonce": nonce if nonce is not None else secrets.token_urlsafe(18),
    }
    return sign(fields, key)


def parse_arg(text: str) -> tuple[str, ArgValue]:
    """`KEY=VALUE` → (KEY, value): a JSON-style number becomes a number, true/false a boolean, anything
    else stays text (`reason=ramp test`)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--arg takes KEY=VALUE, got {text!r}")
    if _NUMBER_RE.fullmatch(value):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"--arg {key}: {value} is out of range")
        return key, int(value) if value.lstrip("-").isdigit() else number
    if value in ("true", "false"):
        return key, value == "true"
    return key, value


def run_keygen(out_dir: Path, key_id: str, name: str | None) -> int:
    """The `keygen` subcommand: the key pair, then the config entry on stdout."""
    try:
        private_path, public_b64 = keygen(out_dir, key_id)
    except ValueError as exc:
        print(f"edgeagent keygen: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyToolError as exc:
        print(f"edgeagent keygen: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"# private key: {private_path} (keep it secret; it never goes on the node)", file=sys.stderr)
    print("# add this to the node's config, with the roles this person holds:", file=sys.stderr)
    print(trust_snippet(key_id, public_b64, name or key_id), end="")
    return EXIT_OK


def run_sign(key_file: Path, key_id: str, node: str, action: str, target: str, arg_texts: Sequence[str],
             lifetime_s: float) -> int:
    """The `sign` subcommand: the signed command as one line of JSON on stdout."""
    try:
        args: dict[str, ArgValue] = {}
        for text in arg_texts:
            key, value = parse_arg(text)
            if key in args:
                raise ValueError(f"--arg {key} given twice")
            args[key] = value
        message = sign_command(key_file, node, action, target, args, lifetime_s, key_id)
    except ValueError as exc:
        print(f"edgeagent sign: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyToolError as exc:
        print(f"edgeagent sign: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(message.decode("utf-8"))
    return EXIT_OK


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` (never replacing anything, never through a symlink) with `mode`, durably."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), mode)  # the umask may have removed bits; it never adds any
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


