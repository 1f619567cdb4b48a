"""The outbox's values and errors, and the input checks shared by `Outbox` and `AsyncOutbox`.

They live apart from the SQLite code so that `AsyncOutbox.append_nowait` can reject bad input in
the caller's thread, at once, instead of failing later and silently on the worker thread.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Lane(enum.Enum):
    """What kind of record, which decides how hard the outbox holds on to it.

    EVENT and DECISION are committed before `append` returns and are never thinned or dropped;
    TELEMETRY is batched and is the only lane the byte budget may thin or drop.
    """

    EVENT = "event"
    DECISION = "decision"
    TELEMETRY = "telemetry"


URGENT_LANES: tuple[Lane, ...] = (Lane.EVENT, Lane.DECISION)


@dataclass(frozen=True, slots=True)
class Record:
    """One record waiting for the broker's acknowledgement.

    `id` is unique and strictly increasing, also across restarts and wall-clock steps, so the
    uplink and the consumer upstream can use it to order and to de-duplicate (delivery is at least
    once: a record whose ack was lost in a crash is sent again with the same id).
    """

    id: int
    lane: Lane
    topic: str  # topic suffix; the MQTT layer prefixes site and node
    payload: bytes  # a JSON object
    created_wall: float  # unix seconds when appended (not monotonic: it travels upstream)


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """A health snapshot. `over_budget` means events and decisions alone exceed the byte budget:
    they are still accepted (they are never dropped), but the daemon should raise an alarm."""

    records: dict[str, int]  # pending count per lane value ("event", "decision", "telemetry")
    bytes: int  # pending payload bytes, all lanes
    budget_bytes: int
    thinned: int  # telemetry records removed by thinning since open
    dropped: int  # telemetry records dropped since open (budget after thinning, or a full disk)
    over_budget: bool
    oldest_wall: float | None  # created_wall of the oldest pending record (smallest id)


class OutboxError(Exception):
    """The outbox cannot do what was asked: unreadable database, closed outbox, I/O failure.
    The message names the file and, where there is one, what an operator can do about it."""


class OutboxFull(OutboxError):
    """The disk (or the database size limit) is full and no telemetry was left to make room.
    The record was NOT stored: the caller must not report it as emitted."""


_TOPIC_FORBIDDEN = ("+", "#", "\x00")


def validate_append(lane: object, topic: object, payload: object) -> None:
    """Reject what would poison the uplink later: a record that cannot be published or parsed
    upstream would otherwise sit at the head of its lane and block everything behind it."""
    if not isinstance(lane, Lane):
        raise ValueError(f"outbox lane must be a Lane (EVENT, DECISION or TELEMETRY), got {lane!r}")
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"outbox topic must be a non-empty str such as 'events', got {topic!r}")
    bad = [c for c in _TOPIC_FORBIDDEN if c in topic]
    if bad or topic.startswith("/") or topic.endswith("/"):
        raise ValueError(
            f"outbox topic {topic!r} is not a usable MQTT topic suffix: no wildcards (+ #), no NUL, "
            "no leading or trailing '/'"
        )
    if not isinstance(payload, bytes):
        raise ValueError(f"outbox payload must be bytes holding a JSON object, got {type(payload).__name__}")
    if not payload.startswith(b"{"):
        raise ValueError(f"outbox payload must be a JSON object starting with b'{{', got {payload[:20]!r}")
