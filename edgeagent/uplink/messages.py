"""Topics and message payloads of the upstream namespace, version 1.

Topics: `edgeagent/v1/{site}/{node}/{kind}` with kind one of `state` (retained; birth and Will),
`telemetry`, `events`, `decisions` (recommendation transitions and the outcome of every signed
command), and `cmd/...` (inbound; `cmd/decision` carries a signed command as its whole payload). Every payload is a
JSON object with a `schema` field naming its JSON Schema (`edgeagent/uplink/schemas/`), the site
and node, times as ISO 8601 UTC, and units in every measurement.

Records are stored in the outbox without `id`; the publisher splices `"id"` (and
`"replayed": true` for records sent after an outage) in front of the stored object, so the
outbox never rewrites a payload and the id is the outbox's own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from edgeagent.image import PointView

NAMESPACE = "edgeagent/v1"
STATE_SCHEMA = "edgeagent.state/1"
TELEMETRY_SCHEMA = "edgeagent.telemetry/1"
EVENT_SCHEMA = "edgeagent.event/1"
COMMAND_SCHEMA = "edgeagent.command/1"
REJECTION_SCHEMA = "edgeagent.command_rejected/1"
DECISION_SCHEMA = "edgeagent.decision/1"
DECISIONS_TOPIC = "decisions"


def iso(t_wall: float) -> str:
    """Unix seconds → ISO 8601 UTC with milliseconds, e.g. 2026-11-24T21:50:18.228Z."""
    return datetime.fromtimestamp(t_wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class Topics:
    def __init__(self, site: str, node: str) -> None:
        self.base = f"{NAMESPACE}/{site}/{node}"
        self.state = f"{self.base}/state"
        self.cmd_filter = f"{self.base}/cmd/#"
        self.cmd_prefix = f"{self.base}/cmd/"

    def of(self, kind: str) -> str:
        return f"{self.base}/{kind}"


def frame(stored: bytes, record_id: int, replayed: bool) -> bytes:
    """The wire payload of a stored record: `{"id":N,["replayed":true,]...rest}`."""
    head = b'{"id":%d,' % record_id
    if replayed:
        head += b'"replayed":true,'
    rest = stored[1:]
    return head + rest if rest != b"}" else head[:-1] + b"}"


def birth(site: str, node: str, version: str, config_sha256: str, started_wall: float,
          models: Mapping[str, str], audit_head: tuple[int, str] | None = None) -> bytes:
    """`audit_head` (seq, sha256) is the audit chain's last record: upstream keeps it, so a chain later
    cut short or edited on the box no longer reaches a head it published."""
    now = time.time()
    doc: dict[str, Any] = {
        "schema": STATE_SCHEMA, "site": site, "node": node, "status": "online", "ts": iso(now),
        "version": version, "config_sha256": config_sha256, "models": dict(models),
        "started_at": iso(started_wall), "uptime_s": round(now - started_wall, 3),
    }
    if audit_head is not None:
        doc["audit_head"] = {"seq": audit_head[0], "sha256": audit_head[1]}
    return dumps(doc)


def will(site: str, node: str) -> bytes:
    """Published by the broker when we vanish without a goodbye (retained, like the birth)."""
    return dumps({"schema": STATE_SCHEMA, "site": site, "node": node, "status": "offline",
                  "reason": "connection lost"})


def goodbye(site: str, node: str) -> bytes:
    return dumps({"schema": STATE_SCHEMA, "site": site, "node": node, "status": "offline",
                  "reason": "shutdown", "ts": iso(time.time())})


def telemetry(site: str, node: str, kind: str, points: Sequence[tuple[str, PointView]]) -> bytes:
    """`kind` is "change" (report by exception) or "integrity" (every point, periodically)."""
    return dumps({
        "schema": TELEMETRY_SCHEMA, "site": site, "node": node, "kind": kind, "ts": iso(time.time()),
        "points": [_point(name, view) for name, view in points],
    })


def _point(name: str, view: PointView) -> dict[str, Any]:
    value = view.value
    if isinstance(value, float) and value != value:  # NaN is not JSON
        value = None
    out: dict[str, Any] = {"point": name, "value": value, "unit": view.sample.unit,
                           "quality": view.quality.value, "ts": iso(view.sample.t_wall)}
    if view.sample.reason:
        out["reason"] = view.sample.reason
    return out


def event(site: str, node: str, name: str, severity: str, data: Mapping[str, Any]) -> bytes:
    return dumps({"schema": EVENT_SCHEMA, "site": site, "node": node, "event": name,
                  "severity": severity, "ts": iso(time.time()), "data": dict(data)})


def rejection(site: str, node: str, topic: str, reason: str, command_id: str | None) -> bytes:
    return dumps({"schema": REJECTION_SCHEMA, "site": site, "node": node, "ts": iso(time.time()),
                  "topic": topic, "command_id": command_id, "reason": reason})


def decision_transition(site: str, node: str, rec_id: str, from_state: str | None, to_state: str, t_wall: float,
                        by: str, reason: str, recommendation: Mapping[str, Any] | None = None) -> bytes:
    """One recommendation state change (decision lane). The creation (`from` null, `to` proposed)
    carries the whole recommendation, so a consumer can show it to an operator."""
    doc: dict[str, Any] = {"schema": DECISION_SCHEMA, "site": site, "node": node, "ts": iso(t_wall),
                           "kind": "transition", "recommendation_id": rec_id, "from": from_state, "to": to_state,
                           "by": by, "reason": reason}
    if recommendation is not None:
        doc["recommendation"] = dict(recommendation)
    return dumps(doc)


def decision_command(site: str, node: str, *, via: str, accepted: bool, reason: str | None, detail: str,
                     action: str | None, target: str | None, key_id: str | None, nonce: str | None) -> bytes:
    """The outcome of one signed command (decision lane): accepted, or refused with its reason code."""
    return dumps({"schema": DECISION_SCHEMA, "site": site, "node": node, "ts": iso(time.time()), "kind": "command",
                  "via": via, "accepted": accepted, "reason": reason, "detail": detail, "action": action,
                  "target": target, "key_id": key_id, "nonce": nonce})
