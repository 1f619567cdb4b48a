"""Recommendations as values, their states, and the one table of allowed state changes.

A recommendation says who or what proposed it (a rule, or a model with its version and sha256),
on which evidence (key figures and the hash of the input window), why (a sentence an operator can
read), and what to do: setpoint requests, each for a duration or once, or a non-control action
such as an inspection. Everything here is a frozen, validated value; the lifecycle lives in
`engine.py`. Wall-clock times are Unix seconds.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

ProposerKind = Literal["rule", "model"]

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _text(where: str, label: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {label} must be a non-empty string, got {value!r}")


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Proposer:
    """Who or what proposed: a rule (sha256 optional, e.g. of its config) or a model (sha256 of
    the model file, required: the audit must name exactly which weights produced the advice)."""

    kind: ProposerKind
    name: str
    version: str
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("rule", "model"):
            raise ValueError(f"proposer kind must be 'rule' or 'model', got {self.kind!r}")
        _text("proposer", "name", self.name)
        _text(f"proposer {self.name!r}", "version", self.version)
        if self.sha256 is None:
            if self.kind == "model":
                raise ValueError(f"proposer {self.name!r}: a model proposer needs the model's sha256")
        elif not isinstance(self.sha256, str) or not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"proposer {self.name!r}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")


@dataclass(frozen=True, slots=True)
class Evidence:
    """The key figures behind a recommendation (e.g. {"top_oil_c": 97.5, "trend": "rising"}) and
    the sha256 of the whole input window, so the exact inputs can be matched later."""

    figures: Mapping[str, float | str]
    input_sha256: str

    def __post_init__(self) -> None:
        if not isinstance(self.figures, Mapping):
            raise ValueError(f"evidence figures must be a mapping, got {type(self.figures).__name__}")
        for name, value in self.figures.items():
            _text("evidence", "every figure name", name)
            if not (_number(value) or isinstance(value, str)):
                raise ValueError(f"evidence figure {name!r} must be a finite number or a string, got {value!r}")
        if not isinstance(self.input_sha256, str) or not _SHA256.fullmatch(self.input_sha256):
            raise ValueError(f"evidence input_sha256 must be 64 lowercase hex digits, got {self.input_sha256!r}")
        # a private read-only copy: the caller's dict may change, the evidence must not
        object.__setattr__(self, "figures", MappingProxyType(dict(self.figures)))


@dataclass(frozen=True, slots=True)
class SetpointAction:
    """Request `value` on one writable point, for `duration_s` seconds (then the request stops and
    the controller's or the device's own value comes back) or, with None, written once."""

    device: str
    point: str
    value: float
    duration_s: float | None = None

    def __post_init__(self) -> None:
        _text("setpoint action", "device", self.device)
        _text(f"setpoint action on {self.device}", "point", self.point)
        where = f"setpoint action {self.device}.{self.point}"
        if not _number(self.value):
            raise ValueError(f"{where}: value must be a finite number, got {self.value!r}")
        if self.duration_s is not None and not (_number(self.duration_s) and self.duration_s > 0):
            raise ValueError(f"{where}: duration_s must be a finite number > 0 or None, got {self.duration_s!r}")


@dataclass(frozen=True, slots=True)
class Inspection:
    """A non-control action for a person on site, e.g. "inspect cooling fans"."""

    text: str

    def __post_init__(self) -> None:
        _text("inspection", "text", self.text)


Action = SetpointAction | Inspection


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommendation. `key` names the condition it answers (e.g. "tx1.top_oil_high"): the
    same condition proposed again has the same key, which is how duplicates are folded."""

    id: str
    key: str
    proposer: Proposer
    evidence: Evidence
    rationale: str
    actions: tuple[Action, ...]
    created_at: float
    expires_at: float

    def __post_init__(self) -> None:
        _text("recommendation", "id", self.id)
        where = f"recommendation {self.id}"
        _text(where, "key", self.key)
        _text(where, "rationale", self.rationale)
        if not isinstance(self.proposer, Proposer) or not isinstance(self.evidence, Evidence):
            raise ValueError(f"{where}: proposer must be a Proposer and evidence an Evidence")
        if not isinstance(self.actions, tuple) or not self.actions:
            raise ValueError(f"{where}: actions must be a non-empty tuple")
        if any(not isinstance(a, SetpointAction | Inspection) for a in self.actions):
            raise ValueError(f"{where}: every action must be a SetpointAction or an Inspection")
        points = [(a.device, a.point) for a in self.setpoints]
        if len(set(points)) != len(points):
            raise ValueError(f"{where}: two actions request the same point")
        if not (_number(self.created_at) and _number(self.expires_at)) or self.expires_at <= self.created_at:
            raise ValueError(f"{where}: needs finite times with expires_at > created_at, got "
                             f"created_at={self.created_at!r} expires_at={self.expires_at!r}")

    @property
    def setpoints(self) -> tuple[SetpointAction, ...]:
        return tuple(a for a in self.actions if isinstance(a, SetpointAction))

    @property
    def controls(self) -> bool:
        """Whether confirming it moves the plant (else it completes on confirmation)."""
        return any(isinstance(a, SetpointAction) for a in self.actions)


class State(enum.Enum):
    PROPOSED = "proposed"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SUPERSEDED = "superseded"
    EXECUTING = "executing"
    COMPLETED = "completed"
    FAILED = "failed"
    BLOCKED = "blocked"


TRANSITIONS: Mapping[State, frozenset[State]] = MappingProxyType({
    State.PROPOSED: frozenset({State.CONFIRMED, State.REJECTED, State.EXPIRED, State.SUPERSEDED}),
    # from CONFIRMED, straight to an end when the first cycle refuses it (blocked, failed) or when
    # there is nothing to execute (an inspection completes on confirmation)
    State.CONFIRMED: frozenset({State.EXECUTING, State.COMPLETED, State.FAILED, State.BLOCKED}),
    State.EXECUTING: frozenset({State.COMPLETED, State.FAILED, State.BLOCKED}),
    State.REJECTED: frozenset(),
    State.EXPIRED: frozenset(),
    State.SUPERSEDED: frozenset(),
    State.COMPLETED: frozenset(),
    State.FAILED: frozenset(),
    State.BLOCKED: frozenset(),
})
"""The allowed state changes; every other one is refused. A recommendation is created PROPOSED."""

CLOSED: frozenset[State] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)
"""States nothing leaves: a closed recommendation never reopens."""

ACTIVE: frozenset[State] = frozenset({State.CONFIRMED, State.EXECUTING})
"""States in which a recommendation is (about to be) acted on."""


def allowed(from_state: State | None, to_state: State) -> bool:
    """Whether the table allows this change; `from_state` None is the creation."""
    if from_state is None:
        return to_state is State.PROPOSED
    return to_state in TRANSITIONS[from_state]


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change, as published on the decision lane and written to the audit log.

    `from_state` is None when the recommendation is created. `by` is who caused it: the key id or
    person who confirmed or rejected, or "system" (expiry, folding, the scan cycle)."""

    rec_id: str
    from_state: State | None
    to_state: State
    t_wall: float
    by: str
    reason: str = ""
