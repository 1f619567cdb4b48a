"""Recommendations: the state table, folding, refusals, and execution through the scan cycle.

The re-check tests use the repo's real Interlocks, Arbiter and ScanCycle: an action confirmed while
safe and executed after a trip must end `blocked`, and the cycle's write sink must not see it.
Time is synthetic: a fake wall clock for the engine, explicit t_mono for every cycle.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeagent.cycle import Command, ScanCycle
from edgeagent.decisions.engine import (
    CLOSED_RECOMMENDATION,
    UNKNOWN_RECOMMENDATION,
    ActionPhase,
    Decisions,
)
from edgeagent.decisions.recommendation import (
    CLOSED,
    TRANSITIONS,
    Action,
    Evidence,
    Inspection,
    Proposer,
    Recommendation,
    SetpointAction,
    State,
    Transition,
    allowed,
)
from edgeagent.image import PointSpec, ProcessImage, Quality, Sample, Snapshot
from edgeagent.safety.arbitration import Arbiter, Bound
from edgeagent.safety.interlocks import Condition, Interlocks, InterlockSpec, SafeBound, SafeSetpoint

T0 = 1_795_512_600.0  # 2026-11-24 09:30 UTC
RULE = Proposer("rule", "export_guard", "1.2")
MODEL = Proposer("model", "tx_thermal", "2.1.0", "ab" * 32)
EV = Evidence({"top_oil_c": 97.5, "trend": "rising"}, "0" * 64)
DISCHARGE = (SetpointAction("bess", "WSet", 40_000.0, 60.0),)
CHARGE = (SetpointAction("bess", "WSet", -30_000.0, 60.0),)
FANS = (Inspection("inspect cooling fans"),)
S = State


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Log:
    """Collects every on_transition call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Transition, Recommendation]] = []

    def __call__(self, transition: Transition, rec: Recommendation) -> None:
        assert transition.rec_id == rec.id
        self.calls.append((transition, rec))

    def moves(self, rec_id: str | None = None) -> list[tuple[State | None, State]]:
        return [(t.from_state, t.to_state) for t, _ in self.calls if rec_id in (None, t.rec_id)]


def engine(clock: Clock | None = None) -> tuple[Decisions, Log, Clock]:
    log, clk = Log(), clock or Clock()
    return Decisions(clk, log), log, clk


def propose(d: Decisions, key: str = "export.over_limit", actions: tuple[Action, ...] = DISCHARGE,
            ttl_s: float = 300.0, evidence: Evidence = EV) -> Recommendation:
    return d.propose(key=key, proposer=RULE, evidence=evidence, rationale="export above the limit for 5 min",
                     actions=actions, ttl_s=ttl_s)


def snap(t_mono: float) -> Snapshot:
    return ProcessImage([]).snapshot(t_mono)


def phase(d: Decisions, lo_hi: tuple[float, float] = (-100_000.0, 100_000.0), trips: frozenset[str] = frozenset(),
          online: Callable[[str], bool] = lambda device: True) -> ActionPhase:
    def envelope(key: tuple[str, str], snapshot: Snapshot) -> tuple[float, float]:
        if key != ("bess", "WSet"):
            raise KeyError(key)
        return lo_hi

    return ActionPhase(d, envelope, lambda: trips, online)


# -- the table ------------------------------------------------------------------------------------

def test_table_is_the_issue_state_machine() -> None:
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[S.PROPOSED] == {S.CONFIRMED, S.REJECTED, S.EXPIRED, S.SUPERSEDED}
    assert TRANSITIONS[S.CONFIRMED] == {S.EXECUTING, S.COMPLETED, S.FAILED, S.BLOCKED}
    assert TRANSITIONS[S.EXECUTING] == {S.COMPLETED, S.FAILED, S.BLOCKED}
    assert {S.REJECTED, S.EXPIRED, S.SUPERSEDED, S.COMPLETED, S.FAILED, S.BLOCKED} == CLOSED
    assert [s for s in State if allowed(None, s)] == [S.PROPOSED]
    assert not allowed(S.EXPIRED, S.CONFIRMED) and not allowed(S.EXECUTING, S.PROPOSED)


