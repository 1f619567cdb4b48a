"""Export schedules: local-time windows, midnight, DST change days, overlap rejection."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from edgeagent.safety.schedule import ExportSchedule, LimitWindow

WEEKDAYS = frozenset(range(5))
ALL = frozenset(range(7))


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def test_weekday_window_in_local_time() -> None:
    s = ExportSchedule((LimitWindow(WEEKDAYS, time(17), time(20), 0.0),), "Europe/Berlin", 30.0)
    # 2026-06-10 is a Wednesday; Berlin is UTC+2 in summer
    assert s.limit_at(utc(2026, 6, 10, 15, 0)) == 0.0  # 17:00 local: start is inclusive
    assert s.limit_at(utc(2026, 6, 10, 14, 59, 59)) == 30.0
    assert s.limit_at(utc(2026, 6, 10, 17, 59, 59)) == 0.0
    assert s.limit_at(utc(2026, 6, 10, 18, 0)) == 30.0  # 20:00 local: end is exclusive
    # Saturday: not in the window
    assert s.limit_at(utc(2026, 6, 13, 16, 0)) == 30.0


def test_midnight_end_and_day_boundary() -> None:
    s = ExportSchedule((LimitWindow(frozenset({0}), time(20), time(0), 5.0),), "UTC", 40.0)
    # 2026-06-08 is a Monday
    assert s.limit_at(utc(2026, 6, 8, 23, 59, 59)) == 5.0
    assert s.limit_at(utc(2026, 6, 9, 0, 0)) == 40.0  # Tuesday 00:00 belongs to Tuesday
    assert s.limit_at(utc(2026, 6, 8, 19, 59, 59)) == 40.0


def test_window_from_midnight_uses_the_local_weekday() -> None:
    s = ExportSchedule((LimitWindow(frozenset({6}), time(0), time(6), 1.0),), "America/New_York", 10.0)
    # Sunday 2026-06-14 00:30 EDT = 04:30 UTC; Saturday 23:30 EDT = 03:30 UTC Sunday
    assert s.limit_at(utc(2026, 6, 14, 4, 30)) == 1.0
    assert s.limit_at(utc(2026, 6, 14, 3, 30)) == 10.0


def test_spring_forward_day_follows_the_wall_clock() -> None:
    # Europe/Berlin 2026-03-29: 02:00 CET jumps to 03:00 CEST
    s = ExportSchedule((LimitWindow(ALL, time(1), time(4), 0.0),), "Europe/Berlin", 20.0)
    assert s.limit_at(utc(2026, 3, 29, 0, 30)) == 0.0  # 01:30 CET
    assert s.limit_at(utc(2026, 3, 29, 1, 30)) == 0.0  # 03:30 CEST
    assert s.limit_at(utc(2026, 3, 29, 2, 0)) == 20.0  # 04:00 CEST (a fixed +1 h would say 03:00)
    assert s.limit_at(utc(2026, 3, 28, 2, 30)) == 0.0  # the day before: 03:30 CET


def test_fall_back_day_covers_the_repeated_hour_twice() -> None:
    # Europe/Berlin 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:xx happens twice
    s = ExportSchedule((LimitWindow(frozenset({6}), time(2), time(3), 0.0),), "Europe/Berlin", 20.0)
    assert s.limit_at(utc(2026, 10, 25, 0, 30)) == 0.0  # 02:30 CEST
    assert s.limit_at(utc(2026, 10, 25, 1, 30)) == 0.0  # 02:30 CET, the second time
    assert s.limit_at(utc(2026, 10, 25, 2, 0)) == 20.0  # 03:00 CET
    assert s.limit_at(utc(2026, 10, 24, 23, 59)) == 20.0  # 01:59 CEST


def test_overlapping_windows_are_rejected_naming_both() -> None:
    a = LimitWindow(frozenset({0, 1}), time(10), time(14), 5.0)
    b = LimitWindow(frozenset({1, 2}), time(13), time(16), 7.0)
    with pytest.raises(ValueError, match="overlap on Tue") as err:
        ExportSchedule((a, b), "UTC", 10.0)
    assert str(a) in str(err.value) and str(b) in str(err.value)


def test_overlap_with_a_midnight_window_is_rejected() -> None:
    a = LimitWindow(frozenset({4}), time(22), time(0), 0.0)
    b = LimitWindow(frozenset({4}), time(23, 30), time(23, 45), 1.0)
    with pytest.raises(ValueError, match="overlap"):
        ExportSchedule((a, b), "UTC", 10.0)


def test_adjacent_and_other_day_windows_are_fine() -> None:
    s = ExportSchedule(
        (
            LimitWindow(frozenset({0}), time(10), time(12), 1.0),
            LimitWindow(frozenset({0}), time(12), time(14), 2.0),
            LimitWindow(frozenset({1}), time(11), time(13), 3.0),
        ),
        "UTC",
        9.0,
    )
    assert s.limit_at(utc(2026, 6, 8, 12, 0)) == 2.0
    assert s.limit_at(utc(2026, 6, 8, 11, 59)) == 1.0
    assert s.limit_at(utc(2026, 6, 9, 12, 0)) == 3.0
    assert sorted(s.limits_kw()) == [1.0, 2.0, 3.0, 9.0]


@pytest.mark.parametrize(
    ("days", "start", "end", "limit"),
    [
        (frozenset(), time(1), time(2), 0.0),
        (frozenset({7}), time(1), time(2), 0.0),
        (frozenset({1}), time(2), time(1), 0.0),
        (frozenset({1}), time(2), time(2), 0.0),
        (frozenset({1}), time(1), time(2), float("nan")),
    ],
)
def test_invalid_windows(days: frozenset[int], start: time, end: time, limit: float) -> None:
    with pytest.raises(ValueError):
        LimitWindow(days, start, end, limit)


def test_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="time zone"):
        ExportSchedule((), "Mars/Olympus_Mons", 0.0)
