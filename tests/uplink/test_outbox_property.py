"""Property tests: whatever the sequence of calls, no event or decision that was appended and not
acked is ever lost, acked records never come back, order per lane holds, ids only go up."""

from __future__ import annotations

import shutil
import tempfile
import types
from pathlib import Path
from unittest import mock

import hypothesis.strategies as st
from hypothesis import event, given, settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule

import edgeagent.uplink.outbox as outbox_module
from edgeagent.uplink import Lane, Outbox, Record

LANES = st.sampled_from(list(Lane))
BUDGET = 1500  # small, so thinning and dropping happen in many runs


class OutboxMachine(RuleBasedStateMachine):
    """A model next to the real outbox. Events and decisions are modelled exactly; telemetry may
    legitimately vanish through the budget, so the model knows only what it may contain."""

    ids = Bundle("ids")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="outbox-prop-"))
        self.path = self.dir / "outbox.sqlite"
        self.ob = Outbox(self.path, budget_bytes=BUDGET, telemetry_batch=5, thin_keep_one_in=3)
        self.urgent: dict[int, Record] = {}
        self.telemetry: dict[int, Record] = {}
        self.acked: set[int] = set()
        self.last_id = 0

    def teardown(self) -> None:
        self.ob.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(target=ids, lane=LANES, n=st.integers(0, 10**6), pad=st.integers(0, 300))
    def append(self, lane: Lane, n: int, pad: int) -> int:
        record = self.ob.append(lane, lane.value, b'{"n": %d, "pad": "%s"}' % (n, b"p" * pad))
        assert record.id > self.last_id
        self.last_id = record.id
        (self.telemetry if lane is Lane.TELEMETRY else self.urgent)[record.id] = record
        return record.id

    @rule()
    def flush(self) -> None:
        self.ob.flush()
        assert self.ob.stats().bytes <= BUDGET or self.ob.stats().records["telemetry"] == 0

    @rule(acked=st.lists(consumes(ids), max_size=6), unknown=st.lists(st.integers(1, 2**62), max_size=2))
    def ack(self, acked: list[int], unknown: list[int]) -> None:
        self.ob.ack([*acked, *unknown, *acked])
        for record_id in acked:
            self.urgent.pop(record_id, None)
            self.telemetry.pop(record_id, None)
            self.acked.add(record_id)

    @rule(limit=st.integers(0, 40), skip=st.lists(LANES, unique=True), data=st.data())
    def pending(self, limit: int, skip: list[Lane], data: st.DataObject) -> None:
        after: dict[Lane, int] = {}
        for lane in skip:
            known = sorted(i for i, r in {**self.urgent, **self.telemetry}.items() if r.lane is lane)
            after[lane] = data.draw(st.sampled_from(known)) if known else 0
        got = self.ob.pending(limit, after)
        assert len(got) <= limit
        assert not {r.id for r in got} & self.acked
        wanted = [r for r in self.urgent.values() if r.id > after.get(r.lane, 0)]
        expected_urgent = sorted(wanted, key=lambda r: r.id)[:limit]
        assert got[: len(expected_urgent)] == expected_urgent  # all of them, exactly, in id order
        rest = got[len(expected_urgent) :]
        assert all(r.lane is Lane.TELEMETRY for r in rest)
        assert all(self.telemetry.get(r.id) == r and r.id > after.get(Lane.TELEMETRY, 0) for r in rest)
        assert [r.id for r in rest] == sorted(r.id for r in rest)

    @rule()
    def reopen(self) -> None:
        self.ob.close()
        self.ob = Outbox(self.path, budget_bytes=BUDGET, telemetry_batch=5, thin_keep_one_in=3)

    @precondition(lambda self: bool(self.telemetry))
    @rule()
    def forget_what_the_budget_took(self) -> None:
        present = {r.id for r in self.ob.pending(10**6) if r.lane is Lane.TELEMETRY}
        self.telemetry = {i: r for i, r in self.telemetry.items() if i in present}

    @invariant()
    def counts_match(self) -> None:
        stats = self.ob.stats()
        for lane in (Lane.EVENT, Lane.DECISION):
            assert stats.records[lane.value] == sum(1 for r in self.urgent.values() if r.lane is lane)
        assert stats.records["telemetry"] <= len(self.telemetry)
        urgent_bytes = sum(len(r.payload) for r in self.urgent.values())
        assert stats.over_budget == (urgent_bytes > BUDGET)
        assert stats.bytes >= urgent_bytes
        event(f"thinned={stats.thinned > 0} dropped={stats.dropped > 0} over={stats.over_budget}")


OutboxMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=40)
test_outbox_state_machine = OutboxMachine.TestCase


@settings(max_examples=60)
@given(steps=st.lists(st.floats(-2e9, 2e9, allow_nan=False), min_size=1, max_size=30), reopen_at=st.integers(0, 30))
def test_ids_strictly_increase_whatever_the_clock_does(steps: list[float], reopen_at: int) -> None:
    clock = [1.7e9]

    def wall() -> float:
        return clock[0]

    fake_time = types.SimpleNamespace(time=wall)
    with tempfile.TemporaryDirectory(prefix="outbox-ids-") as tmp, mock.patch.object(outbox_module, "time", fake_time):
        path = Path(tmp) / "o.sqlite"
        ob = Outbox(path, telemetry_batch=3)
        ids: list[int] = []
        for i, step in enumerate(steps):
            clock[0] = max(0.0, clock[0] + step)
            if i == reopen_at:
                ob.ack([r.id for r in ob.pending(1000)])  # an empty table keeps no max(id)
                ob.close()
                ob = Outbox(path, telemetry_batch=3)
            lane = (Lane.EVENT, Lane.TELEMETRY, Lane.DECISION)[i % 3]
            ids.append(ob.append(lane, "x", b"{}").id)
        ob.close()
    assert ids == sorted(set(ids))