def test_ids_are_readable_unique_and_resume_after_a_restart() -> None:
    d, _, clk = engine()
    first = propose(d, key="a")
    clk.t += 86_400
    second = propose(d, key="b")
    assert (first.id, second.id) == ("rec-20261124-0001", "rec-20261125-0002")
    resumed = Decisions(clk, Log(), resume_after="rec-20261125-0007")
    assert propose(resumed).id == "rec-20261125-0008"
    with pytest.raises(ValueError, match="resume_after"):
        Decisions(clk, Log(), resume_after="rec-7")


def test_lifecycle_reports_each_transition_once_with_who_and_when() -> None:
    d, log, clk = engine()
    rec = propose(d)
    clk.t += 10
    assert d.confirm(rec.id, "key:alice-2026") is None
    ph = phase(d)
    for k in range(70):  # 60 s duration, one cycle per second
        ph(snap(1000.0 + k), ())
    assert log.moves() == [(None, S.PROPOSED), (S.PROPOSED, S.CONFIRMED), (S.CONFIRMED, S.EXECUTING),
                           (S.EXECUTING, S.COMPLETED)]
    assert [t.by for t, _ in log.calls] == ["system", "key:alice-2026", "system", "system"]
    assert log.calls[1][0].t_wall == T0 + 10
    assert d.state(rec.id) is S.COMPLETED and d.active() == () and d.open() == ()


@pytest.mark.parametrize("target", [S.CONFIRMED, S.EXECUTING, S.REJECTED, S.EXPIRED, S.SUPERSEDED, S.COMPLETED,
                                    S.FAILED, S.BLOCKED])
def test_only_proposed_can_be_confirmed_or_rejected(target: State) -> None:
    d, log, clk = engine()
    rec = propose(d)
    if target is S.SUPERSEDED:
        propose(d, actions=CHARGE)
    elif target is S.EXPIRED:
        clk.t += 300
    elif target is S.REJECTED:
        assert d.reject(rec.id, "bob", "not now") is None
    else:
        assert d.confirm(rec.id, "alice") is None
        lo_hi = (0.0, 0.0) if target is S.BLOCKED else (-1e5, 1e5)
        ph = phase(d, lo_hi, online=lambda device: target is not S.FAILED)
        if target is not S.CONFIRMED:
            ph(snap(0.0), ())
        if target is S.COMPLETED:
            ph(snap(60.0), ())
    assert d.confirm(rec.id, "alice") == CLOSED_RECOMMENDATION
    assert d.reject(rec.id, "alice") == CLOSED_RECOMMENDATION
    assert d.state(rec.id) is target
    assert log.moves(rec.id)[-1][1] is target  # the refusals moved nothing
    assert d.confirm("rec-20261124-9999", "alice") == UNKNOWN_RECOMMENDATION
    assert d.reject("rec-20261124-9999", "alice") == UNKNOWN_RECOMMENDATION


def test_an_expired_recommendation_cannot_be_confirmed() -> None:
    d, log, clk = engine()
    rec = propose(d, ttl_s=60)
    clk.t += 59.9
    assert d.expire() == ()
    clk.t += 0.1
    assert d.confirm(rec.id, "alice") == CLOSED_RECOMMENDATION
    assert d.state(rec.id) is S.EXPIRED
    assert log.moves(rec.id) == [(None, S.PROPOSED), (S.PROPOSED, S.EXPIRED)]
    assert log.calls[-1][0].by == "system" and "expired" in log.calls[-1][0].reason


def test_same_condition_folds_into_one_id_and_updates_evidence_and_expiry() -> None:
    updates: list[Recommendation] = []
    clk = Clock()
    log = Log()
    d = Decisions(clk, log, on_update=updates.append)
    first = propose(d, ttl_s=60)
    clk.t += 50
    newer = Evidence({"top_oil_c": 99.0}, "1" * 64)
    again = propose(d, ttl_s=60, evidence=newer)
    assert again.id == first.id and again.evidence == newer and again.created_at == first.created_at
    assert again.expires_at == T0 + 110 and updates == [again]
    assert log.moves() == [(None, S.PROPOSED)]  # a fold is not a transition: no new id, nothing to spam
    assert d.open() == (again,)
    clk.t += 59  # 109 s after the first: alive only thanks to the refreshed expiry
    assert d.confirm(first.id, "alice") is None


