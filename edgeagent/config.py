"""Site configuration: one TOML file → frozen, validated objects.

Every problem in the file is reported at once (`ConfigError.problems`), each as
`FILE:LINE: key.path: what is wrong (got VALUE)`; the CLI prints them and exits with status 2.
The full key reference is in README.md ("Configuration").
"""

from __future__ import annotations

import difflib
import hashlib
import re
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeagent.config_decisions import DecisionsConfig, parse_decisions
from edgeagent.config_history import HistoryConfig, parse_history
from edgeagent.config_i2c import parse_i2c_device
from edgeagent.config_opcua import parse_opcua_device
from edgeagent.config_safety import SafetyConfig, parse_safety
from edgeagent.config_transformer import TransformerConfig, parse_transformer
from edgeagent.configcheck import Checker, KeyLines
from edgeagent.decisions.trust import TrustStore
from edgeagent.field.i2c_adapter import I2cDeviceConfig
from edgeagent.field.opcua_config import OpcUaDeviceConfig
from edgeagent.field.points import RegisterPoint, RegType, Table, WordOrder
from edgeagent.uplink.telemetry import TelemetryConfig

EXIT_CONFIG = 2
"""Exit status for a configuration error; the systemd unit does not restart on it."""

NAME_RE = r"[A-Za-z][A-Za-z0-9_\-]{0,63}"


