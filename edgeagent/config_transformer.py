"""The `[transformer]` section: which points describe the transformer, its thermal data, limits and model.

```toml
[transformer]
top_oil = "xfmr.top_oil_c"          # measured top-oil temperature, °C (required)
load_pu = "xfmr.load_pu"            # per-unit load K ... or load_kva = "POINT" with rated_kva
rated_kva = 1000                    # needed with load_kva or a BESS (kW → per unit)
ambient = "xfmr.ambient_c"          # optional; without it the ambient is inferred and no cooling check runs
hot_spot = "xfmr.hot_spot_c"        # optional measured hot-spot (fibre-optic probe)
model = "models/transformer-topoil-1.0.0.manifest.json"   # optional, relative to this file
bess_setpoint = "bess.WSet"         # optional: the battery the recommendations may discharge
bess_setpoint_unit = "W"            # the unit of that point: "kW" (default) or "W"
bess_power_kw = 250
bess_energy_kwh = 500
max_shift_kw = 100                  # optional: offer a load shift when the BESS cannot do it
power_factor = 0.95                 # of the load, for kW ↔ per unit (default 1)
every_s = 900                       # analysis period (60-86400)
[transformer.thermal]
preset = "onan_distribution"        # a name in thermal_params.PRESETS; any field may be overridden
[transformer.limits]
normal_c = 120                      # hot-spot limits, °C (IEEE C57.91 Table 7 defaults)
emergency_c = 140
```
Every point named must exist and, when `[history] points` is given, be kept by the history: the
service reads its inputs from the hourly history, never from the scan cycle.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeagent.analytics.thermal_params import PRESETS, ThermalParamError, ThermalParams
from edgeagent.analytics.transformer_health import HotSpotLimits
from edgeagent.analytics.transformer_health_plan import BessLimits, Site
from edgeagent.config_history import HistoryConfig
from edgeagent.configcheck import Checker

DEFAULT_EVERY_S = 900.0
_KEYS = ["top_oil", "load_pu", "load_kva", "rated_kva", "ambient", "hot_spot", "model", "bess_setpoint",
         "bess_setpoint_unit", "bess_power_kw", "bess_energy_kwh", "max_shift_kw", "power_factor", "every_s",
         "thermal", "limits"]
_PATH = "transformer"


@dataclass(frozen=True, slots=True)
class TransformerConfig:
    """One transformer under watch. Exactly one of `load_pu` / `load_kva` is set (the latter with `site`)."""

    top_oil: str
    load_pu: str | None
    load_kva: str | None
    ambient: str | None
    hot_spot: str | None
    params: ThermalParams
    limits: HotSpotLimits
    site: Site | None
    model: Path | None = None
    bess: BessLimits | None = None
    bess_w_per_kw: float = 1.0
    """What one kW of discharge is in the BESS setpoint's unit: 1 for a kW point, 1000 for a W point."""
    max_shift_kw: float | None = None
    every_s: float = DEFAULT_EVERY_S

    @property
    def load_point(self) -> str:
        point = self.load_pu if self.load_pu is not None else self.load_kva
        assert point is not None  # checked at parse time
        return point