def test_a_different_action_for_the_same_condition_supersedes() -> None:
    d, log, _ = engine()
    old = propose(d)
    new = propose(d, actions=CHARGE)
    assert new.id != old.id and d.state(old.id) is S.SUPERSEDED
    superseded = log.calls[1][0]
    assert (superseded.from_state, superseded.to_state) == (S.PROPOSED, S.SUPERSEDED) and new.id in superseded.reason
    assert d.open() == (new,)
    other = propose(d, key="tx1.top_oil_high", actions=FANS)
    assert {r.id for r in d.open()} == {new.id, other.id}  # other keys are left alone


def test_proposing_what_is_already_executing_makes_no_new_id() -> None:
    d, log, _ = engine()
    rec = propose(d)
    d.confirm(rec.id, "alice")
    phase(d)(snap(0.0), ())
    assert propose(d).id == rec.id
    assert d.open() == () and len(log.calls) == 3


def test_confirming_a_new_action_on_the_same_point_replaces_the_running_one() -> None:
    d, _, _ = engine()
    ph = phase(d)
    first = propose(d, key="export.over_limit")
    d.confirm(first.id, "alice")
    assert [c.value for c in ph(snap(0.0), ())] == [40_000.0]
    second = propose(d, key="peak.shave", actions=CHARGE)
    d.confirm(second.id, "bob")
    assert d.state(first.id) is S.COMPLETED
    out = ph(snap(1.0), ())
    assert [(c.value, c.origin) for c in out] == [(-30_000.0, f"decision:{second.id}")]


def test_inspection_completes_on_confirmation_and_requests_nothing() -> None:
    d, log, _ = engine()
    rec = propose(d, key="tx1.fans", actions=FANS)
    assert d.confirm(rec.id, "alice") is None
    assert log.moves(rec.id) == [(None, S.PROPOSED), (S.PROPOSED, S.CONFIRMED), (S.CONFIRMED, S.COMPLETED)]
    assert phase(d)(snap(0.0), ()) == ()


def test_a_setpoint_without_duration_is_requested_once_then_completes() -> None:
    d, log, _ = engine()
    rec = propose(d, actions=(SetpointAction("bess", "WSet", 5_000.0),))
    d.confirm(rec.id, "alice")
    ph = phase(d)
    assert [c.value for c in ph(snap(0.0), ())] == [5_000.0]
    assert ph(snap(0.1), ()) == () and ph(snap(0.2), ()) == ()
    assert log.moves(rec.id)[-2:] == [(S.CONFIRMED, S.EXECUTING), (S.EXECUTING, S.COMPLETED)]


# -- failed and blocked, with the phase alone ----------------------------------------------------

def test_recheck_blocks_at_execution_and_requests_nothing() -> None:
    d, log, _ = engine()
    rec = propose(d)
    d.confirm(rec.id, "alice")  # confirmed while safe ...
    out = phase(d, (0.0, 0.0), trips=frozenset({"bess_hot"}))(snap(0.0), ())  # ... executed after a trip
    assert out == ()
    assert d.state(rec.id) is S.BLOCKED
    reason = log.calls[-1][0].reason
    assert "bess.WSet = 40000" in reason and "[0, 0]" in reason and "bess_hot" in reason


def test_not_writable_or_offline_fails() -> None:
    d, log, _ = engine()
    rec = propose(d, actions=(SetpointAction("bess", "Conn", 1.0, 10.0),))
    d.confirm(rec.id, "alice")
    assert phase(d)(snap(0.0), ()) == ()
    assert d.state(rec.id) is S.FAILED and "not a writable setpoint" in log.calls[-1][0].reason

    online = {"bess": False}
    rec = propose(d, key="other")
    d.confirm(rec.id, "alice")
    ph = phase(d, online=lambda device: online[device])
    assert ph(snap(0.0), ()) == () and d.state(rec.id) is S.FAILED
    assert "offline at execution" in log.calls[-1][0].reason

    online["bess"] = True
    rec = propose(d, key="third")
    d.confirm(rec.id, "alice")
    assert len(ph(snap(1.0), ())) == 1
    online["bess"] = False
    assert ph(snap(2.0), ()) == () and d.state(rec.id) is S.FAILED
    assert "offline during execution" in log.calls[-1][0].reason


# -- through the real scan cycle --------------------------------------------------------------------

class Hold:
    """A controller that asks for the same bess.WSet every cycle (its value is what "revert" returns to)."""

    name = "controller"

    def __init__(self, value_w: float) -> None:
        self.command = Command("bess", "WSet", value_w, "controller:export_limit")

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        return (self.command,)


