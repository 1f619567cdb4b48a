"""The process image: the latest sample of every point, with quality and age, plus bounded history.

Field adapters write samples; the scan cycle reads an immutable snapshot. Writers and the reader
share one event loop, so no lock is needed: `write` and `snapshot` never await.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


class Quality(enum.Enum):
    """How far a value can be trusted.

    GOOD: read successfully and plausible. BAD: the device answered but the value is unusable
    (exception reply, "not implemented" sentinel, NaN); `reason` says why. STALE: no fresh answer
    (device offline, timeout) or older than the point's maximum age.
    """

    GOOD = "good"
    BAD = "bad"
    STALE = "stale"


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of one point. `t_mono` is `time.monotonic()`, `t_wall` is Unix seconds."""

    point: str
    value: float | str | None
    unit: str
    quality: Quality
    t_mono: float
    t_wall: float
    reason: str = ""

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD


@dataclass(frozen=True, slots=True)
class PointView:
    """A sample as the cycle sees it: with its age at snapshot time and the effective quality.

    A GOOD sample older than its point's `max_age_s` is seen as STALE.
    """

    sample: Sample
    age_s: float
    quality: Quality

    @property
    def value(self) -> float | str | None:
        return self.sample.value

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD


class Snapshot(Mapping[str, PointView]):
    """An immutable view of the image at one instant of the monotonic clock.

    Taking it copies only the dict of (immutable) samples; a point's age and effective quality
    are worked out when the point is looked at, so a cycle pays for the points its phases read,
    not for every point of the site.
    """

    __slots__ = ("_max_age_s", "_samples", "t_mono", "t_wall")

    def __init__(self, samples: dict[str, Sample], max_age_s: Mapping[str, float], t_mono: float,
                 t_wall: float) -> None:
        self._samples = samples
        self._max_age_s = max_age_s
        self.t_mono = t_mono
        self.t_wall = t_wall

    def __getitem__(self, key: str) -> PointView:
        sample = self._samples[key]
        age = self.t_mono - sample.t_mono
        quality = sample.quality
        if quality is Quality.GOOD and age > self._max_age_s[key]:
            quality = Quality.STALE
        return PointView(sample, age if age > 0.0 else 0.0, quality)

    def __iter__(self) -> Iterator[str]:
        return iter(self._samples)

    def __len__(self) -> int:
        return len(self._samples)

    def __contains__(self, key: object) -> bool:
        return key in self._samples

    def value(self, point: str) -> float | None:
        """The numeric value of a GOOD point, else None: the safe accessor for controllers."""
        if point not in self._samples:
            return None
        view = self[point]
        if not view.good or not isinstance(view.sample.value, int | float):
            return None
        return float(view.sample.value)


class HistoryRing:
    """A fixed-size ring of (t_wall, value) for one numeric point; memory is allocated once."""

    __slots__ = ("_count", "_next", "_t", "_v", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("history capacity must be at least 1")
        self.capacity = capacity
        self._t = np.zeros(capacity, dtype=np.float64)
        self._v = np.full(capacity, np.nan, dtype=np.float64)
        self._next = 0
        self._count = 0

    def append(self, t_wall: float, value: float) -> None:
        self._t[self._next] = t_wall
        self._v[self._next] = value
        self._next = (self._next + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def __len__(self) -> int:
        return self._count

    def window(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Copies of (timestamps, values), oldest first."""
        if self._count < self.capacity:
            return self._t[: self._count].copy(), self._v[: self._count].copy()
        order = np.r_[self._next : self.capacity, 0 : self._next]
        return self._t[order], self._v[order]


@dataclass(frozen=True, slots=True)
class PointSpec:
    """What the image needs to know about a point: its unit and how old it may get."""

    name: str
    unit: str
    max_age_s: float


class ProcessImage:
    """Latest samples of all configured points. Unknown point names are refused loudly."""

    def __init__(self, specs: Iterable[PointSpec], history_len: int = 600) -> None:
        self._specs = {s.name: s for s in specs}
        self._max_age_s = {name: s.max_age_s for name, s in self._specs.items()}
        now_m, now_w = time.monotonic(), time.time()
        self._latest: dict[str, Sample] = {
            name: Sample(name, None, s.unit, Quality.STALE, now_m, now_w, "no reading yet")
            for name, s in self._specs.items()
        }
        self._history = {name: HistoryRing(history_len) for name in self._specs}

    @property
    def specs(self) -> Mapping[str, PointSpec]:
        return self._specs

    def write(self, sample: Sample) -> None:
        if sample.point not in self._specs:
            raise KeyError(f"unknown point {sample.point!r}")
        self._latest[sample.point] = sample
        if sample.quality is Quality.GOOD and isinstance(sample.value, int | float):
            self._history[sample.point].append(sample.t_wall, float(sample.value))

    def mark_stale(self, points: Iterable[str], reason: str) -> None:
        """Downgrade points to STALE, keeping their last value and timestamps for diagnosis."""
        for name in points:
            old = self._latest[name]
            if old.quality is not Quality.STALE or old.reason != reason:
                self._latest[name] = Sample(
                    name, old.value, old.unit, Quality.STALE, old.t_mono, old.t_wall, reason
                )

    def latest(self, point: str) -> Sample:
        return self._latest[point]

    def history(self, point: str) -> HistoryRing:
        return self._history[point]

    def snapshot(self, t_mono: float | None = None) -> Snapshot:
        now = time.monotonic() if t_mono is None else t_mono
        return Snapshot(dict(self._latest), self._max_age_s, now, time.time())
