"""Scenario files: load a TOML scenario, validate every key, and reject mistakes clearly.

A scenario is the whole experiment: the site, the weather, the start time, the seed, the
faults to inject and the physics events to play.  Every parameter has a default, so an empty
file is a valid scenario; every unknown key, wrong type or out-of-range value is an error that
names the key, because a typo silently replaced by a default would make a test pass for the
wrong reason.

Format (all keys optional)::

    name = "sunny-day"
    description = "..."
    seed = 42
    start = 2025-06-21T10:30:00      # plant local time at t = 0 (TOML datetime or ISO string)
    speed = 1.0                      # plant seconds per wall second
    duration_s = 30.0                # recommended run length, wall seconds at speed 1 (optional)

    [site]                           # see hil.physics.SiteParams
    pv_kwp = 100.0
    ...

    [weather]                        # see hil.physics.WeatherParams
    cloud_passes_per_hour = 0.0

    [[faults]]
    device = "meter"                 # meter | inverter | bess
    kind = "offline"                 # offline | frozen | garbage | slow
    at_s = 20.0                      # wall seconds since plant start
    duration_s = 15.0
    # delay_ms = 500.0               # slow only, required there

    [[events]]
    kind = "load_step"               # load_step | bess_heat
    at_s = 10.0                      # PLANT seconds since the scenario start
    delta_kw = -30.0                 # load_step: signed change of the site load (never below 0)
    # duration_s = 5.0               # load_step: optional (absent = rest of the run)

    [[events]]
    kind = "bess_heat"
    at_s = 10.0
    duration_s = 8.0                 # bess_heat: required
    rise_c = 30.0                    # bess_heat: extra steady-state module temperature, > 0

    [transformer]                    # optional: the site's transformer, see hil.transformer
    rating_kva = 250.0               # (and an OPC UA server for it, see hil.transformer_server)
    cooling = "ONAF"                 # ONAN | ONAF

    [[events]]                       # heat_wave | fan_failure | sensor_drift need [transformer];
    kind = "heat_wave"               # see hil.transformer_events
    at_s = 43200.0
    duration_s = 259200.0
    ambient_rise_c = 10.0

Two time bases, on purpose: **faults act on the network** and are timed in *wall* seconds since
the plant started (a meter that is offline for 10 s is offline for 10 s of the client's time,
whatever the speed); **events act on the physics** and are timed in *plant* seconds since the
scenario start (a load step at 10 s happens after 10 s of simulated time, so a run is
reproducible at any speed).  At speed 1 the two coincide.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from hil.events import BessHeat, EventKind, LoadStep, PhysicsEvent
from hil.faults import DEVICE_NAMES, FaultKind, FaultSpec
from hil.physics import PlantParams, SiteParams, WeatherParams
from hil.transformer import ONAF_ONLY_KEYS, Cooling, TransformerParams
from hil.transformer import RANGES as TRANSFORMER_RANGES
from hil.transformer_events import (
    TRANSFORMER_EVENT_FIELDS,
    FanFailure,
    HeatWave,
    SensorDrift,
    TransformerEvent,
    TransformerEventKind,
    build_transformer_event,
)

DEFAULT_SCENARIO = "sunny-day"
DEFAULT_START = datetime(2025, 6, 21, 11, 0, 0)
MAX_SPEED = 1000.0


class ScenarioError(Exception):
    """A scenario that cannot be loaded; the message names the file and the key."""


@dataclass(frozen=True)
class Scenario:
    """A validated scenario."""

    name: str = DEFAULT_SCENARIO
    description: str = ""
    seed: int = 0
    start: datetime = DEFAULT_START
    speed: float = 1.0
    site: SiteParams = field(default_factory=SiteParams)
    weather: WeatherParams = field(default_factory=WeatherParams)
    faults: tuple[FaultSpec, ...] = ()
    events: tuple[PhysicsEvent, ...] = ()
    duration_s: float | None = None  # recommended run length in wall seconds at speed 1
    source: str = "<defaults>"
    transformer: TransformerParams | None = None  # None: no transformer, no OPC UA server
    transformer_events: tuple[TransformerEvent, ...] = ()

    @property
    def params(self) -> PlantParams:
        start_hour = self.start.hour + self.start.minute / 60.0 + self.start.second / 3600.0
        return PlantParams(
            site=self.site, weather=self.weather, seed=self.seed, start_hour=start_hour, events=self.events
        )


# -- ranges -----------------------------------------------------------------------------

Check = Callable[[float], bool]
_RANGES: dict[str, tuple[Check, str]] = {
    "site.pv_kwp": (lambda v: v > 0, "must be > 0"),
    "site.inverter_kw": (lambda v: v > 0, "must be > 0"),
    "site.load_peak_kw": (lambda v: v >= 0, "must be >= 0"),
    "site.bess_kwh": (lambda v: v > 0, "must be > 0"),
    "site.bess_kw": (lambda v: v > 0, "must be > 0"),
    "site.soc_initial_pct": (lambda v: 0 <= v <= 100, "must be within 0..100"),
    "site.soc_min_pct": (lambda v: 0 <= v <= 100, "must be within 0..100"),
    "site.soc_max_pct": (lambda v: 0 <= v <= 100, "must be within 0..100"),
    "site.bess_efficiency": (lambda v: 0 < v <= 1, "must be within (0, 1]"),
    "site.bess_ramp_w_per_s": (lambda v: v > 0, "must be > 0"),
    "site.bess_dead_time_s": (lambda v: 0 <= v <= 60, "must be within 0..60"),
    "site.bess_tau_s": (lambda v: 0 <= v <= 3600, "must be within 0..3600"),
    "site.inverter_tau_s": (lambda v: 0 <= v <= 3600, "must be within 0..3600"),
    "site.ambient_c": (lambda v: -60 <= v <= 70, "must be within -60..70"),
    "site.bess_heating_c": (lambda v: 0 <= v <= 200, "must be within 0..200"),
    "site.bess_thermal_tau_s": (lambda v: 0 <= v <= 86400, "must be within 0..86400"),
    "site.nominal_voltage_v": (lambda v: 0 < v <= 100000, "must be within (0, 100000]"),
    "site.nominal_frequency_hz": (lambda v: 0 < v <= 1000, "must be within (0, 1000]"),
    "site.sunrise_h": (lambda v: 0 <= v < 24, "must be within [0, 24)"),
    "site.sunset_h": (lambda v: 0 < v <= 24, "must be within (0, 24]"),
    "site.step_s": (lambda v: 0.001 <= v <= 10, "must be within 0.001..10"),
    "weather.cloud_passes_per_hour": (lambda v: 0 <= v <= 120, "must be within 0..120"),
    "weather.cloud_depth": (lambda v: 0 <= v <= 1, "must be within 0..1"),
    "weather.cloud_duration_s": (lambda v: 0 < v <= 2400, "must be within (0, 2400]"),
    "seed": (lambda v: 0 <= v < 2**63, "must be >= 0"),
    "speed": (lambda v: 0 < v <= MAX_SPEED, f"must be within (0, {MAX_SPEED:g}]"),
    "faults.at_s": (lambda v: v >= 0, "must be >= 0"),
    "faults.duration_s": (lambda v: v > 0, "must be > 0"),
    "faults.delay_ms": (lambda v: 0 < v <= 60000, "must be within (0, 60000]"),
    "duration_s": (lambda v: 0 < v < math.inf, "must be > 0 and finite"),
    "events.at_s": (lambda v: 0 <= v < math.inf, "must be >= 0 and finite"),
    "events.duration_s": (lambda v: 0 < v < math.inf, "must be > 0 and finite"),
    "events.delta_kw": (lambda v: v != 0 and -1e6 <= v <= 1e6, "must be non-zero and within -1e6..1e6"),
    "events.rise_c": (lambda v: 0 < v <= 500, "must be within (0, 500]"),
    "events.ambient_rise_c": (lambda v: 0 < v <= 40, "must be within (0, 40]"),
    "events.ramp_s": (lambda v: 0 <= v < math.inf, "must be >= 0 and finite"),
    "events.rate_c_per_h": (lambda v: v != 0 and -100 <= v <= 100, "must be non-zero and within -100..100"),
    **{f"transformer.{key}": rule for key, rule in TRANSFORMER_RANGES.items()},
}
_TOP_KEYS = (
    "name",
    "description",
    "seed",
    "start",
    "speed",
    "duration_s",
    "site",
    "weather",
    "faults",
    "events",
    "transformer",
)
_FAULT_KEYS = ("device", "kind", "at_s", "duration_s", "delay_ms")
_EVENT_KEYS = ("kind", "at_s", "duration_s", "delta_kw", "rise_c", "ambient_rise_c", "ramp_s", "rate_c_per_h")
#: Per event kind: (required keys, optional keys) besides ``kind``.
_EVENT_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    EventKind.LOAD_STEP: (("at_s", "delta_kw"), ("duration_s",)),
    EventKind.BESS_HEAT: (("at_s", "duration_s", "rise_c"), ()),
    **TRANSFORMER_EVENT_FIELDS,
}


class _Reader:
    """Typed access to one TOML table, with errors that name the key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, message: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {key}: {message}")

    def check_keys(self, table: Mapping[str, Any], known: typing.Iterable[str], prefix: str) -> None:
        known = tuple(known)
        for key in table:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                extra = f" (did you mean '{prefix}{hint[0]}'?)" if hint else f"; known keys: {', '.join(known)}"
                raise ScenarioError(f"{self.source}: unknown key '{prefix}{key}'{extra}")

    def number(self, value: object, key: str, range_key: str | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, f"expected a number, got {_describe(value)}")
        return self.check_range(float(value), key, range_key)

    def integer(self, value: object, key: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {_describe(value)}")
        self.check_range(float(value), key)
        return value

    def string(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            raise self.fail(key, f"expected a string, got {_describe(value)}")
        return value

    def table(self, value: object, key: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table ([{key}]), got {_describe(value)}")
        return value

    def check_range(self, value: float, key: str, range_key: str | None = None) -> float:
        rule = _RANGES.get(range_key or key)
        if rule is not None and not rule[0](value):
            raise self.fail(key, f"{rule[1]}, got {value:g}")
        return value


def _describe(value: object) -> str:
    kind = {bool: "boolean", str: "string", int: "integer", float: "number", dict: "table", list: "array"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"


def _dataclass_from_table(reader: _Reader, cls: type[Any], table: Mapping[str, Any], prefix: str) -> Any:
    """Build a params dataclass from a TOML table; every field is optional, typed as float."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    reader.check_keys(table, fields, f"{prefix}.")
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, raw in table.items():
        if hints[key] not in (float, float | None):  # pragma: no cover - guards future fields
            raise TypeError(f"unsupported field type {hints[key]} for {prefix}.{key}")
        values[key] = reader.number(raw, f"{prefix}.{key}")
    return cls(**values)


def _parse_start(reader: _Reader, value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise reader.fail("start", f"not an ISO date-time: {value!r}") from None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date | time):
        raise reader.fail("start", f"expected a date and a time (e.g. 2025-06-21T10:30:00), got {value!r}")
    raise reader.fail("start", f"expected a date-time, got {_describe(value)}")


def _parse_fault(reader: _Reader, raw: object, index: int) -> FaultSpec:
    key = f"faults[{index}]"
    table = reader.table(raw, key)
    reader.check_keys(table, _FAULT_KEYS, f"{key}.")
    for required in ("device", "kind", "at_s", "duration_s"):
        if required not in table:
            raise reader.fail(f"{key}.{required}", "missing")
    device = reader.string(table["device"], f"{key}.device")
    if device not in DEVICE_NAMES:
        raise reader.fail(f"{key}.device", f"unknown device {device!r}; expected one of {', '.join(DEVICE_NAMES)}")
    kind_name = reader.string(table["kind"], f"{key}.kind")
    try:
        kind = FaultKind(kind_name)
    except ValueError:
        kinds = ", ".join(k.value for k in FaultKind)
        raise reader.fail(f"{key}.kind", f"unknown fault kind {kind_name!r}; expected one of {kinds}") from None
    at_s = reader.number(table["at_s"], f"{key}.at_s", "faults.at_s")
    duration_s = reader.number(table["duration_s"], f"{key}.duration_s", "faults.duration_s")
    delay_ms = 0.0
    if kind is FaultKind.SLOW:
        if "delay_ms" not in table:
            raise reader.fail(f"{key}.delay_ms", "missing (required for kind 'slow')")
        delay_ms = reader.number(table["delay_ms"], f"{key}.delay_ms", "faults.delay_ms")
    elif "delay_ms" in table:
        raise reader.fail(f"{key}.delay_ms", f"only allowed for kind 'slow', not {kind.value!r}")
    return FaultSpec(device=device, kind=kind, at_s=at_s, duration_s=duration_s, delay_ms=delay_ms)


def _parse_event(reader: _Reader, raw: object, index: int) -> PhysicsEvent | TransformerEvent:
    key = f"events[{index}]"
    table = reader.table(raw, key)
    reader.check_keys(table, _EVENT_KEYS, f"{key}.")
    if "kind" not in table:
        raise reader.fail(f"{key}.kind", "missing")
    kind = reader.string(table["kind"], f"{key}.kind")
    if kind not in _EVENT_FIELDS:
        kinds = ", ".join(_EVENT_FIELDS)
        raise reader.fail(f"{key}.kind", f"unknown event kind {kind!r}; expected one of {kinds}")
    required, optional = _EVENT_FIELDS[kind]
    for name in table:
        if name != "kind" and name not in required + optional:
            owners = [str(k) for k, (req, opt) in _EVENT_FIELDS.items() if name in req + opt]
            allowed = f"only allowed for kind {', '.join(map(repr, owners))}" if owners else "not allowed"
            raise reader.fail(f"{key}.{name}", f"{allowed}, not {kind!r}")
    for name in required:
        if name not in table:
            raise reader.fail(f"{key}.{name}", f"missing (required for kind {kind!r})")
    values = {name: reader.number(table[name], f"{key}.{name}", f"events.{name}") for name in table if name != "kind"}
    if kind in TRANSFORMER_EVENT_FIELDS:
        try:
            return build_transformer_event(TransformerEventKind(kind), values)
        except ValueError as exc:
            raise ScenarioError(f"{reader.source}: {key}.{exc}") from None
    if kind == EventKind.LOAD_STEP:
        return LoadStep(at_s=values["at_s"], delta_kw=values["delta_kw"], duration_s=values.get("duration_s"))
    return BessHeat(at_s=values["at_s"], duration_s=values["duration_s"], rise_c=values["rise_c"])


def _parse_transformer(reader: _Reader, raw: object) -> TransformerParams:
    table = dict(reader.table(raw, "transformer"))
    cooling_raw = table.pop("cooling", Cooling.ONAF.value)
    cooling_name = reader.string(cooling_raw, "transformer.cooling")
    if cooling_name not in tuple(Cooling):
        choices = ", ".join(c.value for c in Cooling)
        raise reader.fail("transformer.cooling", f"unknown cooling {cooling_name!r}; expected one of {choices}")
    params: TransformerParams = _dataclass_from_table(reader, TransformerParams, table, "transformer")
    params = dataclasses.replace(params, cooling=Cooling(cooling_name))
    if params.cooling is Cooling.ONAN:
        for name in ONAF_ONLY_KEYS:
            if name in table:
                raise reader.fail(f"transformer.{name}", "only allowed with cooling = 'ONAF' (ONAN has no fans)")
    for name, message in params.problems():
        raise reader.fail(f"transformer.{name}", message)
    return params


def _check_transformer_events(
    reader: _Reader, events: list[tuple[int, TransformerEvent]], transformer: TransformerParams | None
) -> None:
    for index, event in events:
        if transformer is None:
            raise reader.fail(f"events[{index}].kind", f"{event.kind.value!r} needs a [transformer] table")
        if isinstance(event, FanFailure) and transformer.cooling is not Cooling.ONAF:
            raise reader.fail(f"events[{index}].kind", "'fan_failure' needs transformer.cooling = 'ONAF'")


def _array_of_tables(reader: _Reader, data: Mapping[str, Any], key: str) -> list[Any]:
    raw = data.get(key, [])
    if not isinstance(raw, list):
        raise reader.fail(key, f"expected an array of tables ([[{key}]]), got {_describe(raw)}")
    return raw


def parse_scenario(data: Mapping[str, Any], *, source: str, default_name: str = DEFAULT_SCENARIO) -> Scenario:
    """Validate a decoded TOML document and build the scenario; ScenarioError on any mistake."""
    reader = _Reader(source)
    reader.check_keys(data, _TOP_KEYS, "")
    name = reader.string(data.get("name", default_name), "name")
    if not name.strip():
        raise reader.fail("name", "must not be empty")
    site = _dataclass_from_table(reader, SiteParams, reader.table(data.get("site", {}), "site"), "site")
    weather = _dataclass_from_table(reader, WeatherParams, reader.table(data.get("weather", {}), "weather"), "weather")
    if site.soc_min_pct >= site.soc_max_pct:
        raise reader.fail("site.soc_min_pct", f"must be below site.soc_max_pct ({site.soc_max_pct:g})")
    if not site.soc_min_pct <= site.soc_initial_pct <= site.soc_max_pct:
        raise reader.fail(
            "site.soc_initial_pct", f"must be within site.soc_min_pct..site.soc_max_pct, got {site.soc_initial_pct:g}"
        )
    if site.sunrise_h >= site.sunset_h:
        raise reader.fail("site.sunrise_h", f"must be before site.sunset_h ({site.sunset_h:g})")
    faults_raw = _array_of_tables(reader, data, "faults")
    events = [(i, _parse_event(reader, raw, i)) for i, raw in enumerate(_array_of_tables(reader, data, "events"))]
    transformer = None if "transformer" not in data else _parse_transformer(reader, data["transformer"])
    transformer_events = [(i, e) for i, e in events if isinstance(e, HeatWave | FanFailure | SensorDrift)]
    _check_transformer_events(reader, transformer_events, transformer)
    duration_raw = data.get("duration_s")
    return Scenario(
        name=name,
        description=reader.string(data.get("description", ""), "description"),
        seed=reader.integer(data.get("seed", 0), "seed"),
        start=_parse_start(reader, data.get("start", DEFAULT_START)),
        speed=reader.number(data.get("speed", 1.0), "speed"),
        site=site,
        weather=weather,
        faults=tuple(_parse_fault(reader, raw, i) for i, raw in enumerate(faults_raw)),
        events=tuple(e for _, e in events if isinstance(e, LoadStep | BessHeat)),
        duration_s=None if duration_raw is None else reader.number(duration_raw, "duration_s"),
        source=source,
        transformer=transformer,
        transformer_events=tuple(e for _, e in transformer_events),
    )


def parse_scenario_text(text: str, *, source: str = "<string>", default_name: str = DEFAULT_SCENARIO) -> Scenario:
    """Parse scenario TOML from a string."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{source}: invalid TOML: {exc}") from None
    return parse_scenario(data, source=source, default_name=default_name)


def _builtin_dir() -> Path:
    return Path(__file__).resolve().parent / "scenarios"


def builtin_scenarios() -> dict[str, Path]:
    """The scenarios shipped in hil/scenarios, by name (file stem)."""
    return {p.stem: p for p in sorted(_builtin_dir().glob("*.toml"))}


def list_scenarios() -> list[Scenario]:
    """Load every shipped scenario (for ``python -m hil list``)."""
    return [load_scenario(path) for path in builtin_scenarios().values()]


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a shipped scenario by name (``sunny-day``) or any scenario file by path."""
    text_arg = str(name_or_path)
    path = Path(name_or_path)
    is_path = isinstance(name_or_path, Path) or text_arg.endswith(".toml") or "/" in text_arg or path.exists()
    if not is_path:
        builtins = builtin_scenarios()
        if text_arg not in builtins:
            available = ", ".join(builtins) or "none"
            raise ScenarioError(f"unknown scenario {text_arg!r}; available: {available} (or give a path to a .toml)")
        path = builtins[text_arg]
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(f"scenario file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc}") from None
    return parse_scenario_text(text, source=str(path), default_name=path.stem)
