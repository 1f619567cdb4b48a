"""DecisionService end to end without a daemon: every refusal reason, replay after a restart,
execution of each action, publication of each outcome, and an audit log that verifies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edgeagent import config, safety_wiring
from edgeagent.cycle import Command, CycleRecord
from edgeagent.decisions.audit_verify import verify
from edgeagent.decisions.recommendation import Evidence, Proposer, SetpointAction
from edgeagent.decisions.service import DecisionService
from tests.decisions.service_helpers import EXPORT_TOML, NODE, SAFETY_TOML, T0, signed, trust_toml

RULE = Proposer("rule", "test-rule", "1")
EVIDENCE = Evidence({"soc_pct": 40.0}, "0" * 64)


class Harness:
    def __init__(self, state: Path, with_export: bool = True) -> None:
        text = SAFETY_TOML.format(state=state, port=1) + (EXPORT_TOML if with_export else "") + trust_toml()
        self.cfg = config.parse(text)
        self.safety = safety_wiring.build(self.cfg.safety)
        self.now = T0 + 10
        self.published: list[dict[str, Any]] = []
        self.service = DecisionService(site="t", node=NODE, state_dir=state, trust=self.cfg.trust,
                                       cfg=self.cfg.decisions, safety=self.safety, device_online=lambda d: True,
                                       config_path="test.toml", config_sha256=self.cfg.sha256,
                                       clock=lambda: self.now, audit_fsync=False)
        self.service.publish = lambda payload: self.published.append(json.loads(payload))

    def propose(self, key: str = "charge", value: float = -20000.0) -> str:
        rec = self.service.propose(key=key, proposer=RULE, evidence=EVIDENCE, rationale="cheap energy now",
                                   actions=[SetpointAction("site", "bess_w", value, 10.0)])
        return rec.id


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Starts harnesses on tmp_path (one at a time); stops each at the end so the audit is flushed."""
    started: list[tuple[Harness, asyncio.Task[None]]] = []

    async def start(with_export: bool = True) -> Harness:
        h = Harness(tmp_path, with_export)
        await h.service.open()
        started.append((h, asyncio.create_task(h.service.run())))
        return h

    yield start
    for h, task in started:
        h.service.request_stop()
        await asyncio.wait_for(task, 5)


# (name, how to build the message from a harness (may set up state), the expected code)
CASES: list[tuple[str, Callable[[Harness], bytes], str]] = [
    ("malformed", lambda h: b'{"v": 1, "node": "n"}', "malformed"),
    ("not json", lambda h: b"\xff\xfe", "malformed"),
    ("unknown key", lambda h: signed("confirm", h.propose(), key="outsider"), "unknown_key"),
    ("bad signature", lambda h: signed("confirm", h.propose(), key="outsider", key_id="alice"), "bad_signature"),
    ("wrong node", lambda h: signed("confirm", h.propose(), node="other"), "wrong_node"),
    ("wrong role", lambda h: signed("confirm", h.propose(), key="disp"), "wrong_role"),
    ("not yet valid", lambda h: signed("confirm", h.propose(), issued=T0 + 10 + 31), "not_yet_valid"),
    ("expired", lambda h: signed("confirm", h.propose(), issued=T0 - 400, lifetime_s=300), "expired"),
    ("unknown recommendation", lambda h: signed("confirm", "rec-20270115-0099"), "unknown_recommendation"),
    ("limit outside contract", lambda h: signed("set_export_limit", "export_limit", key="disp",
                                                args={"limit_kw": 25.0}), "refused_by_safety"),
    ("reset of a trip that is not latched", lambda h: signed("reset_trip", "bess_overtemp", key="tech"),
     "refused_by_safety"),
]


@pytest.mark.parametrize(("name", "build", "code"), CASES, ids=[c[0] for c in CASES])
async def test_each_refusal_is_refused_audited_and_published(running: Any, tmp_path: Path, name: str,
                                                             build: Callable[[Harness], bytes], code: str) -> None:
    h = await running()
    raw = build(h)
    outcome = h.service.handle_signed(raw, "test")
    assert not outcome.accepted and outcome.code == code, outcome
    published = [m for m in h.published if m["kind"] == "command"]
    assert published[-1]["reason"] == code and published[-1]["accepted"] is False
    assert all(m["to"] == "proposed" for m in h.published if m["kind"] == "transition")  # nothing decided
    h.service.request_stop()
    await asyncio.sleep(0.2)
    result = verify(tmp_path)
    assert result.ok, result.problem
    audited = [json.loads(line) for f in sorted((tmp_path / "audit").glob("audit-*.jsonl"))
               for line in f.read_text().splitlines()]
    received = [r["data"] for r in audited if r["kind"] == "command.received"]
    assert received[-1]["reason"] == code and received[-1]["accepted"] is False


async def test_replayed_and_closed(running: Any) -> None:
    h = await running()
    rec_id = h.propose()
    confirm = signed("confirm", rec_id)
    assert h.service.handle_signed(confirm, "test").accepted
    assert h.service.handle_signed(confirm, "test").code == "replayed"
    assert h.service.handle_signed(signed("reject", rec_id), "test").code == "closed_recommendation"


