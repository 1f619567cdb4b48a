"""Simulated time for the emulated chips, shared with the drivers' injectable clock and sleep."""

from __future__ import annotations

import threading
import time


class SimClock:
    """Seconds of simulated time. `sleep` advances it at once instead of waiting.

    With `follow_real`, it also runs with the monotonic clock, and a sleep skips ahead: an asyncio
    adapter can poll on real time while its drivers' waits (conversion times, sample periods) cost
    nothing. Thread-safe: the adapter's worker threads sleep on it while a test reads it.
    """

    def __init__(self, start_s: float = 0.0, follow_real: bool = False) -> None:
        self._lock = threading.Lock()
        self._offset_s = start_s
        self._real0 = time.monotonic() if follow_real else None

    def now(self) -> float:
        with self._lock:
            real = 0.0 if self._real0 is None else time.monotonic() - self._real0
            return self._offset_s + real

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds} s)")
        with self._lock:
            self._offset_s += seconds

    advance = sleep