class Plant:
    """Image + real Interlocks + real Arbiter + ScanCycle; `written` is the cycle's write sink."""

    def __init__(self, spec: InterlockSpec, controller_w: float | None = None) -> None:
        self.image = ProcessImage([PointSpec("bess.cell_temp_c", "degC", 5.0)])
        self.interlocks = Interlocks([spec])
        self.arbiter = Arbiter([Bound("bess", "WSet", -100_000, 100_000, refresh_s=1_000)],
                               trip_bounds=self.interlocks.bounds)
        self.log = Log()
        self.clock = Clock()
        self.decisions = Decisions(self.clock, self.log)
        self.phase = ActionPhase(self.decisions, self.arbiter.envelope, self.interlocks.active, lambda device: True)
        controllers = [] if controller_w is None else [Hold(controller_w)]
        self.written: list[Command] = []
        self.cycle = ScanCycle(self.image, 0.1, interlocks=[self.interlocks], controllers=controllers,
                               actions=[self.phase], arbiter=self.arbiter, write=self.written.append)

    def temp(self, t: float, cell_temp_c: float) -> None:
        self.image.write(Sample("bess.cell_temp_c", cell_temp_c, "degC", Quality.GOOD, t, T0 + t))

    def confirmed(self, actions: tuple[Action, ...]) -> Recommendation:
        rec = propose(self.decisions, actions=actions)
        assert self.decisions.confirm(rec.id, "alice") is None
        return rec

    def decision_writes(self) -> list[Command]:
        return [c for c in self.written if c.origin.startswith("decision:")]


HOT = {"name": "bess_hot", "points": ("bess.cell_temp_c",), "condition": Condition.ABOVE, "limit": 45.0}
PIN = InterlockSpec(**HOT, safe_action=(SafeSetpoint("bess", "WSet", 0.0),))  # type: ignore[arg-type]
NO_CHARGE = InterlockSpec(**HOT, safe_bounds=(SafeBound("bess", "WSet", minimum=0.0),))  # type: ignore[arg-type]


@pytest.mark.parametrize("spec", [PIN, NO_CHARGE], ids=["safe_action", "safe_bound"])
def test_recheck_with_the_real_cycle_confirmed_while_safe_tripped_before_execution(spec: InterlockSpec) -> None:
    safe = Plant(spec)  # control: the same action on a cool battery is written
    safe.temp(0.0, 30.0)
    rec = safe.confirmed(CHARGE)
    safe.cycle.step(0.1)
    assert safe.written == [Command("bess", "WSet", -30_000.0, f"decision:{rec.id}", f"recommendation {rec.id} "
                                    "(export.over_limit)")]

    plant = Plant(spec)
    plant.temp(0.0, 30.0)
    rec = plant.confirmed(CHARGE)  # confirmed while safe
    plant.temp(0.05, 50.0)  # the cells heat up before the next cycle
    record = plant.cycle.step(0.1)
    assert plant.interlocks.active() == {"bess_hot"}
    assert plant.decisions.state(rec.id) is S.BLOCKED
    assert not [c for c in record.requests if c.origin.startswith("decision:")]  # the phase asked nothing
    assert plant.decision_writes() == []
    if spec is PIN:  # only the interlock's own safe value reaches the device
        assert [(c.value, c.origin) for c in plant.written] == [(0.0, "interlock:bess_hot")]
    else:
        assert plant.written == []  # nothing is written at all
    assert "bess_hot" in plant.log.calls[-1][0].reason
    plant.temp(1.0, 30.0)  # the trip clears: blocked is final, the action does not come back
    for k in range(5):
        plant.cycle.step(1.0 + k)
    assert plant.interlocks.active() == frozenset() and plant.decision_writes() == []


def test_trip_during_execution_blocks_and_the_controller_value_returns() -> None:
    plant = Plant(PIN, controller_w=2_000.0)
    plant.temp(0.0, 30.0)
    rec = plant.confirmed(DISCHARGE)
    plant.cycle.step(0.0)
    plant.cycle.step(1.0)
    assert plant.decisions.state(rec.id) is S.EXECUTING
    assert [c.value for c in plant.written] == [40_000.0]
    plant.temp(1.5, 60.0)
    record = plant.cycle.step(2.0)
    assert plant.decisions.state(rec.id) is S.BLOCKED
    assert "during execution" in plant.log.calls[-1][0].reason
    assert [c.origin for c in record.requests] == ["interlock:bess_hot", "controller:export_limit"]
    assert [(c.value, c.origin) for c in record.commands] == [(0.0, "interlock:bess_hot")]
    moves = plant.log.moves(rec.id)
    assert moves == [(None, S.PROPOSED), (S.PROPOSED, S.CONFIRMED), (S.CONFIRMED, S.EXECUTING),
                     (S.EXECUTING, S.BLOCKED)]