async def test_replay_is_refused_after_a_restart_and_ids_do_not_repeat(running: Any) -> None:
    first = await running()
    rec_id = first.propose()
    confirm = signed("confirm", rec_id)
    assert first.service.handle_signed(confirm, "test").accepted
    first.service.request_stop()
    await asyncio.sleep(0.3)
    second = await running()
    assert second.service.handle_signed(confirm, "test").code == "replayed"
    assert second.propose() != rec_id


async def test_accepted_actions_execute(running: Any) -> None:
    h = await running()
    rec_id = h.propose()
    outcome = h.service.handle_signed(signed("confirm", rec_id), "test")
    assert outcome.accepted and outcome.state == "confirmed" and outcome.key is not None
    assert [r["id"] for r in h.service.recommendations()] == [rec_id]
    other = h.propose(key="other", value=-1000.0)
    assert h.service.handle_signed(signed("reject", other, args={"reason": "not now"}), "test").state == "rejected"
    limiter = h.safety.export_limit
    assert limiter is not None
    assert h.service.handle_signed(signed("set_export_limit", "export_limit", key="disp",
                                          args={"limit_kw": 15.0}), "test").accepted
    assert limiter.override is not None and limiter.override.limit_kw == 15.0
    assert h.service.handle_signed(signed("clear_export_limit", "export_limit", key="disp"), "test").accepted
    assert limiter.override is None
    states = [(m["recommendation_id"], m["to"]) for m in h.published if m["kind"] == "transition"]
    assert states == [(rec_id, "proposed"), (rec_id, "confirmed"), (other, "proposed"), (other, "rejected")]


async def test_no_export_limiter_means_not_configured(running: Any) -> None:
    h = await running(with_export=False)
    msg = signed("set_export_limit", "export_limit", key="disp", args={"limit_kw": 5.0})
    assert h.service.handle_signed(msg, "test").code == "not_configured"


async def test_audit_records_config_command_transitions_and_writes(running: Any, tmp_path: Path) -> None:
    h = await running()
    rec_id = h.propose()
    h.service.handle_signed(signed("confirm", rec_id), "mqtt test")
    write = Command("site", "bess_w", -20000.0, f"decision:{rec_id}", "recommendation")
    h.service.after_cycle(CycleRecord(1.0, (write,), (write,)))
    h.service.after_cycle(CycleRecord(1.1, (write,), (write,)))  # a refresh of the same write: not repeated
    h.service.request_stop()
    await asyncio.sleep(0.3)
    result = verify(tmp_path)
    assert result.ok, result.problem
    audited = [json.loads(line) for line in sorted((tmp_path / "audit").glob("audit-*.jsonl"))[0]
               .read_text().splitlines()]
    kinds = [r["kind"] for r in audited]
    assert kinds[0] == "config.loaded" and audited[0]["data"]["sha256"] == h.cfg.sha256
    assert {k["id"] for k in audited[0]["data"]["trusted_keys"]} == {"alice", "disp", "tech"}
    assert kinds[1:] == ["recommendation.proposed", "recommendation.transition", "command.received",
                         "setpoint.written"]
    command = audited[3]["data"]
    assert command["accepted"] and command["key_id"] == "alice" and command["key_name"] == "Alice"
    assert command["via"] == "mqtt test"
    assert audited[4]["data"] == {"device": "site", "point": "bess_w", "value": -20000.0,
                                  "origin": f"decision:{rec_id}", "reason": "recommendation"}
    assert result.last_seq == len(audited) and h.service.head == (result.last_seq, result.head_hash)


async def test_a_controller_moving_every_cycle_is_sampled_and_every_other_write_recorded(
        running: Any, tmp_path: Path) -> None:
    h = await running()
    for i in range(100):  # 10 s of a controller nudging the battery every cycle
        move = Command("site", "bess_w", -1000.0 - i, "controller:export_limit", "normal")
        h.service.after_cycle(CycleRecord(i * 0.1, (move,), (move,)))
    late = Command("site", "bess_w", -3000.0, "controller:export_limit", "normal")
    h.service.after_cycle(CycleRecord(70.0, (late,), (late,)))  # a minute later: sampled again
    for i, origin in enumerate(("interlock:hot", "interlock:hot", "decision:rec-1")):
        cmd = Command("site", "bess_w", float(i), origin, "x")
        h.service.after_cycle(CycleRecord(70.1 + i * 0.1, (cmd,), (cmd,)))
    h.service.request_stop()
    await asyncio.sleep(0.3)
    audited = [json.loads(line) for path in sorted((tmp_path / "audit").glob("audit-*.jsonl"))
               for line in path.read_text().splitlines()]
    writes = [(r["data"]["value"], r["data"]["origin"]) for r in audited if r["kind"] == "setpoint.written"]
    assert writes == [(-1000.0, "controller:export_limit"), (-3000.0, "controller:export_limit"),
                      (0.0, "interlock:hot"), (1.0, "interlock:hot"), (2.0, "decision:rec-1")]


async def test_nothing_executes_before_the_service_is_open(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    rec_id = h.propose()
    assert h.service.handle_signed(signed("confirm", rec_id), "test").code == "audit_fault"
