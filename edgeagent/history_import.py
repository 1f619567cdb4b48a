"""`edgeagent history import FILE.csv`: past readings from a historian export into the history store.

So the forecaster works from the first day of an install instead of after ten days of lookback.
The CSV has a header, one timestamp column (ISO 8601 with or without an offset, which includes the
ETT format `YYYY-MM-DD HH:MM:SS`; times without an offset are in `--timezone`) and value columns
mapped to points with `--map COLUMN=POINT`. Sub-hourly readings are aggregated per UTC hour.

Strict by default: any unparsable timestamp or number, empty or non-finite cell, time that does not
exist in the time zone, or hour older than the retention window is reported with its file line and
nothing is imported. `--skip-bad` instead leaves those cells out, counts them and says so. Hours
that already hold live data are refused (all or nothing) unless `--replace`.
"""

from __future__ import annotations

import csv
import difflib
import math
import time
import zoneinfo
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from edgeagent.config import AnyDevice, Config
from edgeagent.history import HourlyAccumulator
from edgeagent.history_store import FILE_NAME, HistoryStore, HourRow

MAX_PROBLEMS_SHOWN = 20
TIME_COLUMN_NAMES = ("date", "timestamp", "time", "datetime")


class HistoryImportError(Exception):
    """The file or the command line is wrong; `problems` lists each finding (with `FILE:LINE:`)."""

    def __init__(self, problems: list[str], total: int | None = None) -> None:
        self.problems = problems[:MAX_PROBLEMS_SHOWN]
        self.total = len(problems) if total is None else total
        more = f"\n... and {self.total - len(self.problems)} more" if self.total > len(self.problems) else ""
        super().__init__("\n".join(self.problems) + more)


@dataclass(frozen=True, slots=True)
class PointReport:
    point: str
    column: str
    samples: int
    hours: int
    first_hour_utc: int | None
    last_hour_utc: int | None


@dataclass(frozen=True, slots=True)
class ImportReport:
    path: str
    store: str
    rows_read: int
    cells_skipped: int
    live_hours_replaced: int
    dry_run: bool
    points: tuple[PointReport, ...]

    @property
    def hours_written(self) -> int:
        return 0 if self.dry_run else sum(p.hours for p in self.points)

    def lines(self) -> list[str]:
        out = [f"{self.path}: read {self.rows_read} rows" + (f", skipped {self.cells_skipped} bad cell(s)"
                                                             if self.cells_skipped else "")]
        for p in self.points:
            span = f", {_iso(p.first_hour_utc)} .. {_iso(p.last_hour_utc)}" if p.first_hour_utc is not None else ""
            out.append(f"  {p.point} <- {p.column}: {p.samples} readings -> {p.hours} hours{span}")
        verb = "would write" if self.dry_run else "wrote"
        out.append(f"{verb} {sum(p.hours for p in self.points)} hours to {self.store}"
                   + (f" (replacing {self.live_hours_replaced} live hours)" if self.live_hours_replaced else "")
                   + (" (dry run: nothing written)" if self.dry_run else ""))
        return out


def _iso(t: int | None) -> str:
    return "" if t is None else datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def parse_maps(maps: Sequence[str], cfg: Config, columns: Sequence[str]) -> dict[str, str]:
    """`COLUMN=POINT` strings → {column: point}, checked against the file's header and the config."""
    devices: list[AnyDevice] = [*cfg.devices, *cfg.i2c_devices, *cfg.opcua_devices]
    known = sorted({n for d in devices for n in d.point_names()})
    problems: list[str] = []
    out: dict[str, str] = {}
    if not maps:
        problems.append("give at least one --map COLUMN=POINT")
    for item in maps:
        column, sep, point = item.partition("=")
        column, point = column.strip(), point.strip()
        if not sep or not column or not point:
            problems.append(f"--map {item!r}: must be COLUMN=POINT")
            continue
        if column not in columns:
            problems.append(f"--map {item}: the file has no column {column!r} (columns: {', '.join(columns)})")
        if point not in known:
            close = difflib.get_close_matches(point, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            problems.append(f"--map {item}: no point {point!r} in {cfg.path}{hint}")
        elif not cfg.history.keeps(point):
            problems.append(f"--map {item}: point {point!r} is not kept by [history] points in {cfg.path}")
        if point in out.values():
            problems.append(f"--map {item}: point {point!r} is mapped from two columns")
        if column in out:
            problems.append(f"--map {item}: column {column!r} is mapped twice")
        out[column] = point
    if problems:
        raise HistoryImportError(problems)
    return out


def parse_time(text: str, tz: tzinfo) -> float:
    """ISO 8601 (offset optional; naive times are in `tz`) → Unix seconds. ValueError says why not."""
    text = text.strip()
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"unparsable timestamp {text!r} (expected ISO 8601 or YYYY-MM-DD HH:MM:SS)") from None
    if t.tzinfo is None:
        local = t.replace(tzinfo=tz)
        back = datetime.fromtimestamp(local.timestamp(), tz=tz).replace(tzinfo=None)
        if back != t:
            raise ValueError(f"timestamp {text!r} does not exist in time zone {tz} (a daylight-saving gap)")
        t = local
    return t.timestamp()


