"""Supervision: restarts with backoff, transitions logged once, never every retry."""

from __future__ import annotations

import asyncio
import random

import pytest
from structlog.testing import capture_logs

from edgeagent.supervise import Backoff, LinkState, supervise
from tests.helpers import eventually


def test_backoff_grows_is_capped_and_jittered() -> None:
    b = Backoff(initial_s=1, maximum_s=8, factor=2, jitter=0.1)
    rng = random.Random(1)
    delays = [b.delay(n, rng) for n in range(1, 8)]
    for expected, got in zip([1, 2, 4, 8, 8, 8, 8], delays, strict=True):
        assert expected * 0.9 <= got <= expected * 1.1
    assert len({round(d, 6) for d in delays[3:]}) > 1  # jitter: not in lockstep


async def test_failures_are_logged_once_and_recovery_once() -> None:
    state = LinkState("dev", device="x")
    calls = 0
    downs: list[str] = []

    async def session() -> None:
        nonlocal calls
        calls += 1
        if calls in (1, 2, 3):
            raise ConnectionRefusedError("refused" if calls != 2 else "timed out")
        state.set_up()
        if calls == 4:
            raise OSError("reset by peer")
        await asyncio.sleep(3600)

    with capture_logs() as logs:
        task = asyncio.create_task(supervise(state, session, downs.append, Backoff(0.01, 0.05)))
        await eventually(lambda: calls >= 5 and state.up, what="recovered session")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    events = [(e["event"], e.get("reason")) for e in logs if e["log_level"] != "debug"]
    assert events == [
        ("dev.offline", "refused"),
        ("dev.connected", None),
        ("dev.offline", "reset by peer"),
        ("dev.recovered", None),
    ]
    assert downs == ["refused", "timed out", "refused", "reset by peer"]
    assert state.restarts == 4


async def test_backoff_resets_after_a_healthy_session() -> None:
    state = LinkState("dev")
    sleeps: list[float] = []
    calls = 0

    class Fixed(Backoff):
        def delay(self, attempt: int, rng: random.Random) -> float:
            sleeps.append(attempt)
            return 0.0

    async def session() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            state.set_up()
        raise RuntimeError("boom")

    task = asyncio.create_task(supervise(state, session, backoff=Fixed()))
    await eventually(lambda: calls >= 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sleeps[:5] == [1, 2, 1, 2, 3]
