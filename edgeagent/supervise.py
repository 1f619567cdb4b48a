"""Restart a failing task with jittered exponential backoff; log each transition once.

Like Home Assistant's coordinator: a link going down is logged once as `<name>.offline` with its
reason, failed retries only at debug level, and `<name>.recovered` once when it is back. A session
that reached its healthy state resets the backoff.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("edgeagent.supervise")


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.5
    maximum_s: float = 30.0
    factor: float = 2.0
    jitter: float = 0.2  # ± fraction, so a fleet of boxes does not reconnect in lockstep

    def delay(self, attempt: int, rng: random.Random) -> float:
        base = min(self.maximum_s, self.initial_s * self.factor ** max(0, attempt - 1))
        return base * (1 + rng.uniform(-self.jitter, self.jitter))


class LinkState:
    """Health of one link as state: up or down with a reason. Logs transitions, not repeats."""

    def __init__(self, name: str, **fields: object) -> None:
        self.name = name
        self.fields = fields
        self.up = False
        self.ever_up = False
        self.reason = "not started"
        self.restarts = 0
        self._logged_down: str | None = None
        self.on_change: Callable[[LinkState, str], None] | None = None
        """Called with (state, "connected" | "recovered" | "offline") on each transition."""

    def set_up(self, **fields: object) -> None:
        if not self.up:
            event = "recovered" if self.ever_up else "connected"
            log.info(f"{self.name}.{event}", **self.fields, **fields)
            self.up = True
            if self.on_change is not None:
                self.on_change(self, event)
        self.up = self.ever_up = True
        self.reason = ""
        self._logged_down = None

    def set_down(self, reason: str) -> None:
        """Once per outage at warning level; retries (whatever their reason) only at debug."""
        if self._logged_down is None:
            log.warning(f"{self.name}.offline", **self.fields, reason=reason)
            self._logged_down = reason
            self.up = False
            self.reason = reason
            if self.on_change is not None:
                self.on_change(self, "offline")
        else:
            log.debug(f"{self.name}.retry", **self.fields, reason=reason, first_reason=self._logged_down)
        self.up = False
        self.reason = reason


async def supervise(
    state: LinkState,
    session: Callable[[], Awaitable[None]],
    on_down: Callable[[str], None] = lambda reason: None,
    backoff: Backoff = Backoff(),
    rng: random.Random | None = None,
    stopped: Callable[[], bool] = lambda: False,
) -> None:
    """Run `session()` forever. A session is expected to call `state.set_up()` once healthy and to
    raise when its link fails; any exception but cancellation ends it, `on_down(reason)` runs, and
    it is started again after a backoff that grows while it keeps failing before getting up.
    Returns once `stopped()` is true after a session ended (the owner asked it to stop)."""
    rng = rng or random.Random()
    attempt = 0
    while not stopped():
        was_up_before = state.up
        try:
            await session()
            reason = "session ended"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
        if stopped():
            return
        reached_up = state.up or was_up_before
        state.set_down(reason)
        state.restarts += 1
        on_down(reason)
        attempt = 1 if reached_up else attempt + 1
        await asyncio.sleep(backoff.delay(attempt, rng))