def _time_column(header: Sequence[str]) -> int:
    lowered = [h.strip().lower() for h in header]
    for name in TIME_COLUMN_NAMES:
        if name in lowered:
            return lowered.index(name)
    return 0


def read_csv(path: Path, mapping: dict[str, str], tz: tzinfo, oldest_s: float, skip_bad: bool
             ) -> tuple[int, int, dict[str, tuple[int, list[HourRow]]]]:
    """(rows read, cells skipped, {point: (readings, hourly rows)}); raises HistoryImportError when strict."""
    problems: list[str] = []
    acc = HourlyAccumulator()
    samples = dict.fromkeys(mapping.values(), 0)
    rows = skipped = 0
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None) or []
        t_col = _time_column(header)
        cols = [(header.index(c), c, p) for c, p in mapping.items()]
        for record in reader:
            if not record or all(not cell.strip() for cell in record):
                continue
            rows += 1
            where = f"{path}:{reader.line_num}"
            if len(record) != len(header):
                problems.append(f"{where}: {len(record)} fields, the header has {len(header)}")
                skipped += len(cols)
                continue
            try:
                t_s = parse_time(record[t_col], tz)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                skipped += len(cols)
                continue
            if t_s < oldest_s:
                problems.append(f"{where}: {record[t_col].strip()} is older than [history] retention_days allows "
                                "(the daemon would delete it); raise retention_days or import newer data")
                skipped += len(cols)
                continue
            for index, column, point in cols:
                cell = record[index].strip()
                try:
                    value = float(cell)
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    problems.append(f"{where}: column {column}: not a finite number ({cell!r})")
                    skipped += 1
                    continue
                acc.add(point, t_s, value)
                samples[point] += 1
    if problems and not skip_bad:
        raise HistoryImportError([*problems, "nothing was imported (use --skip-bad to leave bad cells out)"],
                                 total=len(problems) + 1)
    by_point: dict[str, list[HourRow]] = {p: [] for p in mapping.values()}
    for row in acc.pop_all():
        by_point[row.point].append(row)
    return rows, skipped, {p: (samples[p], by_point[p]) for p in mapping.values()}


def import_csv(path: Path | str, cfg: Config, maps: Sequence[str], timezone: str | None = None,
               replace: bool = False, dry_run: bool = False, skip_bad: bool = False,
               clock: Callable[[], float] = time.time) -> ImportReport:
    """Validate the whole file, then write its hours in one transaction (or nothing)."""
    path = Path(path)
    tz_name = timezone or cfg.site.timezone or "UTC"
    try:
        tz = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise HistoryImportError([f"--timezone {tz_name!r}: unknown time zone (use an IANA name such as "
                                  "Europe/Berlin, or UTC)"]) from None
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            header = next(csv.reader(f), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryImportError([f"{path}: cannot read: {exc}"]) from None
    if not header:
        raise HistoryImportError([f"{path}:1: empty file (expected a header line)"])
    mapping = parse_maps(maps, cfg, [h.strip() for h in header])
    oldest_s = clock() - cfg.history.retention_days * 86_400.0
    try:
        rows, skipped, data = read_csv(path, mapping, tz, oldest_s, skip_bad)
    except UnicodeDecodeError as exc:
        raise HistoryImportError([f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"]) from None
    except csv.Error as exc:
        raise HistoryImportError([f"{path}: not a readable CSV file ({exc})"]) from None
    store_path = Path(cfg.state_dir) / FILE_NAME
    all_rows = [r for _, hours in data.values() for r in hours]
    with HistoryStore(store_path) as store:
        replaced = store.put_imported(all_rows, replace_live=replace, dry_run=dry_run)
    reports = tuple(
        PointReport(point, column, data[point][0], len(data[point][1]),
                    data[point][1][0].t_hour if data[point][1] else None,
                    data[point][1][-1].t_hour if data[point][1] else None)
        for column, point in mapping.items())
    return ImportReport(str(path), str(store_path), rows, skipped, replaced, dry_run, reports)
