"""The trust store: which public keys may sign commands for this node, whose they are, and what they may do.

```toml
[[trust.keys]]
id = "alice-2025"                      # the key_id commands carry
name = "Alice Berger"                  # the person who holds the private key (goes into the audit log)
roles = ["operator"]                   # operator, dispatcher, technician
public_key = "q9v...="                 # base64 of the raw 32-byte Ed25519 public key (edgeagent keygen prints it)

[[trust.keys]]
id = "ops-dispatch"
name = "Dispatch desk"
roles = ["dispatcher"]
public_key_file = "keys/dispatch.pub"  # PEM, OpenSSH (ssh-ed25519 ...), raw 32 bytes or base64 text;
                                       # relative to the config file's folder
```
Roles are deliberately narrow (DESIGN.md: operators decide, interlocks always win): an operator confirms or
rejects recommendations, a dispatcher moves the dynamic export limit (within the contract bounds, checked
where it is applied), a technician resets a latched trip. A person who does two jobs has two roles listed.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edgeagent.configcheck import Checker
from edgeagent.decisions.signed import KEY_ID_RE, Action

PUBLIC_KEY_BYTES = 32
_MAX_KEY_FILE_BYTES = 64 * 1024


class Role(StrEnum):
    OPERATOR = "operator"
    DISPATCHER = "dispatcher"
    TECHNICIAN = "technician"


ROLE_ACTIONS: Mapping[Role, frozenset[Action]] = MappingProxyType({
    Role.OPERATOR: frozenset({Action.CONFIRM, Action.REJECT}),
    Role.DISPATCHER: frozenset({Action.SET_EXPORT_LIMIT, Action.CLEAR_EXPORT_LIMIT}),
    Role.TECHNICIAN: frozenset({Action.RESET_TRIP}),
})


def required_role(action: Action) -> Role:
    """The one role that may perform `action`."""
    for role, actions in ROLE_ACTIONS.items():
        if action in actions:
            return role
    raise ValueError(f"no role may perform {action!r}")


@dataclass(frozen=True, slots=True)
class TrustedKey:
    key_id: str
    public_key: Ed25519PublicKey
    roles: frozenset[Role]
    name: str

    def __post_init__(self) -> None:
        if not KEY_ID_RE.fullmatch(self.key_id):
            raise ValueError(f"key id {self.key_id!r} must match {KEY_ID_RE.pattern}")
        if not self.roles or not all(isinstance(r, Role) for r in self.roles):
            raise ValueError(f"key {self.key_id!r} needs at least one role of {', '.join(Role)}")
        if not self.name.strip():
            raise ValueError(f"key {self.key_id!r} needs the name of the person who holds it")

    def may(self, action: Action) -> bool:
        return required_role(action) in self.roles

    @property
    def raw_public_key(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def fingerprint(self) -> str:
        """SHA-256 (hex) of the raw public key: names the exact key in audit records."""
        return hashlib.sha256(self.raw_public_key).hexdigest()


class TrustStore:
    """The trusted keys by id. Immutable; an id or a public key appears at most once (one key, one
    person, one id: otherwise the audit log could not say who decided)."""

    def __init__(self, keys: Iterable[TrustedKey] = ()) -> None:
        by_id: dict[str, TrustedKey] = {}
        by_raw: dict[bytes, str] = {}
        for key in keys:
            if key.key_id in by_id:
                raise ValueError(f"two trusted keys have the id {key.key_id!r}")
            other = by_raw.get(key.raw_public_key)
            if other is not None:
                raise ValueError(f"keys {other!r} and {key.key_id!r} are the same public key")
            by_id[key.key_id] = key
            by_raw[key.raw_public_key] = key.key_id
        self._keys: Mapping[str, TrustedKey] = MappingProxyType(by_id)

    def get(self, key_id: str) -> TrustedKey | None:
        return self._keys.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def __iter__(self) -> Iterator[TrustedKey]:
        return iter(self._keys.values())

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TrustStore({', '.join(self._keys)})"


def public_key_from_base64(text: str) -> Ed25519PublicKey:
    """The key from standard base64 of its raw 32 bytes; ValueError saying what is wrong."""
    try:
        raw = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError("must be standard base64 of the raw 32-byte Ed25519 public key") from None
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError(f"must decode to {PUBLIC_KEY_BYTES} bytes (a raw Ed25519 public key), got {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_key_file(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM, OpenSSH, raw 32-byte or base64 text file; ValueError saying
    what is wrong. A private key is refused: it has no place next to a config."""
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise ValueError(f"{path} is larger than {_MAX_KEY_FILE_BYTES} bytes: not a public key file")
    if b"PRIVATE KEY" in data:
        raise ValueError(f"{path} holds a private key: give the public key (edgeagent keygen writes KEY_ID.pub)")
    if len(data) == PUBLIC_KEY_BYTES and not data.strip().startswith((b"-----", b"ssh-")):
        return Ed25519PublicKey.from_public_bytes(data)
    stripped = data.strip()
    try:
        if stripped.startswith(b"-----BEGIN"):
            key: object = serialization.load_pem_public_key(stripped)
        elif stripped.startswith(b"ssh-"):
            key = serialization.load_ssh_public_key(stripped)
        else:
            try:
                text = stripped.decode("ascii")
            except UnicodeDecodeError:
                raise ValueError("not text") from None
            return public_key_from_base64(text)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{path} is not an Ed25519 public key in PEM, OpenSSH, raw or base64 form ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} holds a key of type {type(key).__name__.lstrip('_')}, not an Ed25519 public key")
    return key


