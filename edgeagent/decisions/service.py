"""The decisions service: signed commands in, recommendations through their lifecycle, all of it audited.

It owns the audit log (`<state_dir>/audit/`), the nonce store, the verifier, the `Decisions` engine and
its `ActionPhase` (the cycle's approved-actions phase). Everything that happens is turned into an
audit record *queued* in memory, because much of it happens inside the scan cycle (transitions,
setpoint writes, trips), which must never wait for a disk; one task (`run`) writes the queue in order
with `append_async`. The same facts go on the uplink's decision lane without awaiting.

What is audited: the config load (sha256, trusted keys) at start, every command received (accepted or
refused, with the reason code and the sha256 of the exact bytes), every recommendation transition
(creation with the whole recommendation), interlock events and export-limit changes, and every
setpoint the arbiter handed to a device, with the origin that asked for it (a refresh of the same
value for the same origin is not repeated).

Nothing executes unrecorded: while the audit log or the nonce store cannot be used, every command is
refused (`audit_fault`, `nonce_store_fault`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from edgeagent.config_decisions import DecisionsConfig
from edgeagent.cycle import CycleRecord
from edgeagent.decisions import service_records as records
from edgeagent.decisions.audit import AuditDataError, AuditError, AuditLog
from edgeagent.decisions.engine import ActionPhase, Decisions
from edgeagent.decisions.nonces import NonceStore
from edgeagent.decisions.recommendation import Action as RecAction
from edgeagent.decisions.recommendation import Evidence, Proposer, Recommendation, Transition
from edgeagent.decisions.signed import Action, Command, Reason
from edgeagent.decisions.trust import TrustedKey, TrustStore
from edgeagent.decisions.verify import Accepted, Refusal, Verifier
from edgeagent.image import Snapshot
from edgeagent.safety_wiring import EventSink, SafetyPhases
from edgeagent.uplink import messages

log = structlog.get_logger("edgeagent.decisions")

REFUSED_BY_SAFETY = "refused_by_safety"
"""Authenticated, but the safety layer said no: a limit outside the contract, a trip that cannot be reset."""
NOT_CONFIGURED = "not_configured"
"""Authenticated, but this node has no export limiter / no interlocks to act on."""
AUDIT_FAULT = "audit_fault"
"""The audit log cannot be written: nothing executes unrecorded."""

SERVICE_REASONS: Mapping[str, str] = {
    REFUSED_BY_SAFETY: "the safety layer refused it (limit outside the contract, trip not resettable now)",
    NOT_CONFIGURED: "this node has nothing the command could act on (no export limiter, no interlocks)",
    AUDIT_FAULT: "the audit log cannot be written: nothing executes unrecorded",
}
LAST_ID_FILE = "decisions-last-id"
CONTROLLER_PREFIX = "controller:"
CONTROLLER_AUDIT_EVERY_S = 60.0
_ID_RE = re.compile(r"rec-\d{8}-\d{4,}")

Publish = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one signed command. `code` is None when accepted, else a `Reason` value or
    one of `SERVICE_REASONS`. `state` is the recommendation's state afterwards (confirm, reject)."""

    accepted: bool
    code: str | None
    detail: str
    command: Command | None = None
    key: TrustedKey | None = None
    state: str | None = None


def _no_envelope(key: tuple[str, str], snapshot: Snapshot) -> tuple[float, float]:
    raise KeyError(key)


def _no_trips() -> Collection[str]:
    return frozenset()