class ConfigError(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class SiteConfig:
    site_id: str
    node_id: str
    timezone: str


@dataclass(frozen=True, slots=True)
class ScanConfig:
    period_s: float
    history_len: int


@dataclass(frozen=True, slots=True)
class LogConfig:
    format: str  # "auto" | "json" | "console"
    level: str


@dataclass(frozen=True, slots=True)
class ModbusLink:
    """How to reach a Modbus device: TCP (host, port) or RTU (serial port settings)."""

    transport: str  # "tcp" | "rtu"
    host: str
    port: int
    serial_port: str
    baudrate: int
    parity: str
    stopbits: int
    bytesize: int
    unit_id: int

    def describe(self) -> str:
        if self.transport == "tcp":
            return f"{self.host}:{self.port} unit {self.unit_id}"
        return f"{self.serial_port}@{self.baudrate} unit {self.unit_id}"


@dataclass(frozen=True, slots=True)
class SunSpecPointRef:
    """A SunSpec point named by model and point ("203.W"), resolved after discovery."""

    ref: str
    name: str


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    """A Modbus device. `kind` "modbus" has `registers`; "sunspec" has `sunspec_points`."""

    name: str
    kind: str
    link: ModbusLink
    poll_s: float
    timeout_s: float
    min_gap_s: float
    max_age_s: float
    registers: tuple[RegisterPoint, ...]
    sunspec_points: tuple[SunSpecPointRef, ...]
    sunspec_bases: tuple[int, ...]

    def point_names(self) -> list[str]:
        local = [p.name for p in self.registers] + [p.name for p in self.sunspec_points]
        return [f"{self.name}.{n}" for n in local]


AnyDevice = DeviceConfig | I2cDeviceConfig | OpcUaDeviceConfig
"""Every device kind has `name` and `point_names()`; the uplink and safety config only need those."""


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    """The MQTT uplink. Plaintext to a non-loopback broker is refused unless `allow_insecure`."""

    host: str
    port: int
    tls: bool
    client_id: str
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    username: str | None
    password_file: str | None
    allow_insecure: bool
    protocol: str
    keepalive_s: int
    inflight_max: int
    budget_bytes: int
    thin_keep_one_in: int
    telemetry: TelemetryConfig

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Config:
    path: str
    sha256: str
    site: SiteConfig
    scan: ScanConfig
    state_dir: str
    log: LogConfig
    devices: tuple[DeviceConfig, ...]
    uplink: UplinkConfig | None = None
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    trust: TrustStore = field(default_factory=TrustStore)
    decisions: DecisionsConfig = field(default_factory=DecisionsConfig)
    i2c_devices: tuple[I2cDeviceConfig, ...] = ()
    opcua_devices: tuple[OpcUaDeviceConfig, ...] = ()
    history: HistoryConfig = field(default_factory=HistoryConfig)
    transformer: TransformerConfig | None = None


def load(path: str | Path) -> Config:
    """Read and validate a config file. Raises ConfigError listing every problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    return parse(text, str(path), hashlib.sha256(raw).hexdigest())


def parse(text: str, filename: str = "<config>", sha256: str = "") -> Config:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([_syntax_error(filename, exc)]) from None
    c = Checker(filename, KeyLines(text))
    c.only_keys(doc, "", ["site", "scan", "storage", "log", "devices", "uplink", "setpoints", "interlocks",
                          "export_limit", "trust", "decisions", "history", "transformer"])
    site = _site(c, c.table(doc, "site", ""))
    scan = _scan(c, c.table(doc, "scan", ""))
    storage = c.table(doc, "storage", "")
    c.only_keys(storage, "storage", ["dir"])
    state_dir = c.string(storage, "dir", "storage", default="/var/lib/edgeagent")
    log = c.table(doc, "log", "")
    c.only_keys(log, "log", ["format", "level"])
    log_cfg = LogConfig(
        c.string(log, "format", "log", default="auto", choices=["auto", "json", "console"]),
        c.string(log, "level", "log", default="info", choices=["debug", "info", "warning", "error"]),
    )
    devices_t = c.table(doc, "devices", "")
    tables = {name: t for name, t in devices_t.items() if _is_table(c, t, f"devices.{name}")}
    devices = tuple(_device(c, name, t) for name, t in tables.items() if t.get("kind") not in ("i2c", "opcua"))
    i2c = tuple(d for name, t in tables.items() if t.get("kind") == "i2c" and (d := _i2c(c, name, t)))
    opcua = tuple(u for name, t in tables.items() if t.get("kind") == "opcua" and (u := _opcua(c, name, t)))
    if not devices_t:
        c.error("devices", "at least one device is required")
    _check_unique_points(c, devices)
    every: tuple[AnyDevice, ...] = (*devices, *i2c, *opcua)
    uplink = _uplink(c, doc["uplink"], site, every) if "uplink" in doc else None
    points = {name for d in every for name in d.point_names()}
    safety = parse_safety(c, doc, points, site.timezone or "UTC")
    trust, decisions = parse_decisions(c, doc)
    history = parse_history(c, doc, every)
    transformer = parse_transformer(c, doc, points, history, Path(filename).parent)
    if c.problems:
        raise ConfigError(c.format())
    return Config(filename, sha256 or hashlib.sha256(text.encode()).hexdigest(), site, scan,
                  state_dir, log_cfg, devices, uplink, safety, trust, decisions, i2c, opcua, history, transformer)


def _i2c(c: Checker, name: str, t: dict[str, Any]) -> I2cDeviceConfig | None:
    if not re.fullmatch(NAME_RE, name):
        c.error(f"devices.{name}", f"device name must match {NAME_RE}", name)
    return parse_i2c_device(c, name, t)


def _opcua(c: Checker, name: str, t: dict[str, Any]) -> OpcUaDeviceConfig | None:
    if not re.fullmatch(NAME_RE, name):
        c.error(f"devices.{name}", f"device name must match {NAME_RE}", name)
    return parse_opcua_device(c, name, t)


def _syntax_error(filename: str, exc: tomllib.TOMLDecodeError) -> str:
    line = getattr(exc, "lineno", None)
    message = str(getattr(exc, "msg", exc))
    if line is None:  # Python < 3.14 keeps the position only in the text
        m = re.search(r"\(at line (\d+), column \d+\)", message)
        if m:
            line = int(m.group(1))
            message = message[: m.start()].strip()
    return f"{filename}:{line}: TOML syntax error: {message}" if line else f"{filename}: TOML syntax error: {message}"


def _is_table(c: Checker, value: Any, path: str) -> bool:
    if isinstance(value, dict):
        return True
    c.error(path, "must be a table", value)
    return False


def _site(c: Checker, t: dict[str, Any]) -> SiteConfig:
    c.only_keys(t, "site", ["id", "node", "timezone"])
    tz = c.string(t, "timezone", "site", default="UTC")
    if tz:
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            c.error("site.timezone", "unknown time zone (use an IANA name such as Europe/Berlin)", tz)
    return SiteConfig(c.string(t, "id", "site", pattern=NAME_RE), c.string(t, "node", "site", pattern=NAME_RE), tz)


def _scan(c: Checker, t: dict[str, Any]) -> ScanConfig:
    c.only_keys(t, "scan", ["period_ms", "history_len"])
    period_ms = c.number(t, "period_ms", "scan", default=100, minimum=10, maximum=10_000)
    history = c.integer(t, "history_len", "scan", default=600, minimum=1, maximum=1_000_000)
    return ScanConfig(period_ms / 1000.0, history)


_DEVICE_KEYS = ["kind", "transport", "host", "port", "serial_port", "baudrate", "parity", "stopbits",
                "bytesize", "unit_id", "poll_ms", "timeout_ms", "min_gap_ms", "max_age_ms", "points",
                "sunspec_bases"]


def _device(c: Checker, name: str, t: dict[str, Any]) -> DeviceConfig:
    path = f"devices.{name}"
    if not re.fullmatch(NAME_RE, name):
        c.error(path, f"device name must match {NAME_RE}", name)
    c.only_keys(t, path, _DEVICE_KEYS)
    kind = c.string(t, "kind", path, choices=["modbus", "sunspec", "i2c", "opcua"])
    transport = c.string(t, "transport", path, default="tcp", choices=["tcp", "rtu"])
    link = ModbusLink(
        transport=transport,
        host=c.string(t, "host", path) if transport == "tcp" else c.string(t, "host", path, default=""),
        port=c.integer(t, "port", path, default=502, minimum=1, maximum=65535),
        serial_port=c.string(t, "serial_port", path) if transport == "rtu" else
        c.string(t, "serial_port", path, default=""),
        baudrate=c.integer(t, "baudrate", path, default=9600, minimum=300, maximum=921_600),
        parity=c.string(t, "parity", path, default="N", choices=["N", "E", "O"]),
        stopbits=c.integer(t, "stopbits", path, default=1, minimum=1, maximum=2),
        bytesize=c.integer(t, "bytesize", path, default=8, minimum=7, maximum=8),
        unit_id=c.integer(t, "unit_id", path, default=1, minimum=0, maximum=247),
    )
    poll_s = c.number(t, "poll_ms", path, default=1000, minimum=10, maximum=3_600_000) / 1000
    timeout_s = c.number(t, "timeout_ms", path, default=1000, minimum=10, maximum=60_000) / 1000
    min_gap_s = c.number(t, "min_gap_ms", path, default=0, minimum=0, maximum=10_000) / 1000
    max_age_s = c.number(t, "max_age_ms", path, default=(3 * poll_s + timeout_s) * 1000,
                         minimum=10, maximum=86_400_000) / 1000
    if max_age_s < poll_s:
        c.error(f"{path}.max_age_ms", "must be at least poll_ms, or every point would always be stale",
                int(max_age_s * 1000))
    bases = tuple(_int_list(c, t, "sunspec_bases", path, default=[40000, 0, 50000]))
    if kind == "sunspec" and "sunspec_bases" not in t:
        bases = (40000, 0, 50000)
    raw_points = t.get("points")
    if not isinstance(raw_points, list) or not raw_points:
        c.error(f"{path}.points", "must be a non-empty list of points", raw_points)
        raw_points = []
    registers: tuple[RegisterPoint, ...] = ()
    refs: tuple[SunSpecPointRef, ...] = ()
    if kind == "modbus":
        registers = tuple(p for i, e in enumerate(raw_points) if (p := _register(c, e, f"{path}.points[{i}]")))
    elif kind == "sunspec":
        refs = tuple(r for i, e in enumerate(raw_points) if (r := _sunspec_ref(c, e, f"{path}.points[{i}]")))
    return DeviceConfig(name, kind, link, poll_s, timeout_s, min_gap_s, max_age_s, registers, refs, bases)


def _int_list(c: Checker, t: dict[str, Any], key: str, path: str, default: list[int]) -> list[int]:
    value = t.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, int) and 0 <= v <= 65535 for v in value):
        c.error(f"{path}.{key}", "must be a list of register addresses 0-65535", value)
        return default
    return value


_POINT_NAME = r"[A-Za-z][A-Za-z0-9_]{0,63}"


def _sunspec_ref(c: Checker, entry: Any, path: str) -> SunSpecPointRef | None:
    if isinstance(entry, str):
        entry = {"ref": entry}
    if not isinstance(entry, dict):
        c.error(path, 'must be "MODEL.POINT" or a table {ref = "MODEL.POINT", name = "..."}', entry)
        return None
    c.only_keys(entry, path, ["ref", "name"])
    ref = c.string(entry, "ref", path, pattern=r"[A-Za-z0-9_]+(#\d+)?\.[A-Za-z0-9_.\[\]]+")
    if not ref:
        return None
    default_name = ref.split(".", 1)[-1].replace(".", "_").replace("[", "_").replace("]", "")
    name = c.string(entry, "name", path, default=default_name, pattern=_POINT_NAME)
    return SunSpecPointRef(ref, name)


_REGISTER_KEYS = ["name", "address", "type", "size", "table", "word_order", "scale", "sf_address",
                  "unit", "writable"]


def _register(c: Checker, entry: Any, path: str) -> RegisterPoint | None:
    if not isinstance(entry, dict):
        c.error(path, "must be a table with name, address and type", entry)
        return None
    c.only_keys(entry, path, _REGISTER_KEYS)
    types = [t.value for t in RegType if t not in (RegType.PAD,)]
    rtype = c.string(entry, "type", path, default="uint16", choices=types)
    size_default = RegType(rtype).size if rtype in types else 1
    size = c.integer(entry, "size", path, default=size_default, minimum=1, maximum=125)
    if rtype in types and rtype != "string" and size != RegType(rtype).size:
        c.error(f"{path}.size", f"type {rtype} uses {RegType(rtype).size} register(s)", size)
    sf_address = entry.get("sf_address")
    if sf_address is not None:
        sf_address = c.integer(entry, "sf_address", path, minimum=0, maximum=65535)
    point = RegisterPoint(
        name=c.string(entry, "name", path, pattern=_POINT_NAME),
        address=c.integer(entry, "address", path, minimum=0, maximum=65535),
        type=RegType(rtype) if rtype in types else RegType.UINT16,
        size=size,
        unit=c.string(entry, "unit", path, default=""),
        table=Table(c.string(entry, "table", path, default="holding", choices=["holding", "input"]) or "holding"),
        word_order=WordOrder(c.string(entry, "word_order", path, default="big", choices=["big", "little"]) or "big"),
        scale=c.number(entry, "scale", path, default=1.0),
        sf_address=sf_address,
        writable=c.boolean(entry, "writable", path, default=False),
    )
    if point.writable and point.table is Table.INPUT:
        c.error(f"{path}.writable", "input registers are read-only; use table = \"holding\"", True)
    if point.address <= 65535 and point.address + point.size > 65536:
        c.error(f"{path}.address", "point runs past register 65535", point.address)
    return point


def _check_unique_points(c: Checker, devices: tuple[DeviceConfig, ...]) -> None:
    for d in devices:
        seen: dict[str, int] = {}
        names = [p.name for p in d.registers] + [p.name for p in d.sunspec_points]
        for i, n in enumerate(names):
            if n in seen:
                c.error(f"devices.{d.name}.points[{i}]",
                        f"point name '{n}' is already used by points[{seen[n]}]; give one a distinct name")
            seen.setdefault(n, i)


_UPLINK_KEYS = ["broker", "client_id", "ca_file", "cert_file", "key_file", "username", "password_file",
                "allow_insecure", "protocol", "keepalive_s", "inflight_max", "budget_mb", "thin_keep_one_in",
                "telemetry"]
_LOOPBACK = re.compile(r"127(\.\d{1,3}){3}|::1|localhost")


def _uplink(c: Checker, t: Any, site: SiteConfig, devices: tuple[AnyDevice, ...]
            ) -> UplinkConfig | None:
    if not _is_table(c, t, "uplink"):
        return None
    c.only_keys(t, "uplink", _UPLINK_KEYS)
    broker = c.string(t, "broker", "uplink")
    m = re.fullmatch(r"(mqtts?)://(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+)(?::(\d{1,5}))?/?", broker)
    if broker and not m:
        c.error("uplink.broker", "must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]", broker)
    tls = bool(m and m.group(1) == "mqtts")
    host = m.group(2).strip("[]") if m else ""
    port = int(m.group(3)) if m and m.group(3) else (8883 if tls else 1883)
    if not 1 <= port <= 65535:
        c.error("uplink.broker", "port must be 1-65535", broker)
    allow_insecure = c.boolean(t, "allow_insecure", "uplink", default=False)
    if m and not tls and not _LOOPBACK.fullmatch(host) and not allow_insecure:
        c.error("uplink.broker", "refusing plaintext MQTT to a non-loopback broker: credentials and plant data "
                "would cross the network readable; use mqtts:// or set uplink.allow_insecure = true", broker)
    files = {key: c.string(t, key, "uplink", default="") or None
             for key in ("ca_file", "cert_file", "key_file", "password_file")}
    if (files["cert_file"] is None) != (files["key_file"] is None):
        c.error("uplink.cert_file" if files["cert_file"] is None else "uplink.key_file",
                "cert_file and key_file go together")
    if not tls and (files["ca_file"] or files["cert_file"]):
        c.error("uplink.broker", "ca_file/cert_file are set but the broker URL is not mqtts://", broker)
    username = c.string(t, "username", "uplink", default="") or None
    if files["password_file"] and username is None:
        c.error("uplink.password_file", "a password needs a username")
    telemetry = _telemetry(c, c.table(t, "telemetry", "uplink"), devices)
    return UplinkConfig(
        host=host, port=port, tls=tls,
        client_id=c.string(t, "client_id", "uplink", default=f"edgeagent-{site.site_id}-{site.node_id}"),
        ca_file=files["ca_file"], cert_file=files["cert_file"], key_file=files["key_file"],
        username=username, password_file=files["password_file"], allow_insecure=allow_insecure,
        protocol=c.string(t, "protocol", "uplink", default="auto", choices=["auto", "5", "3.1.1"]),
        keepalive_s=c.integer(t, "keepalive_s", "uplink", default=30, minimum=5, maximum=3600),
        inflight_max=c.integer(t, "inflight_max", "uplink", default=100, minimum=1, maximum=65535),
        budget_bytes=int(c.number(t, "budget_mb", "uplink", default=64, minimum=0.01, maximum=1_000_000) * 2**20),
        thin_keep_one_in=c.integer(t, "thin_keep_one_in", "uplink", default=4, minimum=2, maximum=1000),
        telemetry=telemetry,
    )


def _telemetry(c: Checker, t: dict[str, Any], devices: tuple[AnyDevice, ...]
               ) -> TelemetryConfig:
    path = "uplink.telemetry"
    c.only_keys(t, path, ["interval_ms", "integrity_s", "min_interval_ms", "default_deadband", "deadbands"])
    deadbands_t = c.table(t, "deadbands", path)
    known = {name for d in devices for name in d.point_names()}
    deadbands: dict[str, float] = {}
    for point in deadbands_t:
        if point not in known:
            close = difflib.get_close_matches(point, sorted(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            c.error(f"{path}.deadbands.{point}", f"no such point{hint}")
        deadbands[point] = c.number(deadbands_t, point, f"{path}.deadbands", minimum=0)
    return TelemetryConfig(
        interval_s=c.number(t, "interval_ms", path, default=1000, minimum=10, maximum=3_600_000) / 1000,
        integrity_s=c.number(t, "integrity_s", path, default=300, minimum=1, maximum=86_400),
        min_interval_s=c.number(t, "min_interval_ms", path, default=1000, minimum=0, maximum=3_600_000) / 1000,
        default_deadband=c.number(t, "default_deadband", path, default=0.0, minimum=0),
        deadbands=deadbands,
    )
