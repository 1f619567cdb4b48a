"""SIGKILL the uplink at random moments while it publishes, 20 times: nothing emitted is lost."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import sys
from pathlib import Path

from tests.helpers import eventually
from tests.mosquitto import Mosquitto
from tests.uplink.durable_subscriber import DurableSubscriber

CHILD = Path(__file__).with_name("uplink_crash_child.py")
ROOT = Path(__file__).parents[2]


async def run_child(port: int, state: Path, emit: bool, kill_after_s: float | None) -> list[int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(port), str(state), "1" if emit else "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.stdout is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 20)).strip() == b"ready"
    if kill_after_s is not None:
        await asyncio.sleep(kill_after_s)
        proc.send_signal(signal.SIGKILL)
    out = await asyncio.wait_for(proc.stdout.read(), 60)
    await asyncio.wait_for(proc.wait(), 10)
    lines = out.decode().split()
    if kill_after_s is None:
        assert lines and lines[-1] == "drained" and proc.returncode == 0
    return [int(x) for x in lines if x.isdigit()]


async def test_sigkill_during_publishing_loses_no_emitted_record(tmp_path: Path) -> None:
    store = tmp_path / "broker-store"
    store.mkdir()
    rng = random.Random(2026)
    state = tmp_path / "state"
    state.mkdir()
    with Mosquitto(tmp_path / "broker", extra_config=["persistence true", f"persistence_location {store}/",
                                                       "max_queued_messages 0"]) as broker:
        subscriber = DurableSubscriber(broker, "edgeagent/v1/site-1/edge-01/#")
        try:
            emitted: list[int] = []
            for _ in range(20):
                emitted += await run_child(broker.port, state, emit=True, kill_after_s=rng.uniform(0.2, 1.0))
            assert len(emitted) > 200
            await run_child(broker.port, state, emit=False, kill_after_s=None)  # restart and drain
            with contextlib.suppress(AssertionError):
                await eventually(lambda: set(emitted) <= subscriber.seen.ids, timeout_s=20)
        finally:
            subscriber.close()
    missing = set(emitted) - subscriber.seen.ids
    assert not missing, f"{len(missing)} emitted records never arrived"
    assert len(set(emitted)) == len(emitted)  # ids stay unique across crashes
    db = sqlite3.connect(state / "outbox.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
