"""The wire format of a signed operator command, and the refusal reasons a command can get.

A command is one JSON object (UTF-8, at most 8 KiB) with exactly these fields:

| field | type | meaning |
|---|---|---|
| `v` | integer `1` | format version |
| `node` | string, `[A-Za-z][A-Za-z0-9_-]{0,63}` | the node the command is for (`site.node` in its config) |
| `action` | `confirm`, `reject`, `set_export_limit`, `clear_export_limit` or `reset_trip` | what to do |
| `target` | string, 1-128 chars | recommendation id (confirm/reject), interlock name (reset_trip), `export_limit` |
| `args` | object, <= 16 entries | `{"limit_kw": 25.0}` (set_export_limit only, required there), `{"reason": ".."}` |
| `key_id` | string, `[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}` | the id of the signing key in the node's trust store |
| `issued_at` | RFC 3339 UTC string, `2025-01-31T14:05:00Z` (`.` and 1-9 fraction digits allowed, `Z` required) | |
| `expires_at` | same | later than `issued_at`, at most 24 h after it |
| `nonce` | string, 16-64 characters of `A-Z a-z 0-9 - _` (base64url without padding, or hex) | never reused |
| `sig` | standard base64 (padded) of the 64-byte Ed25519 signature | |

`args` keys match `[a-z][a-z0-9_]{0,31}`; values are strings (at most 1000 characters), booleans, integers
(magnitude at most 2**53) or finite numbers. No string anywhere may contain a control character
(U+0000-U+001F, U+007F) or a lone surrogate.

**What is signed** (so that an operator's own tooling can sign): the Ed25519 signature covers the UTF-8 bytes
of the JSON object of every field except `sig`, written canonically, i.e. what Python writes with
`json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`:
- keys sorted by code point (all keys are ASCII), no whitespace anywhere, `,` and `:` as separators;
- strings as they are, with only `"` and `\\` escaped (control characters are not allowed at all);
- `true`, `false`; integers in plain decimal; other numbers as the shortest decimal that reads back as the
  same IEEE double, with a fraction (`25.0`, `25.5`) and Python's exponent form for very large or small ones
  (`1e-07`): keep numbers to plain decimals and the question does not arise.

The verifier rebuilds these bytes from the fields it parsed, so whitespace and key order in the message
itself do not matter; a number written as `25` is signed as `25`, one written as `25.0` as `25.0`.
Example of signed bytes (one line):
`{"action":"confirm","args":{},"expires_at":"2025-01-31T14:10:00Z","issued_at":"2025-01-31T14:05:00Z",
"key_id":"alice","node":"node-1","nonce":"q3Zr5cYb0m8x1d2Kf7Lw9a","target":"rec-42","v":1}`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeAlias

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

VERSION = 1
MAX_MESSAGE_BYTES = 8 * 1024
MAX_LIFETIME_S = 86_400.0
SIGNATURE_BYTES = 64

FIELDS = frozenset({"v", "node", "action", "target", "args", "key_id", "issued_at", "expires_at", "nonce", "sig"})
SIGNED_FIELDS = FIELDS - {"sig"}
EXPORT_LIMIT_TARGET = "export_limit"

NODE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")  # the same rule as site.node in the config
KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@\-]{0,63}")
NONCE_RE = re.compile(r"[A-Za-z0-9_\-]{16,64}")
INTERLOCK_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")  # the same rule as interlocks[].name in the config
ARG_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_TIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z")
_BAD_CHAR_RE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_MAX_TARGET = 128
_MAX_ARGS = 16
_MAX_ARG_TEXT = 1000
_MAX_INT = 2**53  # beyond this, tooling in other languages (JavaScript) no longer writes integers exactly

ArgValue: TypeAlias = str | bool | int | float


class Action(StrEnum):
    CONFIRM = "confirm"
    REJECT = "reject"
    SET_EXPORT_LIMIT = "set_export_limit"
    CLEAR_EXPORT_LIMIT = "clear_export_limit"
    RESET_TRIP = "reset_trip"


class Reason(StrEnum):
    """Why a command was refused: the code published with every refusal."""

    MALFORMED = "malformed"
    UNKNOWN_KEY = "unknown_key"
    BAD_SIGNATURE = "bad_signature"
    WRONG_NODE = "wrong_node"
    WRONG_ROLE = "wrong_role"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    REPLAYED = "replayed"
    NONCE_STORE_FAULT = "nonce_store_fault"
    UNKNOWN_RECOMMENDATION = "unknown_recommendation"
    CLOSED_RECOMMENDATION = "closed_recommendation"


REASONS: Mapping[Reason, str] = MappingProxyType({
    Reason.MALFORMED: "not a well-formed command (size, encoding, JSON, fields, types, times or lifetime)",
    Reason.UNKNOWN_KEY: "key_id names no key in this node's trust store",
    Reason.BAD_SIGNATURE: "the signature does not verify with the named key over the command's fields",
    Reason.WRONG_NODE: "the command is addressed to another node",
    Reason.WRONG_ROLE: "the key does not hold the role that the action needs",
    Reason.NOT_YET_VALID: "issued_at is still in the future, beyond the clock-skew tolerance",
    Reason.EXPIRED: "expires_at has passed, beyond the clock-skew tolerance",
    Reason.REPLAYED: "this key already used this nonce: the command was seen before",
    Reason.NONCE_STORE_FAULT: "the replay check cannot run (nonce store damaged or unwritable): nothing executes",
    Reason.UNKNOWN_RECOMMENDATION: "no recommendation with this id exists on this node",
    Reason.CLOSED_RECOMMENDATION: "the recommendation was already decided, expired or withdrawn",
})


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed, well-formed command. Well-formed only: `Verifier` decides whether it may run.

    `signed_bytes` are the canonical bytes the signature covers; `signature` is the raw 64 bytes.
    """

    node: str
    action: Action
    target: str
    args: Mapping[str, ArgValue] = field(hash=False)
    key_id: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    nonce: str
    signature: bytes
    signed_bytes: bytes
    v: int = VERSION


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused command: `code` for machines, `detail` for people. `command` is set when the
    message parsed, so that the refusal can name what it refuses (it is not authenticated before
    the signature check passed)."""

    code: Reason
    detail: str
    command: Command | None = None


class _Malformed(Exception):
    pass


def canonical_bytes(fields: Mapping[str, Any]) -> bytes:
    """The canonical JSON of `fields` (see the module docstring): what the signature covers."""
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def format_time(moment: dt.datetime) -> str:
    """An aware datetime as the RFC 3339 UTC text the wire format takes (whole seconds, or microseconds)."""
    if moment.tzinfo is None:
        raise ValueError(f"time must be timezone-aware, got {moment!r}")
    utc = moment.astimezone(dt.UTC)
    spec = "seconds" if utc.microsecond == 0 else "microseconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def sign(fields: Mapping[str, Any], private_key: Ed25519PrivateKey, *,
         max_lifetime_s: float = MAX_LIFETIME_S) -> bytes:
    """The complete message: `fields` (every field but `sig`) signed with `private_key`.

    Raises ValueError naming the problem when the result would not parse as a command, so a
    script learns about a bad field here and not from a refusal on the node."""
    if set(fields) != SIGNED_FIELDS:
        raise ValueError(_key_set_problem(set(fields), SIGNED_FIELDS))
    try:
        signature = private_key.sign(canonical_bytes(fields))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot write the command as JSON: {exc}") from None
    message = canonical_bytes({**fields, "sig": base64.b64encode(signature).decode("ascii")})
    parsed = parse(message, max_lifetime_s=max_lifetime_s)
    if isinstance(parsed, Refusal):
        raise ValueError(parsed.detail)
    return message


def parse(raw: bytes, *, max_lifetime_s: float = MAX_LIFETIME_S) -> Command | Refusal:
    """Strictly parse a message. Returns a `Command`, or `Refusal(MALFORMED, detail)`; never raises."""
    try:
        return _parse(raw, max_lifetime_s)
    except _Malformed as exc:
        return Refusal(Reason.MALFORMED, str(exc))
    except RecursionError:
        return Refusal(Reason.MALFORMED, "nested too deeply")
    except (ValueError, TypeError, OverflowError) as exc:
        return Refusal(Reason.MALFORMED, f"unreadable command ({type(exc).__name__})")


def _parse(raw: object, max_lifetime_s: float) -> Command:
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise _Malformed(f"a command is bytes, got {type(raw).__name__}")
    data = bytes(raw)
    if len(data) > MAX_MESSAGE_BYTES:
        raise _Malformed(f"message is {len(data)} bytes, at most {MAX_MESSAGE_BYTES} allowed")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Malformed(f"not UTF-8 (byte {exc.start})") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                         parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise _Malformed(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise _Malformed(f"a command is a JSON object, got {_json_type(doc)}")
    if set(doc) != FIELDS:
        raise _Malformed(_key_set_problem(set(doc), FIELDS))
    version = doc["v"]
    if type(version) is not int or version != VERSION:
        raise _Malformed(f"field 'v' must be {VERSION}, got {_show(version)}")
    node = _match(doc, "node", NODE_RE, "a node id: a letter, then up to 63 letters, digits, _ or -")
    action_text = _text(doc, "action", 32)
    if action_text not in {a.value for a in Action}:
        raise _Malformed(f"field 'action' must be one of {', '.join(Action)}, got {_show(action_text)}")
    action = Action(action_text)
    target = _text(doc, "target", _MAX_TARGET)
    args = _args(doc["args"])
    _check_action(action, target, args)
    key_id = _match(doc, "key_id", KEY_ID_RE, "a key id: up to 64 letters, digits, . _ : @ or -, "
                                             "starting with a letter or digit")
    issued_at = _time(doc, "issued_at")
    expires_at = _time(doc, "expires_at")
    lifetime_s = (expires_at - issued_at).total_seconds()
    if lifetime_s <= 0:
        raise _Malformed("expires_at must be later than issued_at")
    if lifetime_s > max_lifetime_s:
        raise _Malformed(f"lifetime is {lifetime_s:g} s, at most {max_lifetime_s:g} s allowed")
    nonce = _match(doc, "nonce", NONCE_RE, "16-64 characters of A-Z a-z 0-9 - _")
    signature = _signature(doc["sig"])
    signed = {k: v for k, v in doc.items() if k != "sig"}
    return Command(node=node, action=action, target=target, args=MappingProxyType(args), key_id=key_id,
                   issued_at=issued_at, expires_at=expires_at, nonce=nonce, signature=signature,
                   signed_bytes=canonical_bytes(signed), v=version)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Malformed(f"key {_show(key)} appears twice in one object")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise _Malformed(f"{name} is not a number a command may carry")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Malformed(f"number {_show(text)} is out of range")
    return value


def _text(doc: Mapping[str, Any], key: str, max_len: int) -> str:
    value = doc[key]
    if not isinstance(value, str):
        raise _Malformed(f"field {key!r} must be a string, got {_json_type(value)}")
    if not 1 <= len(value) <= max_len:
        raise _Malformed(f"field {key!r} must be 1-{max_len} characters, got {len(value)}")
    bad = _BAD_CHAR_RE.search(value)
    if bad:
        raise _Malformed(f"field {key!r} contains a control character or lone surrogate at {bad.start()}")
    return value


def _match(doc: Mapping[str, Any], key: str, pattern: re.Pattern[str], what: str) -> str:
    value = _text(doc, key, 64)
    if not pattern.fullmatch(value):
        raise _Malformed(f"field {key!r} must be {what}, got {_show(value)}")
    return value


def _args(value: Any) -> dict[str, ArgValue]:
    if not isinstance(value, dict):
        raise _Malformed(f"field 'args' must be an object, got {_json_type(value)}")
    if len(value) > _MAX_ARGS:
        raise _Malformed(f"field 'args' has {len(value)} entries, at most {_MAX_ARGS} allowed")
    for key, item in value.items():
        if not ARG_KEY_RE.fullmatch(key):
            raise _Malformed(f"args key {_show(key)} must match {ARG_KEY_RE.pattern}")
        if isinstance(item, str):
            if len(item) > _MAX_ARG_TEXT:
                raise _Malformed(f"args.{key} is {len(item)} characters, at most {_MAX_ARG_TEXT} allowed")
            if bad := _BAD_CHAR_RE.search(item):
                raise _Malformed(f"args.{key} contains a control character or lone surrogate at {bad.start()}")
        elif type(item) is int:
            if abs(item) > _MAX_INT:
                raise _Malformed(f"args.{key} is beyond ±2**53")
        elif not isinstance(item, bool | float):
            raise _Malformed(f"args.{key} must be a string, number or boolean, got {_json_type(item)}")
    return dict(value)


def _check_action(action: Action, target: str, args: Mapping[str, ArgValue]) -> None:
    """The per-action rules on `target` and `args`: a command that cannot mean anything is malformed."""
    if action in (Action.SET_EXPORT_LIMIT, Action.CLEAR_EXPORT_LIMIT) and target != EXPORT_LIMIT_TARGET:
        raise _Malformed(f"action {action} takes target {EXPORT_LIMIT_TARGET!r}, got {_show(target)}")
    if action is Action.RESET_TRIP and not INTERLOCK_RE.fullmatch(target):
        raise _Malformed(f"action reset_trip takes an interlock name as target, got {_show(target)}")
    limit = args.get("limit_kw")
    if action is Action.SET_EXPORT_LIMIT:
        if limit is None:
            raise _Malformed("action set_export_limit needs args.limit_kw")
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise _Malformed(f"args.limit_kw must be a number, got {_json_type(limit)}")
    elif limit is not None:
        raise _Malformed(f"args.limit_kw is only for set_export_limit, not {action}")
    if "reason" in args and not isinstance(args["reason"], str):
        raise _Malformed(f"args.reason must be a string, got {_json_type(args['reason'])}")


def _time(doc: Mapping[str, Any], key: str) -> dt.datetime:
    value = _text(doc, key, 64)
    m = _TIME_RE.fullmatch(value)
    if not m:
        raise _Malformed(f"field {key!r} must be an RFC 3339 UTC time like 2025-01-31T14:05:00Z, got {_show(value)}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micros = int((m.group(7) or "0").ljust(9, "0")[:6])
    try:
        return dt.datetime(year, month, day, hour, minute, second, micros, tzinfo=dt.UTC)
    except ValueError as exc:
        raise _Malformed(f"field {key!r} is not a valid time ({exc}), got {_show(value)}") from None


def _signature(value: Any) -> bytes:
    if not isinstance(value, str):
        raise _Malformed(f"field 'sig' must be a string, got {_json_type(value)}")
    try:
        signature = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _Malformed("field 'sig' must be standard base64") from None
    if len(signature) != SIGNATURE_BYTES:
        raise _Malformed(f"field 'sig' must hold {SIGNATURE_BYTES} bytes, got {len(signature)}")
    if base64.b64encode(signature).decode("ascii") != value:
        raise _Malformed("field 'sig' must be standard base64 with padding")
    return signature


def _key_set_problem(present: set[str], expected: frozenset[str]) -> str:
    parts = []
    if missing := sorted(expected - present):
        parts.append("missing field" + ("s " if len(missing) > 1 else " ") + ", ".join(missing))
    if extra := sorted(present - expected):
        parts.append("unknown field" + ("s " if len(extra) > 1 else " ") + ", ".join(_show(k) for k in extra[:5]))
    return "; ".join(parts)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
