"""The daemon's point history: hourly aggregation on an injected clock, gaps, restarts, retention, config."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import numpy as np
import pytest

from edgeagent import config
from edgeagent.config_history import HistoryConfig
from edgeagent.daemon import Daemon
from edgeagent.history import HistoryService, HourlyAccumulator
from edgeagent.history_store import FILE_NAME, HistoryStore, HourRow, hour_of
from edgeagent.image import Quality, Sample
from edgeagent.notify import Notifier
from tests.helpers import eventually
from tests.modbus_server import TestServer

T0 = 1_700_000_000 - 1_700_000_000 % 3600  # an hour start


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def good(point: str, value: float | str | None, quality: Quality = Quality.GOOD) -> Sample:
    return Sample(point, value, "", quality, 0.0, 0.0)


def test_accumulator_aggregates_per_hour_and_hands_over_only_finished_hours() -> None:
    acc = HourlyAccumulator()
    for t, v in ((T0 + 1, 10.0), (T0 + 1800, 20.0), (T0 + 3599, 30.0), (T0 + 3600, 5.0)):
        acc.add("p", t, v)
    assert acc.pop_finished(T0 + 3700) == [HourRow("p", T0, 20.0, 10.0, 30.0, 3)]
    assert acc.pop_finished(T0 + 3700) == []
    assert acc.pop_all() == [HourRow("p", T0 + 3600, 5.0, 5.0, 5.0, 1)]


async def test_service_writes_finished_hours_from_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 10)
    svc = HistoryService(tmp_path / FILE_NAME, HistoryConfig(), clock=clock)
    try:
        for v in (1.0, 2.0, 6.0):
            svc.observe(good("t.oil", v))
            clock.t += 600
        svc.observe(good("t.oil", 99.0, Quality.BAD))
        svc.observe(good("t.oil", 98.0, Quality.STALE))
        svc.observe(good("t.oil", "text"))
        svc.observe(good("t.oil", math.nan))
        assert await svc.flush() == 0  # the hour is not over yet
        clock.t = T0 + 3600 + 5  # one simulated hour later, no real time passed
        svc.observe(good("t.oil", 50.0))
        assert await svc.flush() == 1
        series = await svc.hourly("t.oil", T0, T0 + 2 * 3600)
    finally:
        svc.close()
    np.testing.assert_array_equal(series.t_hour_utc, [T0, T0 + 3600])
    assert series.mean[0] == pytest.approx(3.0) and series.min[0] == 1.0 and series.max[0] == 6.0
    assert series.count[0] == 3
    # close() wrote the hour in progress
    with HistoryStore(tmp_path / FILE_NAME) as store:
        later = store.hourly("t.oil", T0, T0 + 2 * 3600)
    assert later.count.tolist() == [3, 1] and later.mean[1] == 50.0


async def test_points_filter_keeps_only_configured_points(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    svc = HistoryService(tmp_path / FILE_NAME, HistoryConfig(points=frozenset({"a"})), clock=clock)
    svc.observe(good("a", 1.0))
    svc.observe(good("b", 2.0))
    svc.close()
    with HistoryStore(tmp_path / FILE_NAME) as store:
        assert store.hourly("a", T0, T0 + 3600).count.tolist() == [1]
        assert store.hourly("b", T0, T0 + 3600).count.tolist() == [0]


def test_gaps_are_nan_with_count_zero(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / FILE_NAME) as store:
        store.merge_live([HourRow("p", T0, 1.0, 1.0, 1.0, 1), HourRow("p", T0 + 3 * 3600, 4.0, 3.0, 5.0, 2)])
        s = store.hourly("p", T0 - 3600 + 17, T0 + 4 * 3600)
    assert s.t_hour_utc.tolist() == [T0 - 3600 + i * 3600 for i in range(5)]
    assert np.isnan(s.mean[[0, 2, 3]]).all() and np.isnan(s.max[[0, 2, 3]]).all()
    assert s.mean[1] == 1.0 and s.mean[4] == 4.0 and s.count.tolist() == [0, 1, 0, 0, 2]
    assert s.gaps == 3


async def test_restart_keeps_the_data_and_merges_the_interrupted_hour(tmp_path: Path) -> None:
    clock = FakeClock(T0 + 100)
    first = HistoryService(tmp_path / FILE_NAME, HistoryConfig(), clock=clock)
    first.observe(good("p", 10.0))
    first.observe(good("p", 20.0))
    first.close()  # stop within the hour
    clock.t = T0 + 2000
    second = HistoryService(tmp_path / FILE_NAME, HistoryConfig(), clock=clock)
    second.observe(good("p", 60.0))
    clock.t = T0 + 3600
    await second.flush()
    second.close()
    with HistoryStore(tmp_path / FILE_NAME) as store:
        s = store.hourly("p", T0, T0 + 3600)
    assert s.count.tolist() == [3]
    assert s.mean[0] == pytest.approx(30.0) and s.min[0] == 10.0 and s.max[0] == 60.0


async def test_retention_prunes_hours_older_than_the_window(tmp_path: Path) -> None:
    day = 86_400
    with HistoryStore(tmp_path / FILE_NAME) as store:
        store.merge_live([HourRow("p", T0 - 10 * day, 1.0, 1.0, 1.0, 1), HourRow("p", T0 - 2 * day, 2.0, 2.0, 2.0, 1)])
    svc = HistoryService(tmp_path / FILE_NAME, HistoryConfig(retention_days=5), clock=FakeClock(T0))
    await svc.flush()  # the first flush prunes
    s = await svc.hourly("p", T0 - 11 * day, T0)
    svc.close()
    assert s.count.sum() == 1 and s.mean[~np.isnan(s.mean)].tolist() == [2.0]


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    from edgeagent.history_store import HistoryError

    (tmp_path / FILE_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(HistoryError, match="not a readable database"):
        HistoryStore(tmp_path / FILE_NAME)


SITE = """
[site]
id = "t"
node = "n"
[scan]
period_ms = 20
[storage]
dir = "{state}"
[devices.xfmr]
kind = "modbus"
host = "127.0.0.1"
port = {port}
poll_ms = 20
points = [{{ name = "top_oil_c", address = 1 }}, {{ name = "label", address = 5, type = "string", size = 2 }}]
{extra}
"""


def test_history_config_defaults_and_errors(tmp_path: Path) -> None:
    cfg = config.parse(SITE.format(state=tmp_path, port=5020, extra=""))
    assert cfg.history.retention_days == 400 and cfg.history.points is None
    cfg = config.parse(SITE.format(state=tmp_path, port=5020,
                                   extra='[history]\nretention_days = 30\npoints = ["xfmr.top_oil_c"]'))
    assert cfg.history.retention_days == 30 and cfg.history.keeps("xfmr.top_oil_c")
    assert not cfg.history.keeps("xfmr.label")
    bad = '[history]\nretention_days = 0\npoints = ["xfmr.top_oil", "xfmr.label"]\nkeep = 1'
    with pytest.raises(config.ConfigError) as err:
        config.parse(SITE.format(state=tmp_path, port=5020, extra=bad), "site.toml")
    text = "\n".join(err.value.problems)
    assert "history.retention_days: must be at least 1" in text
    assert "history.points[0]: no such point; did you mean 'xfmr.top_oil_c'?" in text
    assert "history.points[1]: is a string point" in text
    assert "history.keep: unknown key" in text


async def test_daemon_records_hourly_history_on_its_clock(tmp_path: Path) -> None:
    server = TestServer()
    server.registers.set(1, [42])
    await server.start()
    clock = FakeClock(T0 + 1)
    cfg = config.parse(SITE.format(state=tmp_path, port=server.port, extra=""))
    daemon = Daemon(cfg, Notifier(""), history_clock=clock)
    daemon.history.flush_every_s = 0.02
    run = asyncio.create_task(daemon.run())
    try:
        await eventually(lambda: bool(daemon.history.acc._acc), what="samples accumulated")
        clock.t = T0 + 3600 + 1  # the simulated hour ends
        await eventually(lambda: daemon.history.hours_written >= 1, what="hour written")
    finally:
        daemon.request_stop()
        await asyncio.wait_for(run, 10)
        await server.stop()
    with HistoryStore(tmp_path / FILE_NAME) as store:
        s = store.hourly("xfmr.top_oil_c", T0, T0 + 3600)
        label = store.hourly("xfmr.label", T0, T0 + 3600)
    assert s.count[0] > 0 and s.mean[0] == 42.0 and s.min[0] == 42.0 and s.max[0] == 42.0
    assert label.count.tolist() == [0]
    assert hour_of(T0 + 3599) == T0
