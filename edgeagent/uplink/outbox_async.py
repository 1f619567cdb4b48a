"""`AsyncOutbox`: the daemon's face of the outbox, with every disk access on one worker thread.

Why a dedicated thread rather than `asyncio.to_thread`: an fsync on a worn SD card can take
hundreds of milliseconds, and the event loop (MQTT keepalives, device polling, the scan cycle)
must never wait for it; and the `Outbox` (its SQLite connection, its running totals) is made for
one thread, so all calls, in the order they were made, go to the same one. The thread is a daemon
thread so that a disk that stalls for good cannot keep the process from exiting after `close`
gave up waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from edgeagent.uplink.outbox_types import Lane, OutboxError, OutboxStats, Record, validate_append

if TYPE_CHECKING:
    from edgeagent.uplink.outbox import Outbox

__all__ = ["AsyncOutbox"]

log = structlog.get_logger("edgeagent.uplink.outbox")

T = TypeVar("T")


class _State(enum.Enum):
    NEW = "not started"
    STARTING = "starting"
    RUNNING = "running"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class _Job:
    run: Callable[[Outbox], object]
    future: concurrent.futures.Future[Any] | None  # None: nobody waits (append_nowait)
    what: str
    final: bool = False  # the close job: done, not failed, if the worker ends before reaching it


def _settle(future: concurrent.futures.Future[Any], result: object = None, error: BaseException | None = None) -> None:
    """Complete a future unless its waiter already cancelled it."""
    try:
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
    except concurrent.futures.InvalidStateError:
        pass


class AsyncOutbox:
    """Runs an `Outbox` on its own thread; every method queues its call there, in call order."""

    def __init__(self, outbox_factory: Callable[[], Outbox], *, close_timeout_s: float = 10.0) -> None:
        self._factory = outbox_factory
        self._close_timeout_s = close_timeout_s
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _state and enqueueing; never held across I/O
        self._state = _State.NEW
        self._stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.nowait_failures = 0  # append_nowait records that could not be stored (each one logged)

    async def start(self) -> None:
        """Start the worker thread and open the outbox on it; raises what opening raised."""
        with self._lock:
            if self._state is not _State.NEW:
                raise OutboxError(f"the outbox cannot be started: it is {self._state.value}")
            self._state = _State.STARTING
        opened: concurrent.futures.Future[None] = concurrent.futures.Future()
        thread = threading.Thread(target=self._run, args=(opened,), name="edgeagent-outbox", daemon=True)
        thread.start()
        await asyncio.wrap_future(opened)

    async def append(self, lane: Lane, topic: str, payload: bytes) -> Record:
        """Store a record; for EVENT and DECISION, it is on disk when this returns."""
        validate_append(lane, topic, payload)
        return await self._call(f"append {lane.value}", lambda ob: ob.append(lane, topic, payload))

    async def flush(self) -> None:
        await self._call("flush", lambda ob: ob.flush())

    async def pending(self, limit: int, after: dict[Lane, int] | None = None) -> list[Record]:
        marks = dict(after) if after else None  # the caller may change its dict while we wait
        return await self._call("pending", lambda ob: ob.pending(limit, marks))

    async def ack(self, ids: Iterable[int]) -> None:
        id_list = list(ids)
        await self._call("ack", lambda ob: ob.ack(id_list))

    async def stats(self) -> OutboxStats:
        return await self._call("stats", lambda ob: ob.stats())

    def append_nowait(self, lane: Lane, topic: str, payload: bytes) -> None:
        """Queue an append without waiting, for synchronous callers such as the scan cycle.

        Never blocks: it checks the input (ValueError at once, in the caller's thread) and puts the
        call on an unbounded queue. It may be called before `start()`; the record is stored once
        the outbox is open. A record that cannot be stored (disk full) is logged as
        `outbox.append_failed` and counted in `nowait_failures`. After `close()` it raises
        `OutboxError`: the record would have nowhere to go."""
        validate_append(lane, topic, payload)
        job = _Job(lambda ob: ob.append(lane, topic, payload), None, f"append {lane.value} on {topic!r}")
        self._submit(job, before_start=True)

    async def close(self) -> None:
        """Flush, close the outbox and stop the thread, waiting at most `close_timeout_s`; raises
        `OutboxError` if the worker did not finish in time (committed records are safe anyway)."""
        closed: concurrent.futures.Future[None] | None = None
        with self._lock:
            state = self._state
            if state is _State.NEW:
                self._state = _State.CLOSED
            elif state in (_State.STARTING, _State.RUNNING):
                self._state = _State.CLOSING
                closed = concurrent.futures.Future()
                self._jobs.put(_Job(lambda ob: ob.close(), closed, "close", final=True))
                self._jobs.put(None)
        if state is _State.NEW:
            self._drain(OutboxError("the outbox was closed before it was started"))
            _settle(self._stopped)
            return
        error: BaseException | None = None
        try:
            async with asyncio.timeout(self._close_timeout_s):
                if closed is not None:
                    try:
                        await asyncio.shield(asyncio.wrap_future(closed))
                    except OutboxError as e:
                        error = e
                await asyncio.shield(asyncio.wrap_future(self._stopped))
        except TimeoutError as e:
            log.error("outbox.close_timeout", timeout_s=self._close_timeout_s)
            raise OutboxError(
                f"the outbox worker did not finish within {self._close_timeout_s} s (disk stalled?); "
                "records committed before are safe"
            ) from e
        if error is not None:
            raise error

    # -- internals ----------------------------------------------------------------------------

    async def _call(self, what: str, run: Callable[[Outbox], T]) -> T:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._submit(_Job(run, future, what), before_start=False)
        return await asyncio.wrap_future(future)

    def _submit(self, job: _Job, *, before_start: bool) -> None:
        with self._lock:
            state = self._state
            if state in (_State.STARTING, _State.RUNNING) or (state is _State.NEW and before_start):
                self._jobs.put(job)
                return
        if state is _State.NEW:
            raise OutboxError(f"the outbox is not started: await start() before {job.what}")
        raise OutboxError(f"the outbox is {state.value}: cannot {job.what}")

    def _run(self, opened: concurrent.futures.Future[None]) -> None:
        """The worker thread: open, then run queued calls in order until the stop mark."""
        try:
            outbox = self._factory()
        except Exception as e:
            self._finish(OutboxError(f"the outbox failed to open: {e}"))  # queued appends: reported lost
            _settle(opened, error=e)
            return
        with self._lock:
            if self._state is _State.STARTING:
                self._state = _State.RUNNING
        _settle(opened)
        try:
            while (job := self._jobs.get()) is not None:
                self._do(outbox, job)
        finally:
            try:
                outbox.close()  # idempotent; closes only if the close job never ran
            except Exception as e:
                log.error("outbox.close_failed", error=str(e))
            self._finish(OutboxError("the outbox is closed"))

    def _do(self, outbox: Outbox, job: _Job) -> None:
        if job.future is not None and not job.future.set_running_or_notify_cancel():
            return  # the waiter was cancelled before the call started: skip it
        try:
            result = job.run(outbox)
        except Exception as e:
            if job.future is None:
                self._nowait_failed(job, e)
            else:
                job.future.set_exception(e)
            return
        if job.future is not None:
            job.future.set_result(result)

    def _nowait_failed(self, job: _Job, error: BaseException) -> None:
        self.nowait_failures += 1
        log.error("outbox.append_failed", what=job.what, error=str(error), failures=self.nowait_failures)

    def _finish(self, error: OutboxError) -> None:
        with self._lock:
            self._state = _State.CLOSED
        self._drain(error)
        _settle(self._stopped)

    def _drain(self, error: OutboxError) -> None:
        """Fail whatever is still queued, so no caller waits forever on a call that cannot run."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is None:
                continue
            if job.future is None:
                self._nowait_failed(job, error)
            elif job.final:
                _settle(job.future)
            else:
                _settle(job.future, error=error)
