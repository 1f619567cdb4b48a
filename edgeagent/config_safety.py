"""The safety sections of the site config: setpoint envelope, interlocks, export limit.

```toml
[[setpoints]]                     # every point the daemon may write, with its rated bounds
point = "bess.WSet"
min = -100000
max = 100000
refresh_s = 10                    # re-write unchanged values this often (below the device's revert time)
activate = [{ point = "bess.WSetRvrtTms", value = 30 }, { point = "bess.WSetEna", value = 1 }]

[[interlocks]]
name = "bess_overtemp"
points = ["bess.Tmp"]
preset = "battery/lfp/cell_temp_max"      # or condition/limit/pickup_ms by hand
hysteresis = 2
latch = true
safe_action = [{ point = "bess.WSet", value = 0 }]

[export_limit]
meter = "pcc.W"
static_kw = 50                    # or [[export_limit.schedule]] windows with default_kw
contract_min_kw = 0
contract_max_kw = 80
margin_kw = 2
bess = { setpoint = "bess.WSet", soc = "bess.SoC", max_charge_w = 50000 }
pv = { setpoint = "pv.WMaxLimPct", rated_point = "pv.WRtg", power_point = "pv.W" }
```
Constructor errors of the safety values (they validate themselves) become config problems at the
table's key path, so every mistake is still reported with its line.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import math
import re
from dataclasses import dataclass
from typing import Any

from edgeagent.configcheck import Checker
from edgeagent.safety.arbitration import Bound
from edgeagent.safety.export_limit_types import BessTarget, ExportLimitConfig, PvTarget
from edgeagent.safety.interlocks import BadInput, Condition, InterlockSpec, SafeBound, SafeSetpoint
from edgeagent.safety.presets import resolve_preset
from edgeagent.safety.schedule import ExportSchedule, LimitWindow
from edgeagent.safety.tracking import Feedback, FollowMode

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


@dataclass(frozen=True, slots=True)
class SafetyConfig:
    setpoints: tuple[Bound, ...] = ()
    interlocks: tuple[InterlockSpec, ...] = ()
    export_limit: ExportLimitConfig | None = None


def parse_safety(c: Checker, doc: dict[str, Any], points: set[str], timezone: str) -> SafetyConfig:
    setpoints = tuple(b for i, t in enumerate(_tables(c, doc, "setpoints"))
                      if (b := _setpoint(c, t, f"setpoints[{i}]", points)))
    writable = {f"{b.device}.{b.point}" for b in setpoints}
    names: set[str] = set()
    interlocks: list[InterlockSpec] = []
    for i, t in enumerate(_tables(c, doc, "interlocks")):
        spec = _interlock(c, t, f"interlocks[{i}]", points, writable)
        if spec is None:
            continue
        if spec.name in names:
            c.error(f"interlocks[{i}].name", "another interlock has this name", spec.name)
        names.add(spec.name)
        interlocks.append(spec)
    limit = None
    if "export_limit" in doc:
        limit = _export_limit(c, c.table(doc, "export_limit", ""), points, writable, timezone)
    return SafetyConfig(setpoints, tuple(interlocks), limit)


def _tables(c: Checker, doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        c.error(key, f"must be an array of tables ([[{key}]])", value)
        return []
    return value



def _point(c: Checker, t: dict[str, Any], key: str, path: str, known: set[str], what: str = "point") -> str:
    name = c.string(t, key, path)
    if name and name not in known:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        c.error(f"{path}.{key}", f"unknown {what}" + (f"; did you mean '{close[0]}'?" if close else ""), name)
    return name


def _setpoint(c: Checker, t: dict[str, Any], path: str, points: set[str]) -> Bound | None:
    c.only_keys(t, path, ["point", "min", "max", "refresh_s", "deadband", "activate", "feedback"])
    name = _point(c, t, "point", path, points)
    lo = c.number(t, "min", path)
    hi = c.number(t, "max", path)
    refresh = c.number(t, "refresh_s", path, default=10.0, minimum=0.1)
    deadband = c.number(t, "deadband", path, default=0.0, minimum=0)
    if not name or "." not in name:
        return None
    device, point = name.split(".", 1)
    activate: list[tuple[str, float]] = []
    for apath, target, value in _point_values(c, t, "activate", path, points, required=False):
        if not target.startswith(device + "."):
            c.error(f"{apath}.point", f"must be a point of device {device!r}, like the setpoint", target)
        else:
            activate.append((target.split(".", 1)[1], value))
    feedback = _feedback(c, t, path, points) if "feedback" in t else None
    return c.build(path, lambda: Bound(device, point, lo, hi, refresh, deadband, tuple(activate), feedback))


def _feedback(c: Checker, t: dict[str, Any], path: str, points: set[str]) -> Feedback | None:
    """`feedback = { point = "bess.W", tolerance = 5000, within_s = 3 }`, optionally with
    `mode = "at_most"`, `scale` and `scale_point` (expected = setpoint × scale × scale_point)."""
    fpath = f"{path}.feedback"
    raw = c.table(t, "feedback", path)
    c.only_keys(raw, fpath, ["point", "tolerance", "within_s", "mode", "scale", "scale_point"])
    point = _point(c, raw, "point", fpath, points)
    tolerance = c.number(raw, "tolerance", fpath, minimum=0)
    within_s = c.number(raw, "within_s", fpath, default=5.0, minimum=0.1)
    mode = c.string(raw, "mode", fpath, default="equal", choices=[m.value for m in FollowMode])
    scale = c.number(raw, "scale", fpath, default=1.0)
    scale_point = _point(c, raw, "scale_point", fpath, points) if "scale_point" in raw else None
    if mode not in [m.value for m in FollowMode]:
        return None
    return c.build(fpath, lambda: Feedback(point, tolerance, within_s, FollowMode(mode), scale, scale_point))


def _point_values(c: Checker, t: dict[str, Any], key: str, path: str, known: set[str], *, required: bool,
                  what: str = "point") -> list[tuple[str, str, float]]:
    """A list of `{ point = "DEVICE.NAME", value = N }` tables → (path, point, value) for the
    entries whose point is known; the others are reported."""
    raw = t.get(key, [])
    example = '[{ point = "bess.WSet", value = 0 }]'
    if not isinstance(raw, list) or (required and not raw):
        c.error(f"{path}.{key}", f"must be a list like {example}", t.get(key))
        return []
    out = []
    for j, entry in enumerate(raw):
        epath = f"{path}.{key}[{j}]"
        if not isinstance(entry, dict):
            c.error(epath, "must be a table { point = ..., value = ... }", entry)
            continue
        c.only_keys(entry, epath, ["point", "value"])
        target = _point(c, entry, "point", epath, known, what)
        value = c.number(entry, "value", epath)
        if target in known:
            out.append((epath, target, value))
    return out


_INTERLOCK_KEYS = ["name", "points", "condition", "limit", "low", "high", "rate_per_s", "hysteresis", "pickup_ms",
                   "dropout_ms", "latch", "on_bad_input", "safe_action", "safe_bounds", "preset", "nominal_v",
                   "nominal_hz"]


def _interlock(c: Checker, t: dict[str, Any], path: str, points: set[str], writable: set[str]) -> InterlockSpec | None:
    c.only_keys(t, path, _INTERLOCK_KEYS)
    name = c.string(t, "name", path, pattern=r"[a-z][a-z0-9_]{0,63}")
    raw_points = t.get("points")
    if not isinstance(raw_points, list) or not raw_points or not all(isinstance(p, str) for p in raw_points):
        c.error(f"{path}.points", "must be a non-empty list of point names", raw_points)
        raw_points = []
    for j, p in enumerate(raw_points):
        if p not in points:
            c.error(f"{path}.points[{j}]", "unknown point", p)
    fields: dict[str, Any] = {}
    if "preset" in t:
        preset = c.string(t, "preset", path)
        nominal_v = c.number(t, "nominal_v", path, default=0.0, minimum=0) or None
        nominal_hz = c.number(t, "nominal_hz", path, default=60.0, minimum=1)
        resolved = c.build(f"{path}.preset", lambda: resolve_preset(preset, nominal_v=nominal_v,
                                                                       nominal_hz=nominal_hz))
        if resolved is None:
            return None
        condition, limit, pickup_s = resolved
        fields.update(condition=condition, limit=limit, pickup_s=pickup_s)
    else:
        cond = c.string(t, "condition", path, choices=[x.value for x in Condition])
        if cond not in [x.value for x in Condition]:
            return None
        fields["condition"] = Condition(cond)
        for key in ("limit", "low", "high", "rate_per_s"):
            if key in t:
                fields[key] = c.number(t, key, path)
        fields["pickup_s"] = c.number(t, "pickup_ms", path, default=0, minimum=0) / 1000
    fields["hysteresis"] = c.number(t, "hysteresis", path, default=0.0, minimum=0)
    fields["dropout_s"] = c.number(t, "dropout_ms", path, default=0, minimum=0) / 1000
    fields["latch"] = c.boolean(t, "latch", path, default=False)
    policy = c.string(t, "on_bad_input", path, default="trip", choices=[x.value for x in BadInput])
    fields["on_bad_input"] = BadInput(policy) if policy in [x.value for x in BadInput] else BadInput.TRIP
    actions = []
    for _, target, value in _point_values(c, t, "safe_action", path, writable, required="safe_bounds" not in t,
                                          what="setpoint (declare it in [[setpoints]])"):
        device, point = target.split(".", 1)
        actions.append(SafeSetpoint(device, point, value))
    bounds = _safe_bounds(c, t, path, writable)
    if c.problems and any(p.path.startswith(path) for p in c.problems):
        return None
    return c.build(path, lambda: InterlockSpec(name=name, points=tuple(raw_points), safe_action=tuple(actions),
                                                 safe_bounds=tuple(bounds), **fields))


def _safe_bounds(c: Checker, t: dict[str, Any], path: str, writable: set[str]) -> list[SafeBound]:
    """`safe_bounds = [{ point = "bess.WSet", min = 0 }]`: ranges held while tripped."""
    raw = t.get("safe_bounds", [])
    if not isinstance(raw, list) or ("safe_bounds" in t and not raw):
        c.error(f"{path}.safe_bounds", 'must be a list like [{ point = "bess.WSet", min = 0 }]', raw)
        return []
    out: list[SafeBound] = []
    for j, entry in enumerate(raw):
        epath = f"{path}.safe_bounds[{j}]"
        if not isinstance(entry, dict):
            c.error(epath, "must be a table { point = ..., min = ..., max = ... }", entry)
            continue
        c.only_keys(entry, epath, ["point", "min", "max"])
        target = _point(c, entry, "point", epath, writable, "setpoint (declare it in [[setpoints]])")
        lo = c.number(entry, "min", epath, default=-math.inf)
        hi = c.number(entry, "max", epath, default=math.inf)
        if target in writable:
            device, point = target.split(".", 1)
            bound = c.build(epath, functools.partial(SafeBound, device, point, lo, hi))
            if bound is not None:
                out.append(bound)
    return out


_LIMIT_KEYS = ["meter", "static_kw", "schedule", "default_kw", "contract_min_kw", "contract_max_kw", "margin_kw",
               "fallback_kw", "freeze_window_s", "freeze_tolerance_w", "bess", "pv"]


def _export_limit(c: Checker, t: dict[str, Any], points: set[str], writable: set[str],
                  timezone: str) -> ExportLimitConfig | None:
    path = "export_limit"
    c.only_keys(t, path, _LIMIT_KEYS)
    meter = _point(c, t, "meter", path, points)
    schedule = None
    if "schedule" in t:
        windows = [w for i, raw in enumerate(_tables(c, t, "schedule"))
                   if (w := _window(c, raw, f"{path}.schedule[{i}]"))]
        default_kw = c.number(t, "default_kw", path)
        schedule = c.build(f"{path}.schedule", lambda: ExportSchedule(tuple(windows), timezone, default_kw))
    static = c.number(t, "static_kw", path) if "static_kw" in t else None
    bess = pv = None
    if "bess" in t:
        b = c.table(t, "bess", path)
        c.only_keys(b, f"{path}.bess", ["setpoint", "soc", "soc_max_pct", "max_charge_w", "ramp_w_per_s",
                                        "response_s"])
        target = _point(c, b, "setpoint", f"{path}.bess", writable, "setpoint (declare it in [[setpoints]])")
        soc = _point(c, b, "soc", f"{path}.bess", points)
        soc_max = c.number(b, "soc_max_pct", f"{path}.bess", default=95.0, minimum=0, maximum=100)
        charge = c.number(b, "max_charge_w", f"{path}.bess", minimum=0)
        ramp = c.number(b, "ramp_w_per_s", f"{path}.bess", default=float("inf"), minimum=0)
        response = c.number(b, "response_s", f"{path}.bess", default=0.0, minimum=0, maximum=60)
        if "." in target:
            device, point = target.split(".", 1)
            bess = c.build(f"{path}.bess", lambda: BessTarget(device, point, soc, soc_max, charge, ramp, response))
    if "pv" in t:
        p = c.table(t, "pv", path)
        c.only_keys(p, f"{path}.pv", ["setpoint", "rated_w", "rated_point", "power_point", "min_pct",
                                      "ramp_pct_per_s", "tau_s"])
        target = _point(c, p, "setpoint", f"{path}.pv", writable, "setpoint (declare it in [[setpoints]])")
        rated_w = c.number(p, "rated_w", f"{path}.pv", minimum=1) if "rated_w" in p else None
        rated_point = _point(c, p, "rated_point", f"{path}.pv", points) if "rated_point" in p else None
        power_point = _point(c, p, "power_point", f"{path}.pv", points) if "power_point" in p else None
        min_pct = c.number(p, "min_pct", f"{path}.pv", default=0.0, minimum=0, maximum=100)
        ramp = c.number(p, "ramp_pct_per_s", f"{path}.pv", default=float("inf"), minimum=0)
        tau_s = c.number(p, "tau_s", f"{path}.pv", default=1.0, minimum=0, maximum=60)
        if "." in target:
            device, point = target.split(".", 1)
            pv = c.build(f"{path}.pv", lambda: PvTarget(device, point, rated_w, rated_point, power_point,
                                                            min_pct, ramp, tau_s))
    fallback = c.number(t, "fallback_kw", path) if "fallback_kw" in t else None
    if any(p.path.startswith(path) for p in c.problems):
        return None  # the parts already reported; building the whole would only repeat them
    return c.build(path, lambda: ExportLimitConfig(
        contract_min_kw=c.number(t, "contract_min_kw", path), contract_max_kw=c.number(t, "contract_max_kw", path),
        static_kw=static, schedule=schedule, meter_point=meter,
        margin_kw=c.number(t, "margin_kw", path, default=0.0, minimum=0), fallback_kw=fallback,
        freeze_window_s=c.number(t, "freeze_window_s", path, default=5.0, minimum=0.1),
        freeze_tolerance_w=c.number(t, "freeze_tolerance_w", path, default=0.0, minimum=0),
        bess=bess, pv=pv))


def _window(c: Checker, t: dict[str, Any], path: str) -> LimitWindow | None:
    c.only_keys(t, path, ["days", "start", "end", "limit_kw"])
    days = t.get("days")
    if not isinstance(days, list) or not days or not all(d in _DAYS for d in days):
        c.error(f"{path}.days", f"must be a list of {', '.join(_DAYS)}", days)
        return None
    start, end = _time(c, t, "start", path), _time(c, t, "end", path)
    limit = c.number(t, "limit_kw", path)
    if start is None or end is None:
        return None
    return c.build(path, lambda: LimitWindow(frozenset(_DAYS.index(d) for d in days), start, end, limit))


def _time(c: Checker, t: dict[str, Any], key: str, path: str) -> dt.time | None:
    value = t.get(key)
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str) and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        return dt.time(int(value[:2]), int(value[3:]))
    c.error(f"{path}.{key}", 'must be a local time like "16:00"', value)
    return None
