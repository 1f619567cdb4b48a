"""AsyncOutbox: disk work off the event loop, on one thread, in call order; bounded close."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edgeagent.uplink import AsyncOutbox, Lane, Outbox, OutboxError, OutboxFull, Record


class SpyOutbox(Outbox):
    """Records the thread of every call; can be made to stall like a dying SD card."""

    def __init__(self, path: Path, **kwargs: int) -> None:
        self.threads: set[int] = {threading.get_ident()}
        self.gate = threading.Event()
        self.gate.set()
        super().__init__(path, **kwargs)

    def append(self, lane: Lane, topic: str, payload: bytes) -> Record:
        self.threads.add(threading.get_ident())
        self.gate.wait(10)
        return super().append(lane, topic, payload)

    def pending(self, limit: int, after: dict[Lane, int] | None = None) -> list[Record]:
        self.threads.add(threading.get_ident())
        return super().pending(limit, after)

    def flush(self) -> None:
        self.threads.add(threading.get_ident())
        self.gate.wait(10)
        super().flush()


class Factory:
    def __init__(self, path: Path, **kwargs: int) -> None:
        self.path = path
        self.kwargs = kwargs
        self.made: SpyOutbox | None = None

    def __call__(self) -> SpyOutbox:
        self.made = SpyOutbox(self.path, **self.kwargs)
        return self.made

    @property
    def outbox(self) -> SpyOutbox:
        assert self.made is not None
        return self.made


async def test_every_call_runs_on_one_worker_thread_not_the_loop(tmp_path: Path) -> None:
    factory = Factory(tmp_path / "o.sqlite")
    ao = AsyncOutbox(factory)
    await ao.start()
    event = await ao.append(Lane.EVENT, "events", b'{"a": 1}')
    tel = await ao.append(Lane.TELEMETRY, "telemetry", b'{"t": 1}')
    await ao.flush()
    assert await ao.pending(10) == [event, tel]
    await ao.ack([event.id])
    assert (await ao.stats()).records == {"event": 0, "decision": 0, "telemetry": 1}
    await ao.close()
    threads = factory.outbox.threads
    assert len(threads) == 1  # created, and called, on the same thread
    assert threading.get_ident() not in threads


async def test_append_nowait_never_blocks_and_its_records_show_up_in_order(tmp_path: Path) -> None:
    factory = Factory(tmp_path / "o.sqlite")
    ao = AsyncOutbox(factory)
    await ao.start()
    factory.outbox.gate.clear()  # the disk stalls
    started = time.perf_counter()
    for i in range(200):
        ao.append_nowait(Lane.EVENT, "events", b'{"i": %d}' % i)
    assert time.perf_counter() - started < 0.05  # 200 calls while the worker is stuck
    factory.outbox.gate.set()
    pending = await ao.pending(1000)
    assert [r.payload for r in pending] == [b'{"i": %d}' % i for i in range(200)]
    assert ao.nowait_failures == 0
    await ao.close()


async def test_append_nowait_before_start_is_stored_once_open(tmp_path: Path) -> None:
    ao = AsyncOutbox(lambda: Outbox(tmp_path / "o.sqlite"))
    ao.append_nowait(Lane.DECISION, "decisions", b'{"early": true}')
    with pytest.raises(OutboxError, match="not started"):
        await ao.pending(10)
    await ao.start()
    assert [r.payload for r in await ao.pending(10)] == [b'{"early": true}']
    await ao.close()


async def test_append_nowait_rejects_bad_input_at_once(tmp_path: Path) -> None:
    ao = AsyncOutbox(lambda: Outbox(tmp_path / "o.sqlite"))
    await ao.start()
    with pytest.raises(ValueError, match="JSON object"):
        ao.append_nowait(Lane.EVENT, "events", b"not json")
    with pytest.raises(ValueError, match="JSON object"):
        await ao.append(Lane.EVENT, "events", b"[]")
    assert (await ao.stats()).records["event"] == 0
    await ao.close()


async def test_a_failed_nowait_append_is_logged_and_counted(tmp_path: Path) -> None:
    class FullOutbox(Outbox):
        def append(self, lane: Lane, topic: str, payload: bytes) -> Record:
            raise OutboxFull("disk full (test)")

    ao = AsyncOutbox(lambda: FullOutbox(tmp_path / "o.sqlite"))
    await ao.start()
    with capture_logs() as logs:
        ao.append_nowait(Lane.EVENT, "events", b"{}")
        await ao.flush()  # runs after the append: the failure is in by now
    assert ao.nowait_failures == 1
    assert [e["event"] for e in logs] == ["outbox.append_failed"]
    with pytest.raises(OutboxFull):
        await ao.append(Lane.EVENT, "events", b"{}")  # an awaited append gets the error itself
    await ao.close()


async def test_close_flushes_and_later_calls_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    ao = AsyncOutbox(lambda: Outbox(path, telemetry_batch=1000))
    await ao.start()
    record = await ao.append(Lane.TELEMETRY, "telemetry", b'{"t": 1}')
    await ao.close()
    await ao.close()  # idempotent
    with pytest.raises(OutboxError, match="closed"):
        await ao.append(Lane.EVENT, "events", b"{}")
    with pytest.raises(OutboxError, match="closed"):
        ao.append_nowait(Lane.EVENT, "events", b"{}")
    with Outbox(path) as ob:
        assert ob.pending(10) == [record]


async def test_close_is_bounded_when_the_disk_stalls(tmp_path: Path) -> None:
    factory = Factory(tmp_path / "o.sqlite")
    ao = AsyncOutbox(factory, close_timeout_s=0.3)
    await ao.start()
    factory.outbox.gate.clear()
    ao.append_nowait(Lane.EVENT, "events", b"{}")  # the worker gets stuck in this one
    started = time.monotonic()
    with pytest.raises(OutboxError, match=r"did not finish within 0\.3 s"):
        await ao.close()
    assert time.monotonic() - started < 1.0
    factory.outbox.gate.set()  # the disk comes back: the worker finishes and closes the file
    await asyncio.wait_for(asyncio.to_thread(_wait_closed, factory.outbox), timeout=5)
    with Outbox(tmp_path / "o.sqlite") as ob:
        assert len(ob.pending(10)) == 1


def _wait_closed(outbox: Outbox) -> None:
    while outbox._conn is not None:
        time.sleep(0.01)


async def test_start_reports_a_corrupt_file_and_close_still_works(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"garbage" * 1000)
    ao = AsyncOutbox(lambda: Outbox(path))
    ao.append_nowait(Lane.EVENT, "events", b"{}")
    with capture_logs() as logs, pytest.raises(OutboxError, match="move the file aside"):
        await ao.start()
    await ao.close()
    assert ao.nowait_failures == 1  # the queued record is reported lost, not silently forgotten
    assert "outbox.append_failed" in [e["event"] for e in logs]
    with pytest.raises(OutboxError):
        await ao.stats()


async def test_the_event_loop_keeps_running_while_the_disk_is_slow(tmp_path: Path) -> None:
    factory = Factory(tmp_path / "o.sqlite")
    ao = AsyncOutbox(factory)
    await ao.start()
    factory.outbox.gate.clear()
    flush = asyncio.create_task(ao.flush())
    ticks = 0
    for _ in range(10):
        await asyncio.sleep(0.005)
        ticks += 1
    assert ticks == 10
    assert not flush.done()
    factory.outbox.gate.set()
    await flush
    await ao.close()
