"""The recommendation lifecycle, and the scan-cycle phase that executes confirmed actions.

`Decisions` holds the recommendations and moves them along `recommendation.TRANSITIONS` only;
every move is handed to `on_transition` (which publishes it on the decision lane and audits it)
exactly once. Duplicates are folded by key: the same condition proposed again with the same
action updates the open recommendation (evidence, rationale, expiry) and keeps its id, so operators
are not spammed; a different action for the same key supersedes it with a new id. Because the
action never changes under an id, a confirmation always approves exactly the action it was shown.

`ActionPhase` is phase 3 of the scan cycle. A confirmation only makes a recommendation eligible;
the re-check against the interlocks and the envelope happens in the cycle, at the moment of
execution (DESIGN.md: "not at the moment of approval"), and again every cycle while it runs.

Everything here runs on the daemon's event loop (confirmations from the uplink, the cycle's
phase), so no lock is needed; nothing awaits, and `on_transition` must not block either (it is
called from inside the cycle): hand the record to a queue.

Not persisted yet: after a restart, proposed recommendations are gone (the proposer raises the
condition again, under a new id) and executing ones stop (their requests stop, so the plant
reverts: fail safe). Pass the last issued id as `resume_after` so ids stay unique across restarts.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from edgeagent.cycle import Command
from edgeagent.decisions.recommendation import (
    ACTIVE,
    CLOSED,
    Action,
    Evidence,
    Proposer,
    Recommendation,
    SetpointAction,
    State,
    Transition,
    allowed,
)
from edgeagent.image import Snapshot

UNKNOWN_RECOMMENDATION = "unknown_recommendation"
CLOSED_RECOMMENDATION = "closed_recommendation"
SYSTEM = "system"
ORIGIN_PREFIX = "decision:"

OnTransition = Callable[[Transition, Recommendation], None]
Envelope = Callable[[tuple[str, str], Snapshot], tuple[float, float]]
"""`Arbiter.envelope`: the (lo, hi) a setpoint may have now; KeyError when it is not writable."""

_ID = re.compile(r"rec-\d{8}-(\d{4,})")


@dataclass(slots=True)
class _Entry:
    rec: Recommendation
    state: State
    started_mono: float | None = None  # t_mono of the cycle that started execution
    shot: set[int] = field(default_factory=set)  # once-only setpoints (by index) already requested


class Decisions:
    """Recommendations and their state machine. `clock` is the wall clock (Unix seconds).

    Closed recommendations are kept (the latest `keep_closed`) so a late confirm gets
    `closed_recommendation`; older ones are forgotten and then count as unknown. `on_update` is
    told when a fold changes an open recommendation's evidence or expiry (not a transition)."""

    def __init__(self, clock: Callable[[], float], on_transition: OnTransition, *,
                 on_update: Callable[[Recommendation], None] | None = None,
                 resume_after: str | None = None, keep_closed: int = 1000) -> None:
        if isinstance(keep_closed, bool) or not isinstance(keep_closed, int) or keep_closed < 0:
            raise ValueError(f"keep_closed must be an int >= 0, got {keep_closed!r}")
        self.clock = clock
        self.on_transition = on_transition
        self.on_update = on_update
        self.keep_closed = keep_closed
        self._seq = 0
        if resume_after is not None:
            match = _ID.fullmatch(resume_after) if isinstance(resume_after, str) else None
            if match is None:
                raise ValueError(f"resume_after must be an id like rec-20261124-0007, got {resume_after!r}")
            self._seq = int(match.group(1))
        self._live: dict[str, _Entry] = {}  # not closed, in order of creation
        self._closed: OrderedDict[str, _Entry] = OrderedDict()  # the latest `keep_closed` closed ones
        self._proposed_by_key: dict[str, str] = {}

    # -- queries ----------------------------------------------------------------------------------

    def get(self, rec_id: str) -> Recommendation | None:
        entry = self._entry(rec_id)
        return None if entry is None else entry.rec

    def state(self, rec_id: str) -> State | None:
        """The state, or None for an id never issued (or closed long ago and forgotten)."""
        entry = self._entry(rec_id)
        return None if entry is None else entry.state

    def open(self) -> tuple[Recommendation, ...]:
        """Recommendations waiting for a decision (expired ones are expired first)."""
        self.expire()
        return tuple(e.rec for e in self._live.values() if e.state is State.PROPOSED)

    def active(self) -> tuple[Recommendation, ...]:
        """Confirmed recommendations being (or about to be) executed."""
        return tuple(e.rec for e in self._live.values() if e.state in ACTIVE)

    # -- operations -------------------------------------------------------------------------------

    def propose(self, *, key: str, proposer: Proposer, evidence: Evidence, rationale: str,
                actions: Sequence[Action], ttl_s: float) -> Recommendation:
        """Propose, or fold into what is already there for `key`. Returns the recommendation that
        now stands for the condition: the updated open one, the active one doing exactly this
        already, or a new one (which supersedes an open one with a different action)."""
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not (math.isfinite(ttl_s) and ttl_s > 0):
            raise ValueError(f"ttl_s must be a finite number of seconds > 0, got {ttl_s!r}")
        now = self.clock()
        self.expire(now)
        # built first so that bad input is refused before anything changes
        new = Recommendation(self._next_id(now), key, proposer, evidence, rationale, tuple(actions), now, now + ttl_s)
        pending = self._live.get(self._proposed_by_key.get(key, ""))
        if pending is not None and pending.rec.actions == new.actions:
            pending.rec = replace(pending.rec, proposer=proposer, evidence=evidence, rationale=rationale,
                                  expires_at=max(pending.rec.expires_at, new.expires_at))
            if self.on_update is not None:
                self.on_update(pending.rec)
            return pending.rec
        running = next((e for e in self._live.values()
                        if e.state in ACTIVE and e.rec.key == key and e.rec.actions == new.actions), None)
        if pending is not None:
            by_what = new.id if running is None else f"{running.rec.id} (already confirmed)"
            self._move(pending, State.SUPERSEDED, SYSTEM,
                       f"superseded by {by_what}: a different action for the same condition", now)
        if running is not None:
            return running.rec
        self._seq += 1
        entry = _Entry(new, State.PROPOSED)
        self._live[new.id] = entry
        self._proposed_by_key[key] = new.id
        self.on_transition(Transition(new.id, None, State.PROPOSED, now, SYSTEM,
                                      f"proposed by {proposer.kind} {proposer.name} {proposer.version}"), new)
        return new

    def confirm(self, rec_id: str, by: str) -> str | None:
        """Confirm a proposed recommendation (signature checks happen before this). Returns None,
        or `unknown_recommendation` / `closed_recommendation` (anything not proposed, incl. expired).

        An active recommendation for the same condition, or on one of the same points, ends
        (completed, "replaced by …"): two approved actions never fight over one setpoint."""
        _check_by(by)
        now = self.clock()
        self.expire(now)
        entry = self._entry(rec_id)
        if entry is None:
            return UNKNOWN_RECOMMENDATION
        if entry.state is not State.PROPOSED:
            return CLOSED_RECOMMENDATION
        self._move(entry, State.CONFIRMED, by, "confirmed", now)
        points = {(a.device, a.point) for a in entry.rec.setpoints}
        for other in list(self._live.values()):
            if other is entry or other.state not in ACTIVE:
                continue
            if other.rec.key == entry.rec.key or points & {(a.device, a.point) for a in other.rec.setpoints}:
                self._move(other, State.COMPLETED, SYSTEM, f"replaced by {rec_id} (confirmed by {by})", now)
        if not entry.rec.controls:
            self._move(entry, State.COMPLETED, SYSTEM, "non-control action: handed to the operator", now)
        return None

    def reject(self, rec_id: str, by: str, reason: str = "") -> str | None:
        """Reject a proposed recommendation; same refusal codes as `confirm`."""
        _check_by(by)
        now = self.clock()
        self.expire(now)
        entry = self._entry(rec_id)
        if entry is None:
            return UNKNOWN_RECOMMENDATION
        if entry.state is not State.PROPOSED:
            return CLOSED_RECOMMENDATION
        self._move(entry, State.REJECTED, by, reason or "rejected", now)
        return None

    def expire(self, now: float | None = None) -> tuple[str, ...]:
        """Expire proposed recommendations whose time is up; returns their ids."""
        t = self.clock() if now is None else now
        due = [e for e in self._live.values() if e.state is State.PROPOSED and e.rec.expires_at <= t]
        for entry in due:
            self._move(entry, State.EXPIRED, SYSTEM, "not confirmed before it expired", t)
        return tuple(e.rec.id for e in due)

    # -- internals --------------------------------------------------------------------------------

    def _entry(self, rec_id: str) -> _Entry | None:
        return self._live.get(rec_id) or self._closed.get(rec_id)

    def _next_id(self, now: float) -> str:
        return f"rec-{datetime.fromtimestamp(now, UTC):%Y%m%d}-{self._seq + 1:04d}"

    def _runnable(self) -> list[_Entry]:
        return [e for e in self._live.values() if e.state in ACTIVE]

    def _move(self, entry: _Entry, to: State, by: str, reason: str, now: float | None = None) -> None:
        frm = entry.state
        if not allowed(frm, to):  # a bug in this module, never an operator error
            raise RuntimeError(f"{entry.rec.id}: {frm.value} -> {to.value} is not an allowed transition")
        entry.state = to
        rec_id = entry.rec.id
        if frm is State.PROPOSED and self._proposed_by_key.get(entry.rec.key) == rec_id:
            del self._proposed_by_key[entry.rec.key]
        if to in CLOSED:
            del self._live[rec_id]
            self._closed[rec_id] = entry
            while len(self._closed) > self.keep_closed:
                self._closed.popitem(last=False)
        t = self.clock() if now is None else now
        self.on_transition(Transition(rec_id, frm, to, t, by, reason), entry.rec)


