"""Plain-JSON forms of recommendations, commands and safety events, for the audit log and the uplink.

One place decides what a record says, so the audit line and the published message of the same
thing never drift apart.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from edgeagent.decisions.recommendation import Inspection, Recommendation, SetpointAction
from edgeagent.decisions.signed import Command, format_time
from edgeagent.safety.export_limit_types import LimitChanged
from edgeagent.safety.interlock_spec import InterlockEvent


def iso(t_wall: float) -> str:
    return datetime.fromtimestamp(t_wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plain(value: Any) -> Any:
    """JSON-ready: enums by value, non-finite numbers as None, mappings and sequences copied."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [plain(v) for v in value]
    return value


def recommendation(rec: Recommendation) -> dict[str, Any]:
    actions: list[dict[str, Any]] = []
    for action in rec.actions:
        if isinstance(action, SetpointAction):
            actions.append({"type": "setpoint", "device": action.device, "point": action.point,
                            "value": action.value, "duration_s": action.duration_s})
        elif isinstance(action, Inspection):
            actions.append({"type": "inspection", "text": action.text})
    p = rec.proposer
    return {
        "id": rec.id, "key": rec.key,
        "proposer": {"kind": p.kind, "name": p.name, "version": p.version, "sha256": p.sha256},
        "evidence": {"figures": plain(rec.evidence.figures), "input_sha256": rec.evidence.input_sha256},
        "rationale": rec.rationale, "actions": actions,
        "created_at": iso(rec.created_at), "expires_at": iso(rec.expires_at),
    }


def command(cmd: Command | None, raw: bytes) -> dict[str, Any]:
    """What the audit keeps of a received command: its fields (as claimed) and the hash of the exact bytes."""
    out: dict[str, Any] = {"message_sha256": hashlib.sha256(raw).hexdigest(), "message_bytes": len(raw)}
    if cmd is not None:
        out.update(action=cmd.action.value, target=cmd.target, args=plain(cmd.args), key_id=cmd.key_id,
                   node=cmd.node, issued_at=format_time(cmd.issued_at), expires_at=format_time(cmd.expires_at),
                   nonce=cmd.nonce)
    return out


def safety_event(event: object) -> tuple[str, dict[str, Any]] | None:
    """(audit kind, data) for the safety events the audit keeps: interlock events and limit changes."""
    if isinstance(event, InterlockEvent):
        return event.name, {"interlock": event.interlock, "values": plain(event.values), "reason": event.reason}
    if isinstance(event, LimitChanged):
        return "export_limit.limit_changed", plain(dataclasses.asdict(event))
    return None


__all__ = ["command", "iso", "plain", "recommendation", "safety_event"]
