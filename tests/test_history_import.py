"""`edgeagent history import`: ETT and historian CSVs into the history, strictly, and while a daemon runs."""

from __future__ import annotations

import asyncio
import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from edgeagent import cli, config
from edgeagent.daemon import Daemon
from edgeagent.history_import import HistoryImportError, import_csv
from edgeagent.history_store import FILE_NAME, HistoryStore, HourRow, LiveDataConflict
from edgeagent.notify import Notifier
from tests.helpers import eventually
from tests.modbus_server import TestServer

ETT = Path(__file__).resolve().parents[1] / "data" / "ett" / "ETTh1.csv"
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
poll_ms = 50
points = [{{ name = "top_oil_c", address = 1 }}, {{ name = "load_a", address = 2 }}]
[history]
retention_days = 36500
"""
T_2016 = datetime(2016, 7, 1, tzinfo=UTC).timestamp()


def make_cfg(tmp_path: Path, port: int = 5020) -> config.Config:
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(state=tmp_path / "state", port=port))
    return config.load(path)


def ett_slice(tmp_path: Path, n: int = 300) -> Path:
    lines = ETT.read_text().splitlines()[: n + 1]
    out = tmp_path / "ett.csv"
    out.write_text("\n".join(lines) + "\n")
    return out


def stored(cfg: config.Config, point: str, since: float, until: float) -> tuple[np.ndarray, np.ndarray]:
    with HistoryStore(Path(cfg.state_dir) / FILE_NAME) as store:
        s = store.hourly(point, since, until)
    return s.mean, s.count


def test_ett_slice_round_trips_exactly(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    path = ett_slice(tmp_path)
    report = import_csv(path, cfg, ["OT=xfmr.top_oil_c", "HUFL=xfmr.load_a"], timezone="UTC")
    assert report.rows_read == 300 and report.hours_written == 600
    with path.open() as f:
        expected = [float(r["OT"]) for r in csv.DictReader(f)]
    mean, count = stored(cfg, "xfmr.top_oil_c", T_2016, T_2016 + 300 * 3600)
    assert mean.tolist() == expected and count.tolist() == [1] * 300
    assert "  xfmr.top_oil_c <- OT: 300 readings -> 300 hours, 2016-07-01T00:00Z .. 2016-07-13T11:00Z" in report.lines()


def test_sub_hourly_readings_are_aggregated_and_offsets_and_zones_honoured(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    path = tmp_path / "h.csv"
    path.write_text("timestamp,oil\n2024-01-01T00:10:00Z,10\n2024-01-01T01:20:00+01:00,30\n"
                    "2024-01-01 02:30:00,50\n")  # naive: Europe/Berlin = 01:30Z
    import_csv(path, cfg, ["oil=xfmr.top_oil_c"], timezone="Europe/Berlin", clock=lambda: 1.8e9)
    t = datetime(2024, 1, 1, tzinfo=UTC).timestamp()
    mean, count = stored(cfg, "xfmr.top_oil_c", t, t + 2 * 3600)
    assert count.tolist() == [2, 1] and mean.tolist() == [20.0, 50.0]


BAD = {
    "timestamp": ("date,OT\n2016-07-01 00:00:00,1\n2016-13-01 00:00:00,2\n", ":3: unparsable timestamp"),
    "number": ("date,OT\n2016-07-01 00:00:00,1\n2016-07-01 01:00:00,abc\n", ":3: column OT: not a finite number"),
    "empty cell": ("date,OT\n2016-07-01 00:00:00,\n", ":2: column OT: not a finite number"),
    "nan": ("date,OT\n2016-07-01 00:00:00,1\n2016-07-01 01:00:00,1\n2016-07-01 02:00:00,nan\n", ":4: column OT"),
    "fields": ("date,OT\n2016-07-01 00:00:00,1,7\n", ":2: 3 fields, the header has 2"),
    "dst gap": ("date,OT\n2016-03-27 02:30:00,1\n", ":2: timestamp '2016-03-27 02:30:00' does not exist"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_csv_is_refused_with_its_line_and_nothing_is_imported(tmp_path: Path, kind: str) -> None:
    cfg = make_cfg(tmp_path)
    text, message = BAD[kind]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(HistoryImportError) as err:
        import_csv(path, cfg, ["OT=xfmr.top_oil_c"], timezone="Europe/Berlin")
    assert f"{path}{message}" in str(err.value) and "nothing was imported" in str(err.value)
    assert stored(cfg, "xfmr.top_oil_c", T_2016 - 200 * 86400, T_2016 + 86400)[1].sum() == 0


def test_skip_bad_leaves_bad_cells_out_and_counts_them(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    path = tmp_path / "bad.csv"
    path.write_text(BAD["number"][0])
    report = import_csv(path, cfg, ["OT=xfmr.top_oil_c"], timezone="UTC", skip_bad=True)
    assert report.cells_skipped == 1 and report.hours_written == 1


@pytest.mark.parametrize(("maps", "message"), [
    (["OT=xfmr.top_oil"], "no point 'xfmr.top_oil' in"),
    (["XX=xfmr.top_oil_c"], "the file has no column 'XX'"),
    (["OT"], "must be COLUMN=POINT"),
    ([], "at least one --map"),
    (["OT=xfmr.top_oil_c", "HUFL=xfmr.top_oil_c"], "mapped from two columns"),
])
def test_bad_maps_are_refused(tmp_path: Path, maps: list[str], message: str) -> None:
    with pytest.raises(HistoryImportError, match=message):
        import_csv(ett_slice(tmp_path, 3), make_cfg(tmp_path), maps, timezone="UTC")


def test_hours_older_than_retention_are_refused(tmp_path: Path) -> None:
    with pytest.raises(HistoryImportError, match=r":2: .*older than \[history\] retention_days"):
        import_csv(ett_slice(tmp_path, 3), make_cfg(tmp_path), ["OT=xfmr.top_oil_c"], timezone="UTC",
                   clock=lambda: T_2016 + 36501 * 86400)


def test_live_hours_are_kept_unless_replace(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    path = ett_slice(tmp_path, 5)
    with HistoryStore(Path(cfg.state_dir) / FILE_NAME) as store:
        store.merge_live([HourRow("xfmr.top_oil_c", int(T_2016) + 3600, 99.0, 98.0, 100.0, 10)])
    with pytest.raises(LiveDataConflict, match=r"1 hour.*2016-07-01T01:00Z.*--replace"):
        import_csv(path, cfg, ["OT=xfmr.top_oil_c"], timezone="UTC")
    mean, count = stored(cfg, "xfmr.top_oil_c", T_2016, T_2016 + 5 * 3600)
    assert count.tolist() == [0, 10, 0, 0, 0]  # all or nothing
    report = import_csv(path, cfg, ["OT=xfmr.top_oil_c"], timezone="UTC", dry_run=True, replace=True)
    assert report.live_hours_replaced == 1 and report.hours_written == 0
    assert stored(cfg, "xfmr.top_oil_c", T_2016, T_2016 + 5 * 3600)[1].tolist() == [0, 10, 0, 0, 0]
    report = import_csv(path, cfg, ["OT=xfmr.top_oil_c"], timezone="UTC", replace=True)
    assert report.live_hours_replaced == 1
    mean, count = stored(cfg, "xfmr.top_oil_c", T_2016, T_2016 + 5 * 3600)
    assert count.tolist() == [1] * 5 and mean[1] == pytest.approx(27.78700065612793)
    import_csv(path, cfg, ["OT=xfmr.top_oil_c"], timezone="UTC")  # imported hours may be imported again


def test_cli_prints_the_report_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_cfg(tmp_path)
    path = ett_slice(tmp_path, 10)
    argv = ["history", "import", str(path), "-c", cfg.path, "--map", "OT=xfmr.top_oil_c", "--timezone", "UTC"]
    assert cli.main([*argv, "--dry-run"]) == 0
    assert "would write 10 hours" in capsys.readouterr().out
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "read 10 rows" in out and "wrote 10 hours" in out
    assert cli.main([*argv[:-2], "--timezone", "Mars/Olympus"]) == 2
    assert "unknown time zone" in capsys.readouterr().err


async def test_import_while_the_daemon_runs(tmp_path: Path) -> None:
    server = TestServer()
    server.registers.set(1, [42, 7])
    await server.start()
    cfg = make_cfg(tmp_path, server.port)
    daemon = Daemon(cfg, Notifier(""))
    daemon.history.flush_every_s = 0.02
    run = asyncio.create_task(daemon.run())
    try:
        await eventually(lambda: daemon.history._store is not None, what="history open")
        report = await asyncio.to_thread(import_csv, ett_slice(tmp_path, 48), cfg, ["OT=xfmr.top_oil_c"], "UTC")
        assert report.hours_written == 48
        series = await daemon.history.hourly("xfmr.top_oil_c", T_2016, T_2016 + 48 * 3600)
        assert series.count.tolist() == [1] * 48
    finally:
        daemon.request_stop()
        await asyncio.wait_for(run, 10)
        await server.stop()
    mean, count = stored(cfg, "xfmr.top_oil_c", datetime.now(UTC).timestamp() - 3600, datetime.now(UTC).timestamp())
    assert count.sum() > 0 and np.nanmax(mean) == 42.0  # the daemon's own hour was kept too
