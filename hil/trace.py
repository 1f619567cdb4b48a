"""State trace: one JSON line per physics step, written off the physics loop.

Each line holds :data:`TRACE_KEYS`: ``t_mono`` is the server's ``time.monotonic()`` when the
step's state became visible in the registers (on Linux that clock is system-wide, so a client
in another process can line its own samples up with the plant's truth), then the plant's own
values, and with a transformer (``transformer=True``) :data:`TRANSFORMER_TRACE_KEYS`: its true
state, before any sensor drift.  Steps computed in one catch-up of the physics loop (several at speeds above 1) are
published together and share the ``t_mono`` of that publication; only the last of them is
actually in the registers.

The physics loop only appends tuples to a list (:meth:`StateTrace.record`).  Every half
second (:meth:`StateTrace.tick`) the batch is handed to a writer thread that formats and
writes it and flushes the file, so a slow disk never holds up the plant.  :meth:`close`
writes what is left and waits for the writer.  A write error is not swallowed: the next
``tick`` (or ``close``) raises :class:`TraceError`.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from pathlib import Path

from hil.physics import PlantState
from hil.transformer import TransformerState

TRACE_KEYS = (
    "t_mono",
    "t_plant_s",
    "meter_w",
    "load_w",
    "pv_w",
    "pv_available_w",
    "pv_limit_pct",
    "bess_w",
    "bess_setpoint_w",
    "soc_pct",
    "bess_temp_c",
)
TRANSFORMER_TRACE_KEYS = (
    "ambient_c",
    "top_oil_c",
    "hot_spot_c",
    "transformer_load_pu",
    "transformer_current_a",
    "fans_on",
)
FLUSH_INTERVAL_S = 0.5  # a tick is 0.1 s, so lines reach the file within ~0.6 s

_Row = tuple[float, ...]


class TraceError(Exception):
    """The trace file cannot be opened or written; the message names the file."""


class StateTrace:
    """A JSON-lines trace file of plant states."""

    def __init__(
        self, path: str | Path, *, flush_interval_s: float = FLUSH_INTERVAL_S, transformer: bool = False
    ) -> None:
        self.path = Path(path)
        self.keys = TRACE_KEYS + (TRANSFORMER_TRACE_KEYS if transformer else ())
        self.flush_interval_s = flush_interval_s
        try:
            self._file = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise TraceError(f"cannot open trace file {self.path}: {exc.strerror or exc}") from None
        self._batch: list[_Row] = []
        self._queue: queue.SimpleQueue[list[_Row] | None] = queue.SimpleQueue()
        self._error: str | None = None
        self._last_handoff: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._write_loop, name="hil-trace", daemon=True)
        self._thread.start()

    def record(self, t_mono: float, state: PlantState, transformer: TransformerState | None = None) -> None:
        """Note one step (cheap: no formatting, no I/O); ``transformer`` iff the trace was opened with one."""
        extra: _Row = ()
        if transformer is not None:
            extra = (
                transformer.ambient_c,
                transformer.top_oil_c,
                transformer.hot_spot_c,
                transformer.load_pu,
                transformer.load_current_a,
                transformer.fans_on,
            )
        self._batch.append(
            (
                t_mono,
                state.t_s,
                state.meter_w,
                state.load_w,
                state.pv_w,
                state.pv_available_w,
                state.pv_limit_pct,
                state.bess_w,
                state.bess_setpoint_w,
                state.soc_pct,
                state.bess_temp_c,
                *extra,
            )
        )

    def tick(self, now_mono: float) -> None:
        """Hand the batch to the writer if the flush interval has passed; raise if writing failed."""
        self._raise_if_failed()
        if self._last_handoff is None:
            self._last_handoff = now_mono
        elif now_mono - self._last_handoff >= self.flush_interval_s:
            self._handoff()
            self._last_handoff = now_mono

    def close(self) -> None:
        """Write everything recorded, flush, close the file (idempotent); raise if writing failed."""
        if not self._closed:
            self._closed = True
            self._handoff()
            self._queue.put(None)
            self._thread.join()
        self._raise_if_failed()

    def _handoff(self) -> None:
        if self._batch:
            self._queue.put(self._batch)
            self._batch = []

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise TraceError(f"cannot write trace file {self.path}: {self._error}")

    def _write_loop(self) -> None:
        try:
            while (batch := self._queue.get()) is not None:
                self._file.write("".join(json.dumps(dict(zip(self.keys, row, strict=True))) + "\n" for row in batch))
                self._file.flush()
        except Exception as exc:  # the thread's boundary: any failure is reported, never lost
            self._error = getattr(exc, "strerror", None) or f"{type(exc).__name__}: {exc}"
            while self._queue.get() is not None:  # keep draining so that close() can finish
                pass
        finally:
            with contextlib.suppress(OSError):
                self._file.close()
