"""Inbound commands: untrusted bytes from the broker → a validated `InboundCommand`, or a reason.

Everything on `.../cmd/#` is parsed strictly: size limit first (before parsing), UTF-8, JSON with
no NaN/Infinity and no duplicate keys, the `edgeagent.command/1` envelope with exact types, the
topic's last level equal to `command`, and `node` equal to this node. Whatever fails is refused
with a precise reason, which the uplink publishes; nothing here raises on bad input.
What a command *means* belongs to a handler (the decisions issue brings signed commands).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeagent.uplink.messages import COMMAND_SCHEMA

MAX_COMMAND_BYTES = 64 * 1024
SIGNED_COMMAND = "decision"
"""`cmd/decision`: the payload is a signed command itself (`edgeagent.decisions.signed`), not an
`edgeagent.command/1` envelope; its signature is its authority, so it needs no envelope around it."""
_COMMAND_RE = re.compile(r"[a-z][a-z0-9_\-]{0,63}")
_ISO_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
_REQUIRED = {"schema": str, "command_id": str, "node": str, "command": str, "args": dict}
_OPTIONAL = {"issued_at": str, "expires_at": str, "key_id": str, "nonce": str, "signature": str}


@dataclass(frozen=True, slots=True)
class InboundCommand:
    topic: str
    command_id: str
    command: str
    args: Mapping[str, Any]
    envelope: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: str
    command_id: str | None = None


CommandHandler = Callable[[InboundCommand], str | None]
"""Acts on a valid command; returns None when accepted, or the reason it is refused."""

SignedHandler = Callable[[bytes, str], object]
"""Takes the raw payload of `cmd/decision` and where it came from; publishes its own outcome."""


def is_signed_command(topic: str, cmd_prefix: str) -> bool:
    return topic == cmd_prefix + SIGNED_COMMAND


class _Duplicate(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_command(topic: str, payload: bytes, cmd_prefix: str, node: str) -> InboundCommand | Refusal:
    if len(payload) > MAX_COMMAND_BYTES:
        return Refusal(f"payload of {len(payload)} bytes exceeds the limit of {MAX_COMMAND_BYTES} bytes")
    if not topic.startswith(cmd_prefix) or not _COMMAND_RE.fullmatch(topic[len(cmd_prefix):]):
        return Refusal(f"topic {topic!r} is not {cmd_prefix}COMMAND with a lower-case command name")
    try:
        text = payload.decode("utf-8")
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        return Refusal(f"payload is not UTF-8 (byte {exc.start})")
    except _Duplicate as exc:
        return Refusal(f"payload has a {exc}")
    except (json.JSONDecodeError, ValueError, RecursionError) as exc:
        return Refusal(f"payload is not valid JSON: {exc}")
    if not isinstance(doc, dict):
        return Refusal(f"payload must be a JSON object, not {type(doc).__name__}")
    command_id = doc.get("command_id") if isinstance(doc.get("command_id"), str) else None
    reason = _envelope_problem(doc, topic[len(cmd_prefix):], node)
    if reason:
        return Refusal(reason, command_id)
    assert command_id is not None
    return InboundCommand(topic, command_id, doc["command"], doc["args"], doc)


def _envelope_problem(doc: dict[str, Any], topic_command: str, node: str) -> str | None:
    for key, kind in _REQUIRED.items():
        if key not in doc:
            return f"missing key {key!r}"
        if not isinstance(doc[key], kind):
            return f"{key} must be a {_kind_name(kind)}, got {type(doc[key]).__name__}"
    for key, kind in _OPTIONAL.items():
        if key in doc and not isinstance(doc[key], kind):
            return f"{key} must be a {_kind_name(kind)}, got {type(doc[key]).__name__}"
    unknown = sorted(set(doc) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        return f"unknown key {unknown[0]!r}"
    if doc["schema"] != COMMAND_SCHEMA:
        return f"schema must be {COMMAND_SCHEMA!r}, got {doc['schema']!r}"
    if not 1 <= len(doc["command_id"]) <= 128:
        return "command_id must be 1 to 128 characters"
    if doc["command"] != topic_command:
        return f"command {doc['command']!r} does not match the topic's {topic_command!r}"
    if doc["node"] != node:
        return f"command is for node {doc['node']!r}, this is {node!r}"
    for key in ("issued_at", "expires_at"):
        if key in doc and not _ISO_RE.fullmatch(doc[key]):
            return f"{key} must be an ISO 8601 UTC time like 2026-11-24T21:00:00Z"
    return None


def _kind_name(kind: type) -> str:
    return "string" if kind is str else "JSON object" if kind is dict else kind.__name__
