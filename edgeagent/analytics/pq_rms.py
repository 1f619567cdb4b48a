"""Streaming Urms(1/2): the RMS over one cycle, refreshed every half cycle (IEC 61000-4-30, 5.4.2).

Feed sample blocks of any size; the state carried between blocks makes the output independent of
how the stream was cut (up to float rounding).  Each output value is the RMS over the last full
cycle, time-stamped with the end of that cycle.  Its building block, the mean square of each half
cycle, is returned too: the event detector locates an event's edges inside a cycle from it.

Why not zero-crossing synchronisation: the window is one *nominal* cycle, as IEC 61000-4-30 permits
for Urms(1/2) on a dedicated channel.  When the sample rate is not a whole multiple of twice the
nominal frequency (60 Hz at 10 kS/s: 83.33 samples per half cycle), the half-cycle boundaries fall
between samples and the sample that straddles a boundary is shared between its two half cycles by
the fraction on each side, so every half cycle weighs exactly ``rate / (2 f)`` samples and a steady
sine's Urms stays flat.  Sample ``i`` stands for the interval ``[i, i + 1) / rate``.

The hot path is vectorised over the block (``np.add.reduceat`` over the half-cycle spans), so the
Python cost is per block, not per sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
NOMINAL_FREQUENCIES_HZ = (50.0, 60.0)
#: Fewer samples per cycle than this cannot resolve a half cycle usefully.
MIN_SAMPLES_PER_CYCLE = 16.0


def check_nominal_hz(nominal_hz: float) -> float:
    """``nominal_hz`` as a float, or ValueError unless it is 50 or 60."""
    if nominal_hz not in NOMINAL_FREQUENCIES_HZ:
        raise ValueError(f"nominal_hz must be 50 or 60, got {nominal_hz!r}")
    return float(nominal_hz)


@dataclass(frozen=True)
class UrmsBlock:
    """Urms(1/2) values that one ``feed`` completed, oldest first (arrays of equal length).

    ``t_s[k]``: end of the cycle the value covers (s); ``urms[k]``: RMS over that cycle, in the unit
    of the samples; ``half_ms[k]``: mean square over its second half cycle (the one ending at ``t_s[k]``).
    """

    t_s: FloatArray
    urms: FloatArray
    half_ms: FloatArray

    def __len__(self) -> int:
        return int(self.t_s.shape[0])


_EMPTY = np.empty(0, dtype=np.float64)


class UrmsHalfCycle:
    """Urms(1/2) of one channel.  ``feed(samples) -> UrmsBlock``; sample 0 is at ``t0_s``."""

    def __init__(self, rate_hz: float, nominal_hz: float = 50.0, *, t0_s: float = 0.0) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0.0):
            raise ValueError(f"rate_hz must be a finite number > 0, got {rate_hz!r}")
        self.nominal_hz = check_nominal_hz(nominal_hz)
        if rate_hz / self.nominal_hz < MIN_SAMPLES_PER_CYCLE:
            raise ValueError(f"rate_hz {rate_hz} gives fewer than {MIN_SAMPLES_PER_CYCLE:g} samples per cycle "
                             f"at {self.nominal_hz:g} Hz")
        if not math.isfinite(t0_s):
            raise ValueError(f"t0_s must be finite, got {t0_s!r}")
        self.rate_hz = float(rate_hz)
        self.t0_s = float(t0_s)
        #: Samples per half cycle (may be fractional).
        self.half_cycle_samples = self.rate_hz / (2.0 * self.nominal_hz)
        self._seen = 0  # samples fed so far
        self._closed = 0  # half cycles completed so far (boundary index of the open one's start)
        self._pending = _EMPTY  # samples from floor(start of the open half cycle) on
        self._pending_start = 0  # stream index of _pending[0]
        self._last_half_ms: float | None = None

    @property
    def samples_per_cycle(self) -> float:
        return 2.0 * self.half_cycle_samples

    @property
    def samples_seen(self) -> int:
        return self._seen

    def _bound(self, index: FloatArray) -> FloatArray:
        """Stream position (in samples) of half-cycle boundaries; one formula, so every chunking agrees."""
        return index * self.rate_hz / (2.0 * self.nominal_hz)

    def _last_closable(self) -> int:
        """The last boundary with all of its half cycle's samples in: ``bound(j) <= samples seen``."""
        def bound(j: int) -> float:  # the same operations as _bound, on one Python float
            return j * self.rate_hz / (2.0 * self.nominal_hz)

        last = math.floor(self._seen * 2.0 * self.nominal_hz / self.rate_hz)
        while last > 0 and bound(last) > self._seen:
            last -= 1
        while bound(last + 1) <= self._seen:
            last += 1
        return last

    def feed(self, samples: npt.ArrayLike) -> UrmsBlock:
        """Add samples; return the Urms(1/2) values completed by them (possibly none)."""
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"samples must be one-dimensional, got shape {x.shape}")
        finite = np.isfinite(x)
        if not finite.all():
            bad = int(np.argmin(finite))
            raise ValueError(f"sample {self._seen + bad} is not finite ({x[bad]!r}); Urms(1/2) needs every sample")
        buf = np.concatenate((self._pending, x)) if self._pending.size else x
        buf_start = self._pending_start
        self._seen += x.shape[0]
        last = self._last_closable()
        if last <= self._closed:
            self._pending = buf.copy() if buf is x else buf
            return UrmsBlock(_EMPTY, _EMPTY, _EMPTY)
        bounds = self._bound(np.arange(self._closed, last + 1, dtype=np.float64))
        whole = np.floor(bounds)
        frac = bounds - whole
        local = whole.astype(np.int64) - buf_start
        sq = np.concatenate((buf * buf, (0.0,)))  # the padding is read only with weight 0 (boundary == end)
        # Interior of half cycle s: samples local[s] + 1 .. local[s + 1] - 1.  reduceat over the interleaved
        # (start, end) indices sums [start, end) at even positions.
        edges = np.empty(2 * (bounds.shape[0] - 1), dtype=np.int64)
        edges[0::2] = local[:-1] + 1
        edges[1::2] = local[1:]
        interior = np.add.reduceat(sq, edges)[0::2]
        sums = interior + (1.0 - frac[:-1]) * sq[local[:-1]] + frac[1:] * sq[local[1:]]
        half_ms = sums / self.half_cycle_samples
        previous = _EMPTY if self._last_half_ms is None else np.array([self._last_half_ms])
        chain = np.concatenate((previous, half_ms))
        urms = np.sqrt(0.5 * (chain[:-1] + chain[1:]))
        ends = np.arange(self._closed + 1, last + 1, dtype=np.float64)
        if self._last_half_ms is None:  # the very first half cycle has no full cycle behind it
            ends, half_ms = ends[1:], half_ms[1:]
        t_s = self.t0_s + ends / (2.0 * self.nominal_hz)
        self._last_half_ms = float(chain[-1])
        self._closed = last
        self._pending_start = buf_start + int(local[-1])
        self._pending = buf[int(local[-1]):].copy()
        return UrmsBlock(t_s, urms, half_ms)