def parse_transformer(c: Checker, doc: dict[str, Any], points: Iterable[str], history: HistoryConfig,
                      base_dir: Path | None = None) -> TransformerConfig | None:
    """`[transformer]` of a parsed config, None when absent; every problem goes to `c` at its key path."""
    if "transformer" not in doc:
        return None
    t = c.table(doc, _PATH, "")
    c.only_keys(t, _PATH, _KEYS)
    known = set(points)
    problems_before = len(c.problems)

    def point(key: str, required: bool = False) -> str | None:
        if key not in t and not required:
            return None
        name = c.string(t, key, _PATH)
        if not name:
            return None
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            c.error(f"{_PATH}.{key}", "no such point" + (f"; did you mean '{close[0]}'?" if close else ""), name)
        elif not history.keeps(name):
            c.error(f"{_PATH}.{key}", "is not kept by [history] points, and the transformer service reads the "
                    "history: add it there", name)
        return name

    top_oil = point("top_oil", required=True)
    load_pu, load_kva = point("load_pu"), point("load_kva")
    if ("load_pu" in t) == ("load_kva" in t):
        c.error(f"{_PATH}.load_pu", "give exactly one of load_pu (per unit) or load_kva (with rated_kva)")
    ambient, hot_spot = point("ambient"), point("hot_spot")
    rated_kva = c.number(t, "rated_kva", _PATH, minimum=0.001) if "rated_kva" in t else None
    power_factor = c.number(t, "power_factor", _PATH, default=1.0, minimum=0.01, maximum=1.0)
    bess = _bess(c, t, known, rated_kva)
    if load_kva is not None and rated_kva is None:
        c.error(f"{_PATH}.rated_kva", "is required with load_kva (to turn kVA into per-unit load)")
    max_shift_kw = c.number(t, "max_shift_kw", _PATH, minimum=0.001) if "max_shift_kw" in t else None
    if max_shift_kw is not None and rated_kva is None:
        c.error(f"{_PATH}.rated_kva", "is required with max_shift_kw (to turn kW into per-unit load)")
    every_s = c.number(t, "every_s", _PATH, default=DEFAULT_EVERY_S, minimum=60, maximum=86_400)
    params = _params(c, t)
    limits = _limits(c, c.table(t, "limits", _PATH))
    model = _model(c, t, base_dir)
    unit = c.string(t, "bess_setpoint_unit", _PATH, default="kW", choices=["kW", "W"])
    if len(c.problems) > problems_before or top_oil is None or params is None or limits is None:
        return None
    site = Site(rated_kva, power_factor) if rated_kva is not None else None
    return TransformerConfig(top_oil=top_oil, load_pu=load_pu, load_kva=load_kva, ambient=ambient, hot_spot=hot_spot,
                             params=params, limits=limits, site=site, model=model, bess=bess,
                             bess_w_per_kw=1000.0 if unit == "W" else 1.0, max_shift_kw=max_shift_kw,
                             every_s=every_s)


def _bess(c: Checker, t: dict[str, Any], known: set[str], rated_kva: float | None) -> BessLimits | None:
    keys = ("bess_setpoint", "bess_power_kw", "bess_energy_kwh")
    given = [k for k in keys if k in t]
    if not given:
        return None
    for key in keys:
        if key not in t:
            c.error(f"{_PATH}.{key}", f"is required with {given[0]} (the BESS needs a setpoint, power and energy)")
    if rated_kva is None:
        c.error(f"{_PATH}.rated_kva", "is required with a BESS (to turn kW into per-unit load)")
    setpoint = c.string(t, "bess_setpoint", _PATH, default="")
    power_kw = c.number(t, "bess_power_kw", _PATH, default=1.0, minimum=0.001)
    energy_kwh = c.number(t, "bess_energy_kwh", _PATH, default=1.0, minimum=0.001)
    if setpoint and setpoint not in known:
        close = difflib.get_close_matches(setpoint, sorted(known), n=1)
        c.error(f"{_PATH}.bess_setpoint", "no such point" + (f"; did you mean '{close[0]}'?" if close else ""),
                setpoint)
    device, _, name = setpoint.partition(".")
    if not (device and name):
        return None
    return BessLimits(power_kw=power_kw, energy_kwh=energy_kwh, device=device, point=name)


def _params(c: Checker, t: dict[str, Any]) -> ThermalParams | None:
    where = f"{_PATH}.thermal"
    if "thermal" not in t:
        c.error(where, f"is required: a table with a preset ({', '.join(PRESETS)}) and/or every thermal field")
        return None
    try:
        return ThermalParams.from_mapping(c.table(t, "thermal", _PATH), where)
    except ThermalParamError as exc:
        c.error(exc.field, exc.problem)
        return None


def _limits(c: Checker, t: dict[str, Any]) -> HotSpotLimits | None:
    where = f"{_PATH}.limits"
    c.only_keys(t, where, ["normal_c", "emergency_c"])
    defaults = HotSpotLimits()
    normal_c = c.number(t, "normal_c", where, default=defaults.normal_c, minimum=40, maximum=250)
    emergency_c = c.number(t, "emergency_c", where, default=defaults.emergency_c, minimum=40, maximum=250)
    try:
        return HotSpotLimits(normal_c, emergency_c)
    except ValueError:
        c.error(f"{where}.emergency_c", f"must be above normal_c ({normal_c:g} °C)", emergency_c)
        return None


def _model(c: Checker, t: dict[str, Any], base_dir: Path | None) -> Path | None:
    if "model" not in t:
        return None
    raw = c.string(t, "model", _PATH)
    if not raw:
        return None
    path = Path(raw)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    # A missing or bad model file is not a config error: the service runs on physics and says so (an event).
    return path


__all__ = ["DEFAULT_EVERY_S", "TransformerConfig", "parse_transformer"]