def parse_trust(c: Checker, doc: Mapping[str, Any], base_dir: Path | None = None) -> TrustStore:
    """The `[[trust.keys]]` array of a parsed config → TrustStore; every problem goes to `c` at its
    key path. Without a `[trust]` table the store is empty: nothing signed is ever accepted.
    Relative `public_key_file` paths are taken from `base_dir`, by default the config file's folder."""
    if "trust" not in doc:
        return TrustStore()
    base = base_dir if base_dir is not None else Path(c.file).parent
    trust = c.table(doc, "trust", "")
    c.only_keys(trust, "trust", ["keys"])
    raw = trust.get("keys", [])
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        c.error("trust.keys", "must be an array of tables ([[trust.keys]])", raw)
        return TrustStore()
    keys: list[TrustedKey] = []
    ids: dict[str, int] = {}
    publics: dict[bytes, int] = {}
    for i, t in enumerate(raw):
        path = f"trust.keys[{i}]"
        key = _key(c, t, path, base)
        if key is None:
            continue
        if key.key_id in ids:
            c.error(f"{path}.id", f"trust.keys[{ids[key.key_id]}] already has this id", key.key_id)
            continue
        if key.raw_public_key in publics:
            source = "public_key" if "public_key" in t else "public_key_file"
            c.error(f"{path}.{source}", f"the same public key as trust.keys[{publics[key.raw_public_key]}]; "
                    "one key, one id, one person")
            continue
        ids[key.key_id] = i
        publics[key.raw_public_key] = i
        keys.append(key)
    return TrustStore(keys)


def _key(c: Checker, t: dict[str, Any], path: str, base: Path) -> TrustedKey | None:
    c.only_keys(t, path, ["id", "name", "roles", "public_key", "public_key_file"])
    before = len(c.problems)
    key_id = c.string(t, "id", path, pattern=KEY_ID_RE.pattern)
    name = c.string(t, "name", path)
    if "name" in t and isinstance(t["name"], str) and not name.strip():
        c.error(f"{path}.name", "must name the person who holds the key")
    roles = _roles(c, t, path)
    public_key = _public_key(c, t, path, base)
    if len(c.problems) > before or public_key is None:
        return None
    return TrustedKey(key_id, public_key, roles, name)


def _roles(c: Checker, t: dict[str, Any], path: str) -> frozenset[Role]:
    raw = t.get("roles")
    names = [r.value for r in Role]
    if not isinstance(raw, list) or not raw:
        c.error(f"{path}.roles", f"must be a non-empty list of {', '.join(names)}", raw)
        return frozenset()
    roles: set[Role] = set()
    for j, item in enumerate(raw):
        if item not in names:
            close = difflib.get_close_matches(str(item), names, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            c.error(f"{path}.roles[{j}]", f"unknown role (one of {', '.join(names)}){hint}", item)
        elif Role(item) in roles:
            c.error(f"{path}.roles[{j}]", "listed twice", item)
        else:
            roles.add(Role(item))
    return frozenset(roles)


def _public_key(c: Checker, t: dict[str, Any], path: str, base: Path) -> Ed25519PublicKey | None:
    has_inline, has_file = "public_key" in t, "public_key_file" in t
    if has_inline == has_file:
        c.error(path, "needs exactly one of public_key (base64) and public_key_file")
        return None
    key = "public_key" if has_inline else "public_key_file"
    text = c.string(t, key, path)
    if not text:
        if isinstance(t[key], str):
            c.error(f"{path}.{key}", "must not be empty")
        return None
    try:
        if has_inline:
            return public_key_from_base64(text)
        file = Path(text).expanduser()
        return load_public_key_file(file if file.is_absolute() else base / file)
    except ValueError as exc:
        c.error(f"{path}.{key}", str(exc))
        return None
