"""`edgeagent demo --scenario approval`: a recommendation raised by a simple rule, confirmed with a key
made for the demo, executed and completed on the HIL plant; one forged and one replayed confirmation
are refused; the audit log in the state directory verifies at the end.

The rule: once the plant is up, "charge the battery at 20 kW for 10 s". The operator's key is
generated into `<state dir>/demo-keys-<time>/` and only its public half goes into the demo config's
trust store, as on a real node. The forged confirmation is signed by another key under the
operator's key id (`bad_signature`); the replay sends the accepted confirmation again (`replayed`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.daemon import Daemon
from edgeagent.decisions.audit_verify import verify
from edgeagent.decisions.keys_cli import keygen, sign_command
from edgeagent.decisions.recommendation import Evidence, Proposer, SetpointAction, State

SCENARIO = "approval"
PLANT_SCENARIO = "sunny-day"
OPERATOR = "demo-operator"
CHARGE_W = -20_000.0  # WSet < 0 charges
CHARGE_S = 10.0
RULE = Proposer("rule", "demo-charge-when-cheap", "1")


@dataclass
class ApprovalDemo:
    state_dir: Path
    key_dir: Path
    public_b64: str
    rec_ids: list[str] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    note: str = ""

    @classmethod
    def create(cls, state_dir: Path) -> ApprovalDemo:
        key_dir = state_dir / f"demo-keys-{time.strftime('%Y%m%dT%H%M%S')}-{time.monotonic_ns() % 10_000:04d}"
        _, public_b64 = keygen(key_dir, OPERATOR)
        return cls(state_dir, key_dir, public_b64)

    def config_toml(self) -> str:
        return (f'\n[[trust.keys]]\nid = "{OPERATOR}"\nname = "Demo Operator"\nroles = ["operator"]\n'
                f'public_key = "{self.public_b64}"\n')

    async def drive(self, daemon: Daemon) -> None:
        """Raise, forge, confirm, replay; then let the cycle execute it."""
        deadline = time.monotonic() + 20.0
        while not all(d.online for d in daemon.devices.values()) or daemon.decisions.head is None:
            if time.monotonic() > deadline:
                self.note = "the plant's devices did not come online: nothing was proposed"
                return
            await asyncio.sleep(0.2)
        snap = daemon.image.snapshot()
        soc = snap.value("bess.SoC")
        figures: dict[str, float | str] = {"soc_pct": float(soc) if isinstance(soc, int | float) else "unknown"}
        window = hashlib.sha256(repr(sorted((n, v.value) for n, v in snap.items())).encode()).hexdigest()
        rec = daemon.decisions.propose(
            key="bess.charge_when_cheap", proposer=RULE, evidence=Evidence(figures, window),
            rationale=f"energy is cheap now: charge the battery at {-CHARGE_W / 1000:g} kW for {CHARGE_S:g} s",
            actions=[SetpointAction("bess", "WSet", CHARGE_W, CHARGE_S)])
        self.rec_ids.append(rec.id)
        node = daemon.cfg.site.node_id
        forger = self.key_dir / "forger"
        keygen(forger, OPERATOR)  # a key the node does not trust, under the operator's id
        forged = sign_command(forger / f"{OPERATOR}.key", node, "confirm", rec.id, {}, 60.0, OPERATOR)
        confirm = sign_command(self.key_dir / f"{OPERATOR}.key", node, "confirm", rec.id, {}, 60.0, OPERATOR)
        for message, via in ((forged, "demo: forged confirmation"), (confirm, "demo: operator"),
                             (confirm, "demo: replayed confirmation")):
            outcome = await daemon.decisions.handle_signed_async(message, via)
            if outcome.accepted:
                self.accepted += 1
            else:
                self.refusals.append({"reason": outcome.code, "detail": outcome.detail, "via": via})
            await asyncio.sleep(0.2)

    def report(self, daemon: Daemon) -> tuple[dict[str, Any], list[tuple[str, bool, str]]]:
        """Summary fields and checks; call after the daemon stopped (the audit log is closed)."""
        recs = []
        for rec_id in self.rec_ids:
            state = daemon.decisions.engine.state(rec_id)
            recs.append({"id": rec_id, "state": state.value if state else "unknown"})
        reasons = sorted(str(r["reason"]) for r in self.refusals)
        held_s = _plant_held_s(self.state_dir / "plant-trace.jsonl")
        audit = verify(self.state_dir)
        done = [r for r in recs if r["state"] == State.COMPLETED.value]
        checks = [
            ("recommendation_completed", len(done) == 1 and len(recs) == 1,
             self.note or ", ".join(f"{r['id']}: {r['state']}" for r in recs) or "none proposed"),
            ("executed_on_plant", held_s >= 0.8 * CHARGE_S,
             f"the plant held a {CHARGE_W:g} W battery setpoint for {held_s:.1f} s (asked {CHARGE_S:g} s)"),
            ("forged_and_replayed_refused", reasons == ["bad_signature", "replayed"] and self.accepted == 1,
             f"refusals {reasons}, accepted {self.accepted}"),
            ("audit_log_verifies", audit.ok, f"{audit.records} records, head seq {audit.last_seq}"
             if audit.ok else f"{audit.problem} ({audit.problem_file}:{audit.problem_line})"),
        ]
        summary = {"recommendations": recs, "refusals": self.refusals,
                   "audit": {"ok": audit.ok, "records": audit.records, "head_seq": audit.last_seq,
                             "head_sha256": audit.head_hash}}
        return summary, checks


def _plant_held_s(trace: Path) -> float:
    """How long the plant's own trace shows the charge setpoint (the plant's view, not the daemon's)."""
    times: list[float] = []
    try:
        lines = trace.read_text(encoding="utf-8").splitlines()
    except OSError:
        return 0.0
    for line in lines:
        try:
            row = json.loads(line)
            if abs(float(row["bess_setpoint_w"]) - CHARGE_W) < 1.0:
                times.append(float(row["t_mono"]))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line
    return max(times) - min(times) if times else 0.0


__all__ = ["PLANT_SCENARIO", "SCENARIO", "ApprovalDemo"]
