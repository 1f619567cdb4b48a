"""Broker settings for the MQTT link and the checks made before any traffic.

Checked at construction, not at connect: a plaintext link to a remote broker or a key without its
certificate is a configuration mistake the operator must see at start-up, not a retry loop. What
can change while the daemon runs (the broker, the files on disk) is checked at connect time and
becomes link state instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

PROTOCOL_CHOICES = ("auto", "5", "3.1.1")


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password_file: str | None = None  # read at connect time; the password is never logged or printed
    client_id: str = ""  # empty: the broker assigns one (clean sessions only, so nothing depends on it)
    keepalive_s: int = 30
    protocol: str = "auto"  # "auto" (MQTT 5, falling back to 3.1.1 if the broker refuses 5) | "5" | "3.1.1"
    allow_insecure: bool = False
    inflight_max: int = 100
    connect_timeout_s: float = 10.0

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'mqtts' if self.tls else 'mqtt'}://{host}:{self.port}"


class InsecureBroker(ValueError):
    """Plaintext MQTT to a host off this machine without `allow_insecure`."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (also as ::ffff:127.x) and "localhost": traffic that never leaves the box."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback


def check_config(cfg: BrokerConfig, will_topic: str | None, subscriptions: Sequence[str]) -> None:
    """Raise InsecureBroker or ValueError with what is wrong and how to fix it."""
    if not cfg.tls and not cfg.allow_insecure and not is_loopback(cfg.host):
        raise InsecureBroker(
            f"refusing to send credentials and plant data in plaintext to {cfg.host}: "
            "set uplink.tls or uplink.allow_insecure = true"
        )
    problems: list[str] = []
    if not cfg.host.strip():
        problems.append("host is empty")
    if not 1 <= cfg.port <= 65535:
        problems.append(f"port must be 1-65535 (got {cfg.port})")
    if cfg.protocol not in PROTOCOL_CHOICES:
        problems.append(f"protocol must be one of {', '.join(PROTOCOL_CHOICES)} (got {cfg.protocol!r})")
    if not 1 <= cfg.inflight_max <= 65535:
        problems.append(f"inflight_max must be 1-65535 (got {cfg.inflight_max})")
    if not 0 <= cfg.keepalive_s <= 65535:
        problems.append(f"keepalive_s must be 0-65535 (got {cfg.keepalive_s})")
    if not cfg.connect_timeout_s > 0:
        problems.append(f"connect_timeout_s must be > 0 (got {cfg.connect_timeout_s})")
    if not cfg.tls:
        for name in ("ca_file", "cert_file", "key_file"):
            if getattr(cfg, name) is not None:
                problems.append(f"{name} is set but tls is false: set tls = true to use it")
    if cfg.key_file is not None and cfg.cert_file is None:
        problems.append("key_file is set without cert_file")
    if cfg.password_file is not None and cfg.username is None:
        problems.append("password_file is set without username")
    if will_topic is not None:
        problems.extend(f"will: {p}" for p in topic_problems(will_topic, wildcards=False))
    for sub in subscriptions:
        problems.extend(f"subscription {sub!r}: {p}" for p in topic_problems(sub, wildcards=True))
    if problems:
        raise ValueError(f"MQTT broker {cfg.endpoint}: " + "; ".join(problems))


def topic_problems(topic: str, *, wildcards: bool) -> list[str]:
    """MQTT topic rules: non-empty, at most 65535 UTF-8 bytes, no NUL; `+` a whole level and `#` the
    whole last level in filters, neither in a topic name."""
    if not topic:
        return ["topic is empty"]
    problems = []
    if len(topic.encode("utf-8")) > 65535:
        problems.append("topic is longer than 65535 bytes")
    if "\0" in topic:
        problems.append("topic contains NUL")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if not wildcards and ("+" in level or "#" in level):
            problems.append("wildcards + and # are not allowed in a topic name")
            break
        if "+" in level and level != "+":
            problems.append(f"'+' must be a whole level (got {level!r})")
        if "#" in level and (level != "#" or i != len(levels) - 1):
            problems.append("'#' must be the whole last level")
    return problems