def _check_by(by: str) -> None:
    if not isinstance(by, str) or not by.strip():
        raise ValueError(f"by must name who decided (key id or person), got {by!r}")


class ActionPhase:
    """Phase 3 of the scan cycle (name "actions"): confirmed recommendations become requests.

    Every cycle, for each confirmed or executing recommendation: if all its setpoints are done
    (durations over, once-only ones requested once) it completes; if a setpoint is not writable
    (`envelope` raises KeyError) or its device is offline it fails; if a requested value lies
    outside the envelope of the moment (an interlock's safe action or bound, or the rated and
    dynamic bounds) it is blocked, naming the bound and the active trips. In those three cases it
    requests nothing. Otherwise it requests its setpoints with origin `decision:<id>` (the first
    such cycle moves it to executing). Pure and synchronous: durations run on `snapshot.t_mono`,
    transition times come from the engine's wall clock.
    """

    name = "actions"

    def __init__(self, decisions: Decisions, envelope: Envelope, active_trips: Callable[[], Collection[str]],
                 device_online: Callable[[str], bool]) -> None:
        self.decisions = decisions
        self.envelope = envelope
        self.active_trips = active_trips
        self.device_online = device_online

    def __call__(self, snapshot: Snapshot, requests: tuple[Command, ...]) -> tuple[Command, ...]:
        out: list[Command] = []
        for entry in self.decisions._runnable():
            out.extend(self._step(entry, snapshot))
        return tuple(out)

    def _step(self, entry: _Entry, snapshot: Snapshot) -> tuple[Command, ...]:
        rec, t = entry.rec, snapshot.t_mono
        due = [(i, a) for i, a in enumerate(rec.setpoints) if not _done(entry, i, a, t)]
        if not due:
            self.decisions._move(entry, State.COMPLETED, SYSTEM,
                                 "done: durations over and once-only setpoints requested; requests stopped")
            return ()
        refusal = self._refusal(entry, [a for _, a in due], snapshot)
        if refusal is not None:
            self.decisions._move(entry, refusal[0], SYSTEM, refusal[1])
            return ()
        if entry.state is State.CONFIRMED:
            entry.started_mono = t
            self.decisions._move(entry, State.EXECUTING, SYSTEM, "requested from the scan cycle")
        entry.shot.update(i for i, a in due if a.duration_s is None)
        origin = ORIGIN_PREFIX + rec.id
        return tuple(Command(a.device, a.point, float(a.value), origin, f"recommendation {rec.id} ({rec.key})")
                     for _, a in due)

    def _refusal(self, entry: _Entry, actions: list[SetpointAction], snapshot: Snapshot) -> tuple[State, str] | None:
        when = "at execution" if entry.state is State.CONFIRMED else "during execution"
        for action in actions:
            name = f"{action.device}.{action.point}"
            try:
                lo, hi = self.envelope((action.device, action.point), snapshot)
            except KeyError:
                return State.FAILED, f"{name} is not a writable setpoint (no envelope)"
            if not self.device_online(action.device):
                return State.FAILED, f"device {action.device} is offline {when}"
            if not lo <= action.value <= hi:
                trips = sorted(self.active_trips())
                why = (f"active interlocks: {', '.join(trips)}" if trips
                       else "no interlock active (rated/dynamic bounds)")
                return State.BLOCKED, (f"{name} = {action.value:g} is outside the envelope [{lo:g}, {hi:g}] "
                                       f"{when}; {why}")
        return None


def _done(entry: _Entry, index: int, action: SetpointAction, t_mono: float) -> bool:
    if action.duration_s is None:
        return index in entry.shot
    return entry.started_mono is not None and t_mono - entry.started_mono >= action.duration_s


__all__ = [
    "CLOSED_RECOMMENDATION",
    "ORIGIN_PREFIX",
    "SYSTEM",
    "UNKNOWN_RECOMMENDATION",
    "ActionPhase",
    "Decisions",
    "Envelope",
    "OnTransition",
]
