"""Export-limit schedules: time-of-day / day-of-week windows in the site's local time zone.

Flexible-interconnection agreements state their limits in the site's wall-clock time ("weekdays
17:00-20:00: 0 kW"), so windows are matched against local time via zoneinfo, which makes DST
change days correct by construction: a window follows the wall clock, not a fixed UTC offset.
Pure and synchronous (DESIGN.md principle 1): no I/O beyond the tz database lookup at construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MIDNIGHT = time(0, 0)


def _seconds(t: time) -> float:
    return t.hour * 3600.0 + t.minute * 60.0 + t.second + t.microsecond / 1e6


@dataclass(frozen=True, slots=True)
class LimitWindow:
    """One window: on the given weekdays (0=Mon..6=Sun), local time in [start, end), limit_kw applies.

    `end == 00:00` means "until midnight" so that a window can run to the end of the day without a
    23:59:59 hack; windows never wrap past midnight (write two windows instead), which keeps
    "which weekday does this belong to" unambiguous.
    """

    days: frozenset[int]
    start: time
    end: time
    limit_kw: float

    def __post_init__(self) -> None:
        if not self.days:
            raise ValueError(f"{self}: a window needs at least one day")
        if any(not isinstance(d, int) or d < 0 or d > 6 for d in self.days):
            raise ValueError(f"{self}: days must be integers 0 (Mon) .. 6 (Sun)")
        if self.start.tzinfo is not None or self.end.tzinfo is not None:
            raise ValueError(f"{self}: start/end are local wall-clock times and must be naive")
        if self.end != _MIDNIGHT and self.end <= self.start:
            raise ValueError(f"{self}: end must be after start (or 00:00 for midnight)")
        if not math.isfinite(self.limit_kw):
            raise ValueError(f"{self}: limit_kw must be finite")

    @property
    def start_s(self) -> float:
        """Start as seconds after local midnight."""
        return _seconds(self.start)

    @property
    def end_s(self) -> float:
        """End as seconds after local midnight; 00:00 counts as 24 h."""
        return 86400.0 if self.end == _MIDNIGHT else _seconds(self.end)

    def contains(self, weekday: int, seconds_of_day: float) -> bool:
        return weekday in self.days and self.start_s <= seconds_of_day < self.end_s

    def __str__(self) -> str:
        days = ",".join(_DAY_NAMES[d] for d in sorted(self.days) if 0 <= d <= 6)
        end = "24:00" if self.end == _MIDNIGHT else self.end.strftime("%H:%M:%S")
        return f"[{days} {self.start.strftime('%H:%M:%S')}-{end} {self.limit_kw} kW]"


@dataclass(frozen=True, slots=True)
class ExportSchedule:
    """Windows plus the limit that applies outside all of them, in IANA time zone `tz`.

    Overlapping windows on a common day are refused: with two limits for one instant the
    agreement is ambiguous, and silently picking one (first, or most restrictive) would hide a
    configuration error that the operator must fix.
    """

    windows: tuple[LimitWindow, ...]
    tz: str
    default_kw: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", tuple(self.windows))
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {self.tz!r}") from exc
        if not math.isfinite(self.default_kw):
            raise ValueError("default_kw must be finite")
        for i, a in enumerate(self.windows):
            for b in self.windows[i + 1 :]:
                common = a.days & b.days
                if common and a.start_s < b.end_s and b.start_s < a.end_s:
                    days = ",".join(_DAY_NAMES[d] for d in sorted(common))
                    raise ValueError(f"schedule windows overlap on {days}: {a} and {b}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)  # zoneinfo caches instances, so this is a dict lookup

    def limits_kw(self) -> tuple[float, ...]:
        """Every limit the schedule can produce (for checking against contractual bounds)."""
        return (self.default_kw, *(w.limit_kw for w in self.windows))

    def window_at(self, t_wall: float) -> LimitWindow | None:
        """The window in force at Unix time `t_wall`, or None (the default applies)."""
        local = datetime.fromtimestamp(t_wall, self.zone)
        sod = local.hour * 3600.0 + local.minute * 60.0 + local.second + local.microsecond / 1e6
        weekday = local.weekday()
        for w in self.windows:
            if w.contains(weekday, sod):
                return w
        return None

    def limit_at(self, t_wall: float) -> float:
        """The export limit (kW) at Unix time `t_wall`, read on the site's local wall clock."""
        w = self.window_at(t_wall)
        return self.default_kw if w is None else w.limit_kw