class DecisionService:
    def __init__(self, *, site: str, node: str, state_dir: Path, trust: TrustStore, cfg: DecisionsConfig,
                 safety: SafetyPhases, device_online: Callable[[str], bool], config_path: str = "",
                 config_sha256: str = "", clock: Callable[[], float] = time.time, audit_fsync: bool = True) -> None:
        self.site, self.node = site, node
        self.state_dir = Path(state_dir)
        self.trust = trust
        self.cfg = cfg
        self.safety = safety
        self.clock = clock
        self.publish: Publish | None = None
        """Where decision-lane records go (the uplink's `emit_decision`); must not block."""
        self.emit_event: EventSink | None = None
        """Where the periodic `audit.head` event goes (the uplink's `emit_event`)."""
        self.audit: AuditLog | None = None
        self.nonces: NonceStore | None = None
        self.verifier: Verifier | None = None
        self.fault: str | None = "not started"
        self.audit_failures = 0
        self._audit_fsync = audit_fsync
        self._queue: deque[tuple[str, dict[str, Any]]] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._inbound: deque[tuple[bytes, str]] = deque()  # signed commands from the MQTT callback
        self._written: dict[tuple[str, str], tuple[float, str, float]] = {}  # value, origin, t_mono recorded
        self._queue_audit("config.loaded", {
            "path": config_path, "sha256": config_sha256, "node": node, "site": site,
            "trusted_keys": [{"id": k.key_id, "name": k.name, "roles": sorted(k.roles), "sha256": k.fingerprint}
                             for k in trust],
        })
        self.engine = Decisions(clock, self._on_transition, on_update=self._on_update,
                                resume_after=self._last_id())
        arbiter, interlocks = safety.arbiter, safety.interlocks
        self.phase = ActionPhase(self.engine, arbiter.envelope if arbiter is not None else _no_envelope,
                                 interlocks.active if interlocks is not None else _no_trips, device_online)
        safety.listeners.append(self._on_safety_event)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open the audit log and the nonce store (in a thread: both touch the disk). A failure is kept
        as `fault` and logged; commands are then refused, the rest of the daemon runs on."""
        try:
            self.audit = await asyncio.to_thread(AuditLog, self.state_dir / "audit",
                                                 max_bytes=self.cfg.audit_max_bytes, fsync=self._audit_fsync)
        except (AuditError, OSError, ValueError) as exc:
            self.fault = f"the audit log in {self.state_dir / 'audit'} cannot be used: {exc}"
            log.error("decisions.audit_fault", error=self.fault)
        self.nonces = await asyncio.to_thread(NonceStore.in_state_dir, self.state_dir)
        self.verifier = Verifier(self.node, self.trust, self.nonces, self.clock, self.cfg.clock_skew_s,
                                 self.cfg.max_lifetime_s)
        if self.audit is not None:
            self.fault = None
        self._wake.set()

    def request_stop(self) -> None:
        """`run` writes what is queued, then closes the audit log and the nonce store."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Write queued audit records in order; expire recommendations; publish the chain head."""
        next_head = time.monotonic()
        try:
            while True:
                while self._inbound:
                    raw, via = self._inbound.popleft()
                    await self.handle_signed_async(raw, via)
                while self._queue:
                    kind, data = self._queue.popleft()
                    await self._write(kind, data)
                if self._stopping:
                    break
                self.engine.expire()
                if time.monotonic() >= next_head:
                    next_head = time.monotonic() + self.cfg.audit_head_every_s
                    self._publish_head()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._wake.wait()
        finally:
            self.close()

    def close(self) -> None:
        if self.audit is not None:
            self.audit.close()
        if self.nonces is not None:
            self.nonces.close()
        self.fault = self.fault or "stopped"

    @property
    def head(self) -> tuple[int, str] | None:
        return self.audit.head if self.audit is not None else None

    # -- commands -----------------------------------------------------------------------------------

    def handle_signed(self, raw: bytes, via: str) -> Outcome:
        """Verify and execute one signed command; audit and publish the outcome. Never raises.
        Blocking: the nonce store commits to disk. The daemon uses `handle_signed_async`."""
        if self.verifier is None or self.fault is not None:
            return self._finish(raw, via, None)
        return self._finish(raw, via, self.verifier.check(bytes(raw)))

    async def handle_signed_async(self, raw: bytes, via: str) -> Outcome:
        """The same, with the verification (signature, durable nonce commit) off the event loop, so
        the scan cycle never waits for the disk; execution stays on the loop, between two cycles."""
        if self.verifier is None or self.fault is not None:
            return self._finish(raw, via, None)
        checked = await asyncio.to_thread(self.verifier.check, bytes(raw))
        return self._finish(raw, via, checked)

    def submit_signed(self, raw: bytes, via: str) -> None:
        """For synchronous callers (the MQTT callback): queue the command; `run()` handles it."""
        self._inbound.append((bytes(raw), via))
        self._wake.set()

    def _finish(self, raw: bytes, via: str, checked: Accepted | Refusal | None) -> Outcome:
        if checked is None or self.fault is not None:
            outcome = Outcome(False, AUDIT_FAULT, self.fault or "the decisions service is not open")
        elif isinstance(checked, Refusal):
            outcome = Outcome(False, checked.code.value, checked.detail, checked.command)
        else:
            outcome = self._execute(checked)
        cmd = outcome.command
        data = {"via": via, "accepted": outcome.accepted, "reason": outcome.code, "detail": outcome.detail,
                **records.command(cmd, bytes(raw))}
        if outcome.key is not None:
            data.update(key_name=outcome.key.name, key_sha256=outcome.key.fingerprint)
        self._queue_audit("command.received", data)
        self._send(messages.decision_command(
            self.site, self.node, via=via, accepted=outcome.accepted, reason=outcome.code, detail=outcome.detail,
            action=cmd.action.value if cmd else None, target=cmd.target if cmd else None,
            key_id=cmd.key_id if cmd else None, nonce=cmd.nonce if cmd else None))
        (log.info if outcome.accepted else log.warning)(
            "decisions.command", via=via, accepted=outcome.accepted, reason=outcome.code, detail=outcome.detail,
            action=cmd.action.value if cmd else None, target=cmd.target if cmd else None)
        return outcome

    def _execute(self, accepted: Accepted) -> Outcome:
        cmd, key = accepted.command, accepted.key

        def result(why: str | None, code: str, done: str, state: str | None = None) -> Outcome:
            if why is None:
                return Outcome(True, None, done, cmd, key, state)
            return Outcome(False, code, why, cmd, key)

        if cmd.action in (Action.CONFIRM, Action.REJECT):
            if cmd.action is Action.CONFIRM:
                code = self.engine.confirm(cmd.target, key.key_id)
            else:
                code = self.engine.reject(cmd.target, key.key_id, str(cmd.args.get("reason", "")))
            state = self.engine.state(cmd.target)
            detail = (f"no recommendation {cmd.target!r} on this node" if code == Reason.UNKNOWN_RECOMMENDATION
                      else f"{cmd.target} is {state.value if state else 'closed'}: it can no longer be decided")
            return Outcome(code is None, code, f"{cmd.action.value}ed by {key.name}" if code is None else detail,
                           cmd, key, state.value if state else None)
        if cmd.action in (Action.SET_EXPORT_LIMIT, Action.CLEAR_EXPORT_LIMIT):
            limiter = self.safety.export_limit
            if limiter is None:
                return Outcome(False, NOT_CONFIGURED, "no [export_limit] is configured on this node", cmd, key)
            if cmd.action is Action.CLEAR_EXPORT_LIMIT:
                limiter.clear_limit()
                return Outcome(True, None, f"run-time export limit cleared by {key.name}", cmd, key)
            limit_kw = float(cmd.args["limit_kw"])
            return result(limiter.set_limit(limit_kw, self.clock()), REFUSED_BY_SAFETY,
                          f"export limit {limit_kw:g} kW set by {key.name}")
        interlocks = self.safety.interlocks
        if interlocks is None:
            return Outcome(False, NOT_CONFIGURED, "no interlocks are configured on this node", cmd, key)
        why = interlocks.reset(cmd.target, by=f"{key.name} (key {key.key_id})")
        return result(None if why is None else f"{cmd.target}: {why}", REFUSED_BY_SAFETY,
                      f"{cmd.target} reset by {key.name}")

    # -- recommendations ----------------------------------------------------------------------------

    def propose(self, *, key: str, proposer: Proposer, evidence: Evidence, rationale: str,
                actions: Sequence[RecAction], ttl_s: float | None = None) -> Recommendation:
        """For rules and models: raise (or fold into) a recommendation; see `Decisions.propose`."""
        return self.engine.propose(key=key, proposer=proposer, evidence=evidence, rationale=rationale,
                                   actions=actions, ttl_s=ttl_s if ttl_s is not None else self.cfg.recommendation_ttl_s)

    def recommendations(self) -> list[dict[str, Any]]:
        """Open (waiting for a decision) and active (confirmed, executing) ones, JSON-ready."""
        out = [{**records.recommendation(r), "state": "proposed"} for r in self.engine.open()]
        for rec in self.engine.active():
            state = self.engine.state(rec.id)
            out.append({**records.recommendation(rec), "state": state.value if state else "?"})
        return out

    def _on_transition(self, tr: Transition, rec: Recommendation) -> None:
        whole = records.recommendation(rec) if tr.from_state is None else None
        frm = tr.from_state.value if tr.from_state is not None else None
        if whole is not None:
            self._queue_audit("recommendation.proposed", {**whole, "by": tr.by, "reason": tr.reason})
        else:
            self._queue_audit("recommendation.transition", {"id": tr.rec_id, "from": frm, "to": tr.to_state.value,
                                                            "by": tr.by, "reason": tr.reason})
        self._send(messages.decision_transition(self.site, self.node, tr.rec_id, frm, tr.to_state.value, tr.t_wall,
                                                tr.by, tr.reason, whole))
        log.info("decisions.transition", id=tr.rec_id, frm=frm, to=tr.to_state.value, by=tr.by, reason=tr.reason)

    def _on_update(self, rec: Recommendation) -> None:
        self._queue_audit("recommendation.updated", {"id": rec.id, "expires_at": records.iso(rec.expires_at),
                                                     "evidence": records.recommendation(rec)["evidence"]})

    # -- what the cycle and the safety phases did ---------------------------------------------------

    def after_cycle(self, record: CycleRecord) -> None:
        """Queue an audit record for each setpoint handed to a device whose value or origin changed.

        A closed-loop controller moves its setpoint nearly every cycle; recording each move would
        fsync ten records a second and fill an SD card with a log nobody can read. So while the origin
        stays a controller, a setpoint is recorded when its origin changes and then at most once per
        `CONTROLLER_AUDIT_EVERY_S`; every write on behalf of a person (decision) or an interlock is
        recorded as it happens."""
        for c in record.commands:
            key = (c.device, c.point)
            last = self._written.get(key)
            if last is not None and last[0] == c.value and last[1] == c.origin:
                continue
            if (last is not None and last[1] == c.origin and c.origin.startswith(CONTROLLER_PREFIX)
                    and record.t_mono - last[2] < CONTROLLER_AUDIT_EVERY_S):
                continue
            self._written[key] = (c.value, c.origin, record.t_mono)
            self._queue_audit("setpoint.written", {"device": c.device, "point": c.point,
                                                   "value": records.plain(c.value), "origin": c.origin,
                                                   "reason": c.reason})

    def _on_safety_event(self, event: object) -> None:
        kind_data = records.safety_event(event)
        if kind_data is not None:
            self._queue_audit(*kind_data)

    # -- internals ----------------------------------------------------------------------------------

    def _queue_audit(self, kind: str, data: dict[str, Any]) -> None:
        self._queue.append((kind, data))
        self._wake.set()

    def _send(self, payload: bytes) -> None:
        if self.publish is not None:
            self.publish(payload)

    async def _write(self, kind: str, data: dict[str, Any]) -> None:
        if self.audit is None:
            self.audit_failures += 1
            return
        try:
            await self.audit.append_async(kind, data)
        except (AuditError, AuditDataError, OSError) as exc:
            self.audit_failures += 1
            if self.audit_failures == 1 or isinstance(exc, AuditError):
                log.error("decisions.audit_write_failed", kind=kind, error=str(exc))
            if isinstance(exc, AuditError):
                self.fault = f"the audit log cannot be written: {exc}"
            return
        if kind == "recommendation.proposed":
            await asyncio.to_thread(self._save_last_id, str(data["id"]))

    def _publish_head(self) -> None:
        head = self.head
        if head is None or self.emit_event is None:
            return
        self.emit_event("audit.head", "info", {"seq": head[0], "sha256": head[1]})

    def _last_id(self) -> str | None:
        """The last recommendation id issued before a restart, so ids never repeat (a signed confirm of
        an old id must not land on a new recommendation)."""
        try:
            text = (self.state_dir / LAST_ID_FILE).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return text if _ID_RE.fullmatch(text) else None

    def _save_last_id(self, rec_id: str) -> None:
        path = self.state_dir / LAST_ID_FILE
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_text(rec_id + "\n", encoding="ascii")
            os.replace(tmp, path)
        except OSError as exc:
            log.error("decisions.last_id_not_saved", path=str(path), error=str(exc))


__all__ = ["AUDIT_FAULT", "NOT_CONFIGURED", "REFUSED_BY_SAFETY", "SERVICE_REASONS", "DecisionService", "Outcome"]
