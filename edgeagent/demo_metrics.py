"""What the safety scenarios measure, computed from the plant's own trace and the daemon's records.

Export is measured on the plant side (its trace: the true PCC power at every physics step, not
what edgeagent happened to poll), so a controller that looks good only in its own measurements
cannot pass. Reaction times are measured on the daemon side, from the moment an input reached
the process image to the moment the device acknowledged the write: that is the part edgeagent
is responsible for. Both clocks are the machine's monotonic clock (system-wide on Linux).

Pure functions over plain values: the demo collects, this module computes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One physics step of the plant, as written by `python -m hil serve --trace`."""

    t_mono: float
    meter_w: float  # > 0 import, < 0 export
    bess_w: float = 0.0
    pv_w: float = 0.0
    bess_temp_c: float | None = None

    @property
    def export_kw(self) -> float:
        return -self.meter_w / 1000.0


@dataclass(frozen=True, slots=True)
class Write:
    """A setpoint write the device acknowledged (or refused), with its monotonic time."""

    t_mono: float
    device: str
    point: str
    value: float
    origin: str
    reason: str
    ok: bool


@dataclass(frozen=True, slots=True)
class ExportMetrics:
    export_limit_kw: float
    max_export_kw: float | None
    seconds_over_limit: float
    kwh_over_limit: float
    response_s: float | None  # None: never over the limit, or still over at the end
    over_at_end: bool


@dataclass(frozen=True, slots=True)
class TripMetrics:
    name: str
    reaction_s: float | None  # None: no safe setpoint was acknowledged
    cleared: bool


def read_trace(path: Path) -> list[TraceRow]:
    """Load a trace; a torn last line (the plant was stopped mid-write) is skipped, nothing else is."""
    rows: list[TraceRow] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return rows
    for number, line in enumerate(lines, 1):
        try:
            data = json.loads(line)
            temp = data.get("bess_temp_c")
            rows.append(TraceRow(float(data["t_mono"]), float(data["meter_w"]), float(data.get("bess_w", 0.0)),
                                 float(data.get("pv_w", 0.0)), None if temp is None else float(temp)))
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines):
                break
            raise ValueError(f"{path}:{number}: not a trace line ({exc})") from None
    rows.sort(key=lambda r: r.t_mono)
    return rows


def export_metrics(trace: Sequence[TraceRow], limit_kw: float) -> ExportMetrics:
    """Time and energy over the limit, and the response: from the first moment export exceeded
    the limit until the first step after which it stayed under for good."""
    if not trace:
        return ExportMetrics(limit_kw, None, 0.0, 0.0, None, False)
    seconds = kwh = 0.0
    first_over: float | None = None
    back_under: float | None = None
    for i, row in enumerate(trace):
        over_kw = row.export_kw - limit_kw
        if over_kw > 0.0:
            dt = trace[i + 1].t_mono - row.t_mono if i + 1 < len(trace) else 0.0
            seconds += dt
            kwh += over_kw * dt / 3600.0
            if first_over is None:
                first_over = row.t_mono
            back_under = None
        elif first_over is not None and back_under is None:
            back_under = row.t_mono
    over_at_end = trace[-1].export_kw > limit_kw
    response = None if first_over is None or back_under is None else back_under - first_over
    return ExportMetrics(limit_kw, max(r.export_kw for r in trace), seconds, kwh, response, over_at_end)


def first_write_after(writes: Iterable[Write], t_mono: float, *, origin: str, reason_prefix: str = "") -> Write | None:
    """The first acknowledged write with this origin at or after `t_mono`."""
    found = [w for w in writes if w.ok and w.t_mono >= t_mono and w.origin == origin
             and w.reason.startswith(reason_prefix)]
    return min(found, key=lambda w: w.t_mono) if found else None


def trip_metrics(name: str, trip_t_sample: float, trip_t: float, cleared: bool,
                 writes: Iterable[Write]) -> TripMetrics:
    """Reaction of one trip: triggering sample in the process image → safe setpoint acknowledged."""
    write = first_write_after(writes, trip_t, origin=f"interlock:{name}")
    return TripMetrics(name, None if write is None else write.t_mono - trip_t_sample, cleared)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)
