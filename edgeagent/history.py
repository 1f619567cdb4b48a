"""Persistent point history for the daemon: GOOD numeric samples → hourly aggregates on disk.

Why hourly aggregates: the top-oil forecaster looks back 240 hours, and a year of one point is
~8,800 rows instead of millions of samples on an SD card. Samples are accumulated in memory per
point and hour (`observe`, called when the image is written, a few float operations); a finished
hour is written by the `history` task through a one-thread executor, so neither the scan cycle nor
the event loop ever waits on the disk. At stop, the hour in progress is written too and merged with
the rest of that hour after a restart (see `history_store`).

Hours are taken from an injectable clock (`clock`, Unix seconds, default `time.time`), not from
the samples: an accelerated scenario hands in its simulated clock, so a simulated hour is an hour.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import structlog

from edgeagent.config_history import HistoryConfig
from edgeagent.history_store import FILE_NAME, HistoryError, HistoryStore, HourlySeries, HourRow, hour_of
from edgeagent.image import PointSpec, ProcessImage, Sample

log = structlog.get_logger("edgeagent.history")

Clock = Callable[[], float]
PRUNE_EVERY_S = 3600.0
MAX_PENDING_HOURS = 24 * 7
"""Finished hours kept in memory per point while the disk refuses writes; older ones are dropped (logged)."""


class _Acc:
    __slots__ = ("count", "max", "min", "total")

    def __init__(self, value: float) -> None:
        self.total, self.min, self.max, self.count = value, value, value, 1

    def add(self, value: float) -> None:
        self.total += value
        self.count += 1
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value


class HourlyAccumulator:
    """In-memory aggregates per (point, hour start); `pop_finished` hands over hours that are over."""

    def __init__(self) -> None:
        self._acc: dict[tuple[str, int], _Acc] = {}

    def add(self, point: str, t_s: float, value: float) -> None:
        key = (point, hour_of(t_s))
        acc = self._acc.get(key)
        if acc is None:
            self._acc[key] = _Acc(value)
        else:
            acc.add(value)

    def pop_finished(self, now_s: float) -> list[HourRow]:
        """Hours that started before the hour holding `now_s`."""
        current = hour_of(now_s)
        return self._pop([k for k in self._acc if k[1] < current])

    def pop_all(self) -> list[HourRow]:
        return self._pop(list(self._acc))

    def _pop(self, keys: Iterable[tuple[str, int]]) -> list[HourRow]:
        rows = []
        for key in sorted(keys, key=lambda k: (k[1], k[0])):
            acc = self._acc.pop(key)
            rows.append(HourRow(key[0], key[1], acc.total / acc.count, acc.min, acc.max, acc.count))
        return rows


class HistoryService:
    """The daemon's side of the history: `observe` from the image, `run` as a task, `close` at the end."""

    def __init__(self, path: Path | str, cfg: HistoryConfig, clock: Clock = time.time,
                 flush_every_s: float = 10.0) -> None:
        self.path = Path(path)
        self.cfg = cfg
        self.clock = clock
        self.flush_every_s = flush_every_s
        self.acc = HourlyAccumulator()
        self.hours_written = 0
        self._pending: list[HourRow] = []
        self._store: HistoryStore | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="history")
        self._failing = False
        self._last_prune = -math.inf

    @classmethod
    def in_state_dir(cls, state_dir: Path | str, cfg: HistoryConfig, clock: Clock = time.time) -> HistoryService:
        return cls(Path(state_dir) / FILE_NAME, cfg, clock)

    def observe(self, sample: Sample) -> None:
        """Called for every sample written to the image; keeps GOOD finite numbers of kept points."""
        value = sample.value
        if not sample.good or isinstance(value, bool) or not isinstance(value, int | float):
            return
        if not math.isfinite(value) or not self.cfg.keeps(sample.point):
            return
        self.acc.add(sample.point, self.clock(), float(value))

    async def run(self) -> None:
        """Open the store, then every `flush_every_s` write the finished hours and, hourly, prune old ones."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open)
        while True:
            await self.flush()
            await asyncio.sleep(self.flush_every_s)

    async def flush(self) -> int:
        """Write every finished hour (and prune when due); returns how many hours were written."""
        now = self.clock()
        rows = self.acc.pop_finished(now)
        prune = now - self._last_prune >= PRUNE_EVERY_S
        if not rows and not self._pending and not prune:
            return 0
        if prune:
            self._last_prune = now
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write, rows, now if prune else None)

    async def hourly(self, point: str, since: float | datetime, until: float | datetime) -> HourlySeries:
        """The stored hours of `point` in [since, until), read in the history's worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._hourly, point, since, until)

    def close(self) -> None:
        """Write what is pending and the hour in progress (merged after a restart), then close. Blocking."""
        rows = self.acc.pop_all()
        try:
            self._executor.submit(self._write, rows, None).result()
        except RuntimeError:  # executor already shut down: close() called twice
            return
        finally:
            self._executor.shutdown(wait=True)
        if self._store is not None:
            self._store.close()
            self._store = None

    def _open(self) -> None:
        if self._store is None:
            self._store = HistoryStore(self.path)
            log.info("history.opened", path=str(self.path), retention_days=self.cfg.retention_days)

    def _hourly(self, point: str, since: float | datetime, until: float | datetime) -> HourlySeries:
        self._open()
        assert self._store is not None
        return self._store.hourly(point, since, until)

    def _write(self, rows: list[HourRow], prune_now: float | None) -> int:
        """Runs in the worker thread. A failure keeps the rows for the next try and is logged once."""
        batch = self._pending + rows
        self._pending = []
        try:
            self._open()
            assert self._store is not None
            if batch:
                self._store.merge_live(batch)
            if prune_now is not None:
                pruned = self._store.prune(prune_now - self.cfg.retention_days * 86_400.0)
                if pruned:
                    log.info("history.pruned", rows=pruned, retention_days=self.cfg.retention_days)
        except HistoryError as exc:
            self._pending = self._bounded(batch)
            if not self._failing:
                self._failing = True
                log.error("history.write_failed", error=str(exc), pending_hours=len(self._pending))
            return 0
        if self._failing:
            self._failing = False
            log.info("history.write_recovered", hours=len(batch))
        self.hours_written += len(batch)
        return len(batch)

    def _bounded(self, rows: list[HourRow]) -> list[HourRow]:
        keep_from = max((r.t_hour for r in rows), default=0) - MAX_PENDING_HOURS * 3600
        kept = [r for r in rows if r.t_hour > keep_from]
        if len(kept) < len(rows):
            log.error("history.hours_dropped", hours=len(rows) - len(kept), reason="history file not writable")
        return kept


class RecordingImage(ProcessImage):
    """The process image, telling the history about every sample written (the daemon's only hook)."""

    def __init__(self, specs: Iterable[PointSpec], history_len: int, on_write: Callable[[Sample], None]) -> None:
        super().__init__(specs, history_len)
        self._on_write = on_write

    def write(self, sample: Sample) -> None:
        super().write(sample)
        self._on_write(sample)