def test_duration_ends_and_the_controller_value_comes_back() -> None:
    plant = Plant(PIN, controller_w=2_000.0)
    plant.temp(0.0, 30.0)
    rec = plant.confirmed((SetpointAction("bess", "WSet", 40_000.0, 2.0),))
    values: list[tuple[float, list[float]]] = []
    for k in range(30):  # 100 ms cycles for 3 s
        t = k * 0.1
        plant.temp(t, 30.0)
        record = plant.cycle.step(t)
        values.append((round(t, 1), [c.value for c in record.requests if c.origin == f"decision:{rec.id}"]))
    asked = [t for t, v in values if v == [40_000.0]]
    assert asked[0] == 0.0 and asked[-1] == 1.9 and len(asked) == 20  # requested every cycle while active
    assert all(v == [] for t, v in values if t >= 2.0)
    assert [(c.value, c.origin) for c in plant.written] == [(40_000.0, f"decision:{rec.id}"),
                                                           (2_000.0, "controller:export_limit")]
    assert plant.decisions.state(rec.id) is S.COMPLETED


# -- validation ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("build", "message"), [
    (lambda: Proposer("model", "tx", "1"), "sha256"),
    (lambda: Proposer("oracle", "tx", "1"), "kind"),  # type: ignore[arg-type]
    (lambda: Evidence({"x": math.nan}, "0" * 64), "figure 'x'"),
    (lambda: Evidence({}, "xyz"), "input_sha256"),
    (lambda: SetpointAction("bess", "WSet", 1.0, 0.0), "duration_s"),
    (lambda: SetpointAction("bess", "WSet", math.inf), "value"),
    (lambda: Inspection(" "), "text"),
    (lambda: Recommendation("r", "k", RULE, EV, "why", DISCHARGE + CHARGE, T0, T0 + 1), "same point"),
    (lambda: Recommendation("r", "k", RULE, EV, "why", DISCHARGE, T0, T0), "expires_at"),
    (lambda: Recommendation("r", "k", RULE, EV, "why", (), T0, T0 + 1), "actions"),
])
def test_bad_values_are_refused_with_a_clear_message(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        build()


def test_bad_operations_are_refused_and_change_nothing() -> None:
    d, log, _ = engine()
    rec = propose(d)
    with pytest.raises(ValueError, match="ttl_s"):
        propose(d, actions=CHARGE, ttl_s=0)
    with pytest.raises(ValueError, match="rationale"):
        d.propose(key="export.over_limit", proposer=RULE, evidence=EV, rationale="", actions=CHARGE, ttl_s=1)
    with pytest.raises(ValueError, match="by must name"):
        d.confirm(rec.id, "")
    assert d.state(rec.id) is S.PROPOSED and len(log.calls) == 1  # nothing superseded by the bad input


def test_evidence_is_a_private_read_only_copy() -> None:
    figures: dict[str, float | str] = {"top_oil_c": 97.5}
    evidence = Evidence(figures, "0" * 64)
    figures["top_oil_c"] = 20.0
    assert evidence.figures["top_oil_c"] == 97.5
    with pytest.raises(TypeError):
        evidence.figures["top_oil_c"] = 1.0  # type: ignore[index]


# -- property: random operation sequences ---------------------------------------------------------

KEYS = ("a", "b", "c")
ACTIONS: tuple[tuple[Action, ...], ...] = (
    (SetpointAction("bess", "WSet", 50.0, 5.0),),
    (SetpointAction("bess", "WSet", -30.0, 30.0),),
    (SetpointAction("bess", "WSet", 0.0),),
    (Inspection("inspect cooling fans"),),
    (SetpointAction("pv", "WMaxLimPct", 10.0, 10.0),),  # not writable: fails
)


@dataclass(frozen=True)
class Op:
    kind: str
    key: str = ""
    n: int = 0
    dt_s: float = 0.0
    flag: bool = False


OPS = st.lists(st.one_of(
    st.builds(Op, st.just("propose"), key=st.sampled_from(KEYS), n=st.integers(0, len(ACTIONS) - 1)),
    st.builds(Op, st.sampled_from(["confirm", "confirm", "reject"]), n=st.sampled_from([0, 0, 0, 1, 2, 6])),
    st.builds(Op, st.just("tick"), dt_s=st.sampled_from([0.1, 1.0, 5.0, 40.0]) | st.floats(0.0, 70.0)),
    st.builds(Op, st.just("trip"), flag=st.sampled_from([False, False, True])),
    st.builds(Op, st.just("online"), flag=st.sampled_from([True, True, False])),
), max_size=40)


@settings(max_examples=300)
@given(OPS)
def test_random_sequences_only_move_along_the_table(ops: list[Op]) -> None:
    seen: dict[str, State] = {}
    recs: dict[str, Recommendation] = {}

    def on_transition(tr: Transition, rec: Recommendation) -> None:
        assert allowed(tr.from_state, tr.to_state), tr
        assert tr.from_state == seen.get(tr.rec_id), tr  # from is where it really was: nothing skipped
        seen[tr.rec_id] = tr.to_state
        recs[tr.rec_id] = rec

    clk = Clock()
    d = Decisions(clk, on_transition)
    tripped, online, t_mono = [False], [True], [0.0]

    def envelope(key: tuple[str, str], snapshot: Snapshot) -> tuple[float, float]:
        if key != ("bess", "WSet"):
            raise KeyError(key)
        return (0.0, 0.0) if tripped[0] else (-100.0, 100.0)

    ph = ActionPhase(d, envelope, lambda: {"bess_hot"} if tripped[0] else set(), lambda device: online[0])
    for op in ops:
        before = dict(seen)
        ids = list(seen)
        if op.kind == "propose":
            rec = propose(d, key=op.key, actions=ACTIONS[op.n], ttl_s=60)
            assert rec.key == op.key and rec.actions == ACTIONS[op.n]
            if rec.id in recs and seen[rec.id] is S.PROPOSED:
                # folded into the open one: same id, expiry only ever extended
                assert rec.expires_at >= recs[rec.id].expires_at
                recs[rec.id] = rec
        elif op.kind in ("confirm", "reject"):
            # mostly recent ids, sometimes one never issued
            rec_id = ids[-1 - op.n] if op.n < len(ids) else f"rec-20261124-{9000 + op.n}"
            was = before.get(rec_id)
            live = was is S.PROPOSED and recs[rec_id].expires_at > clk.t
            result = d.confirm(rec_id, "alice") if op.kind == "confirm" else d.reject(rec_id, "alice", "no")
            if was is None:
                assert result == UNKNOWN_RECOMMENDATION
            elif live:
                expected = S.REJECTED if op.kind == "reject" else S.CONFIRMED if recs[rec_id].controls else S.COMPLETED
                assert result is None and seen[rec_id] is expected
            else:
                assert result == CLOSED_RECOMMENDATION
                assert seen[rec_id] is (S.EXPIRED if was is S.PROPOSED else was)  # expired stays expired
        elif op.kind == "tick":
            clk.t += op.dt_s
            t_mono[0] += op.dt_s
            d.expire()
        elif op.kind == "trip":
            tripped[0] = op.flag
        else:
            online[0] = op.flag
        t_mono[0] += 0.1  # a scan cycle runs between any two operations
        for command in ph(snap(t_mono[0]), ()):
            rec_id = command.origin.removeprefix("decision:")
            assert seen[rec_id] is S.EXECUTING  # only executing recommendations request anything
            assert not tripped[0] or command.value == 0.0  # nothing outside the envelope is asked
            assert online[0]
        for rec_id, state in before.items():
            if state in CLOSED:
                assert seen[rec_id] is state  # closed never reopens
        proposed_keys = [recs[i].key for i, s in seen.items() if s is S.PROPOSED]
        assert len(proposed_keys) == len(set(proposed_keys))  # folding: one open id per key
        assert all(d.state(i) is s for i, s in seen.items())
        assert {r.id for r in d.open()} == {i for i, s in seen.items() if s is S.PROPOSED}
    tripped[0], online[0] = False, True
    for _ in range(10):  # let everything run out: every recommendation ends closed
        clk.t += 10.0
        t_mono[0] += 10.0
        ph(snap(t_mono[0]), ())
    assert d.open() == () and d.active() == ()
    assert all(state in CLOSED for state in seen.values())
